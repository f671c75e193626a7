#!/usr/bin/env bash
# test_units.sh: checks the shipped systemd units, sysusers/tmpfiles snippets and man pages (TAP).
#
#   tests/package/test_units.sh          from the source tree, or as a make check test
#
# Environment: srcdir (automake's; default: two levels up from here), MTASTSD (a built
# mtastsd, put into ExecStart= for systemd-analyze verify and asked for its schema with -S
# when it has that option), SECURITY_THRESHOLD (default 20, i.e. exposure 2.0).
# A missing tool (systemd-analyze, mandoc, python3) skips its tests, except when CI is set:
# then it fails them, so CI cannot pass without checking.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${srcdir:-$here/../..}" && pwd)
threshold=${SECURITY_THRESHOLD:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	[ -s "$tmp/out" ] && sed 's/^/# /' "$tmp/out"
}
# A test whose tool is missing: skipped, or failed under CI.
missing() {
	if [ -n "${CI:-}" ]; then
		: >"$tmp/out"; not_ok "$1 ($2 is not installed; CI needs it)"
	else
		n=$((n + 1)); echo "ok $n - $1 # SKIP $2 is not installed"
	fi
}
have() { command -v "$1" >/dev/null 2>&1; }
# Runs a command; passes when it exits 0 and, with "quiet", also prints nothing.
check() {
	local name=$1 mode=$2
	shift 2
	if "$@" >"$tmp/out" 2>&1 && { [ "$mode" != quiet ] || [ ! -s "$tmp/out" ]; }; then
		ok "$name"
	else
		not_ok "$name"
	fi
}

echo "1..10"

# ---- systemd units ----
units=("$src/systemd/mtastsd.service" "$src/systemd/mtastsd.socket")
mkdir -p "$tmp/units" "$tmp/man/man5" "$tmp/man/man8"
daemon=/usr/sbin/mtastsd
[ -n "${MTASTSD:-}" ] && [ -x "$MTASTSD" ] && daemon=$MTASTSD
[ -x "$daemon" ] || daemon=/bin/true # only the unit's syntax is checked then
for u in "${units[@]}"; do
	sed "s|/usr/sbin/mtastsd|$daemon|g" "$u" >"$tmp/units/${u##*/}"
