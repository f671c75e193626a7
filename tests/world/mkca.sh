#!/bin/sh
# mkca.sh: make a throw-away test PKI (root CA, intermediate CA, server leaves) with openssl.
#
# Interface (shared by tests/unit/test_fetch_live.c and the test world; keep it stable):
#
#   mkca.sh init DIR
#       Creates DIR if needed, then:
#         DIR/root.key, DIR/root.crt    self-signed root CA ("mtastsd Test Root"), 10 years
#         DIR/inter.key, DIR/inter.crt  intermediate CA signed by the root, pathlen 0
#         DIR/ca.crt                    the trust anchor to give clients (= root.crt)
#       Running init again on the same DIR replaces everything.
#
#   mkca.sh leaf DIR LABEL [option...]
#       Issues a TLS server certificate:
#         DIR/LABEL.key        its private key (EC P-256, PEM, unencrypted)
#         DIR/LABEL.crt        the leaf alone (serve this to test a missing intermediate)
#         DIR/LABEL.chain.crt  leaf then intermediate when issued by inter, else the leaf
#       LABEL names the files only ([A-Za-z0-9._-]); the names inside come from options:
#         --dns NAME     add a subjectAltName dNSName (repeatable; "*.x.test" allowed).
#                        Default: one dNSName equal to the CN.
#         --cn NAME      subject commonName. Default: the first --dns, else LABEL.
#         --no-san       no subjectAltName at all (a CN-only certificate)
#         --issuer WHO   inter (default), root, or self (a self-signed leaf)
#         --start TIME   notBefore, YYYYMMDDHHMMSSZ (UTC). Default: now.
#         --end TIME     notAfter, YYYYMMDDHHMMSSZ (UTC). Default: now + 365 days.
#                        A past --end makes an expired certificate, a future --start one
#                        that is not yet valid.
#
#   Exit status 0 on success, 1 with a message on stderr otherwise; openssl's chatter goes to
#   DIR/openssl.log. Needs only sh and the openssl CLI (1.1.1 or 3.x). Calls with different
#   DIRs may run in parallel; calls on one DIR must not.
set -eu

die() {
	echo "mkca.sh: $*" >&2
	exit 1
}

need_dir() {
	[ -n "${1:-}" ] || die "missing DIR"
}

# One openssl ca database per DIR, shared by both issuers; subjects may repeat.
write_ca_config() {
	dir=$1
	mkdir -p "$dir/ca.db/new"
	: >"$dir/ca.db/index.txt"
	echo 1000 >"$dir/ca.db/serial"
	cat >"$dir/ca.cnf" <<EOF
[ ca ]
default_ca = test_ca

[ test_ca ]
dir = $dir/ca.db
database = \$dir/index.txt
new_certs_dir = \$dir/new
serial = \$dir/serial
default_md = sha256
default_days = 365
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[ policy_any ]
commonName = supplied

[ req ]
distinguished_name = req_dn
prompt = no

[ req_dn ]
CN = unused

[ v3_root ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_inter ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
EOF
}

new_key() {
	openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" \
		>>"$LOG" 2>&1 || die "cannot generate key $1"
}

cmd_init() {
	need_dir "${1:-}"
	dir=$1
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	LOG=$dir/openssl.log
	rm -rf "$dir/ca.db"
	write_ca_config "$dir"
	new_key "$dir/root.key"
	openssl req -config "$dir/ca.cnf" -new -x509 -key "$dir/root.key" -sha256 -days 3650 \
		-subj "/CN=mtastsd Test Root" -extensions v3_root -out "$dir/root.crt" \
		>>"$LOG" 2>&1 || die "cannot make root CA"
	new_key "$dir/inter.key"
	openssl req -config "$dir/ca.cnf" -new -key "$dir/inter.key" \
		-subj "/CN=mtastsd Test Intermediate" -out "$dir/inter.csr" \
		>>"$LOG" 2>&1 || die "cannot make intermediate request"
	openssl ca -batch -notext -config "$dir/ca.cnf" -cert "$dir/root.crt" \
		-keyfile "$dir/root.key" -extensions v3_inter -days 3650 \
		-in "$dir/inter.csr" -out "$dir/inter.crt" \
		>>"$LOG" 2>&1 || die "cannot sign intermediate"
	cp "$dir/root.crt" "$dir/ca.crt"
}

cmd_leaf() {
	need_dir "${1:-}"
	[ -n "${2:-}" ] || die "missing LABEL"
	dir=$(cd "$1" && pwd) || die "no such directory: $1"
	label=$2
	shift 2
	LOG=$dir/openssl.log
	case $label in
	*[!A-Za-z0-9._-]*) die "bad LABEL: $label" ;;
	esac
	[ -f "$dir/ca.cnf" ] || die "run 'mkca.sh init $dir' first"

	dns="" cn="" san=yes issuer=inter start="" end=""
	while [ $# -gt 0 ]; do
		case $1 in
		--dns) dns="$dns${dns:+,}DNS:$2"; shift 2 ;;
		--cn) cn=$2; shift 2 ;;
		--no-san) san=no; shift ;;
		--issuer) issuer=$2; shift 2 ;;
		--start) start=$2; shift 2 ;;
		--end) end=$2; shift 2 ;;
		*) die "unknown option: $1" ;;
		esac
	done
	if [ -z "$cn" ]; then
		cn=${dns%%,*}
		cn=${cn#DNS:}
		[ -n "$cn" ] || cn=$label
	fi
	[ -n "$dns" ] || dns="DNS:$cn"

	ext=$dir/$label.ext
	{
		echo "basicConstraints = critical, CA:FALSE"
		echo "keyUsage = critical, digitalSignature"
		echo "extendedKeyUsage = serverAuth"
		echo "subjectKeyIdentifier = hash"
		[ "$issuer" = self ] || echo "authorityKeyIdentifier = keyid:always"
		[ "$san" = no ] || echo "subjectAltName = $dns"
	} >"$ext"

	new_key "$dir/$label.key"
	openssl req -config "$dir/ca.cnf" -new -key "$dir/$label.key" -subj "/CN=$cn" \
		-out "$dir/$label.csr" >>"$LOG" 2>&1 || die "cannot make request $label"
	set -- -batch -notext -config "$dir/ca.cnf" -extfile "$ext" -in "$dir/$label.csr" \
		-out "$dir/$label.crt"
	case $issuer in
	self) set -- "$@" -selfsign -keyfile "$dir/$label.key" ;;
	root | inter) set -- "$@" -cert "$dir/$issuer.crt" -keyfile "$dir/$issuer.key" ;;
	*) die "unknown issuer: $issuer" ;;
	esac
	[ -z "$start" ] || set -- "$@" -startdate "$start"
	if [ -n "$end" ]; then
		set -- "$@" -enddate "$end"
	else
		set -- "$@" -days 365
	fi
	openssl ca "$@" >>"$LOG" 2>&1 || die "cannot sign $label (see $LOG)"
	if [ "$issuer" = inter ]; then
		cat "$dir/$label.crt" "$dir/inter.crt" >"$dir/$label.chain.crt"
	else
		cp "$dir/$label.crt" "$dir/$label.chain.crt"
	fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
init) cmd_init "$@" ;;
leaf) cmd_leaf "$@" ;;
*) die "usage: mkca.sh init DIR | mkca.sh leaf DIR LABEL [--dns NAME]... [--cn NAME] [--no-san] [--issuer inter|root|self] [--start T] [--end T]" ;;
esac