done
# Documentation=man:... is checked against the pages of this tree.
cp "$src"/doc/man/*.5 "$tmp/man/man5/"
cp "$src"/doc/man/*.8 "$tmp/man/man8/"
if have systemd-analyze; then
	man=--man=no
	have man && man=--man=yes
	# verify exits 0 on unknown keys and bad values too: any message is a failure.
	check "systemd-analyze verify mtastsd.service mtastsd.socket" quiet \
		env MANPATH="$tmp/man" systemd-analyze verify "$man" \
		"$tmp/units/mtastsd.service" "$tmp/units/mtastsd.socket"
	if systemd-analyze security --offline=yes --threshold="$threshold" \
		"$src/systemd/mtastsd.service" >"$tmp/out" 2>&1; then
		ok "systemd-analyze security: $(grep -o 'Overall exposure level.*' "$tmp/out") (at most $threshold/10)"
	else
		not_ok "systemd-analyze security --threshold=$threshold"
	fi
else
	missing "systemd-analyze verify" systemd-analyze
	missing "systemd-analyze security" systemd-analyze
fi

# ---- sysusers.d and tmpfiles.d, applied to an empty root ----
root="$tmp/root"
mkdir -p "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
cp "$src/systemd/mtastsd.sysusers" "$root/usr/lib/sysusers.d/mtastsd.conf"
cp "$src/systemd/mtastsd.tmpfiles" "$root/usr/lib/tmpfiles.d/mtastsd.conf"
if have systemd-sysusers && have systemd-tmpfiles; then
	if systemd-sysusers --root="$root" mtastsd.conf >"$tmp/out" 2>&1 &&
		grep -q '^mtastsd:x:[0-9]*:[0-9]*:[^:]*:/var/lib/mtastsd:/usr/sbin/nologin$' \
			"$root/etc/passwd" && grep -q '^mtastsd:' "$root/etc/group"; then
		ok "sysusers.d: user and group mtastsd, home /var/lib/mtastsd, no login"
	else
		cat "$root/etc/passwd" >>"$tmp/out" 2>&1
		not_ok "sysusers.d: user and group mtastsd, home /var/lib/mtastsd, no login"
	fi
	uid=$(awk -F: '$1 == "mtastsd" { print $3 }' "$root/etc/passwd")
	if systemd-tmpfiles --root="$root" --create mtastsd.conf >"$tmp/out" 2>&1 &&
		[ "$(stat -c %u:%a "$root/var/lib/mtastsd")" = "$uid:750" ] &&
		[ "$(stat -c %u:%a "$root/run/mtastsd")" = "$uid:755" ]; then
		ok "tmpfiles.d: /var/lib/mtastsd 0750 and /run/mtastsd 0755, owned by mtastsd"
	else
		not_ok "tmpfiles.d: /var/lib/mtastsd 0750 and /run/mtastsd 0755, owned by mtastsd"
	fi
else
	missing "sysusers.d" systemd-sysusers
	missing "tmpfiles.d" systemd-tmpfiles
fi

# ---- man pages ----
if have mandoc; then
	for page in mtastsd.8 mtastsd.conf.5 mtasts-ctl.8 mtasts-check.1; do
		# Everything mandoc says counts, except the cross-references to pages that are
		# not installed here (ours, Postfix's) and the state of the system's mandoc.db.
		mandoc -Tlint -Wstyle "$src/doc/man/$page" 2>&1 |
			grep -v -e 'referenced manual not found' -e 'outdated mandoc.db' >"$tmp/out"
		if [ -s "$tmp/out" ]; then
			not_ok "mandoc -Tlint $page"
		else
			ok "mandoc -Tlint $page"
		fi
	done
else
	for page in mtastsd.8 mtastsd.conf.5 mtasts-ctl.8 mtasts-check.1; do
		missing "mandoc -Tlint $page" mandoc
	done
fi

if have python3; then
	args=(--source "$src/src/config/config.c")
	# With a daemon that prints its schema (-S), the page is checked against the binary's
	# table and this script's reading of config.c against that too.
	if [ "$daemon" != /bin/true ] && "$daemon" -S >/dev/null 2>&1; then
		args+=(--mtastsd "$daemon")
	fi
	check "mtastsd.conf(5) documents every option of the schema, and no other" normal \
		python3 "$src/doc/man/check-conf-man.py" "${args[@]}" "$src/doc/man/mtastsd.conf.5"
else
	missing "mtastsd.conf(5) against the schema" python3
fi

# The command-line options and ctl commands in the pages match the programs' own tables.
: >"$tmp/out"
opts=$(sed -n 's/.*getopt(argc, argv, "\([^"]*\)").*/\1/p' "$src/src/daemon/main.c" | tr -d ':')
documented=$(sed -n 's/^\.It Fl \([A-Za-z]\).*/\1/p' "$src/doc/man/mtastsd.8" | sort -u | tr -d '\n')
[ -n "$opts" ] || echo "no getopt string found in src/daemon/main.c" >>"$tmp/out"
for ((i = 0; i < ${#opts}; i++)); do
	[[ $documented == *"${opts:i:1}"* ]] || echo "mtastsd -${opts:i:1} is not documented" >>"$tmp/out"
done
for ((i = 0; i < ${#documented}; i++)); do
	[[ $opts == *"${documented:i:1}"* ]] || echo "mtastsd.8 documents -${documented:i:1}, which mtastsd does not take" >>"$tmp/out"
done
for c in $(awk '/command_commands\[\] = \{/ { on = 1; next } on && /^};/ { exit }
	on && match($0, /^\t\{ "[a-z-]+"/) { s = substr($0, RSTART, RLENGTH); gsub(/[\t{ "]/, "", s); print s }' \
	"$src/src/ctl/command.c"); do
	grep -q "^\.It Cm $c\b\|^\.Cm $c\$" "$src/doc/man/mtasts-ctl.8" ||
		echo "mtasts-ctl $c is not documented in mtasts-ctl.8" >>"$tmp/out"
	found=1
done
[ -n "${found:-}" ] || echo "no commands found in src/ctl/command.c" >>"$tmp/out"
if [ -s "$tmp/out" ]; then
	not_ok "mtastsd.8 and mtasts-ctl.8 match the programs' options and commands"
else
	ok "mtastsd.8 and mtasts-ctl.8 match the programs' options and commands"
fi

[ "$n" -eq 9 ] || echo "# planned 9 tests, ran $n"
exit $((failed > 0))
