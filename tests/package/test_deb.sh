#!/usr/bin/env bash
# test_deb.sh: builds the .deb, installs it on this machine, checks it, runs the installed unit
# under a real systemd in a throwaway container, then purges it again (TAP; root only).
#
#   tests/package/test_deb.sh [DEB]     DEB: test this package instead of building one
#
# It changes the machine while it runs: apt-get installs the package (and its dependencies),
# which creates the user mtastsd, /etc/mtastsd and /var/lib/mtastsd; the end purges the
# package and removes the user and group when they did not exist before. It refuses to touch
# an mtastsd package that is already installed.
#
# The container step boots this machine's own root file system read-only under an overlay
# whose upper layer is a private tmpfs (systemd-nspawn, package systemd-container), with a
# private network: the unit runs with all its sandboxing under systemd as PID 1 and does a
# real discovery (DNS with c-ares, HTTPS with libcurl and OpenSSL, the sqlite writer thread)
# against the test world (tests/world). Needs unbound, nginx-light, openssl, sqlite3, python3.
# Without systemd-nspawn that step is skipped, or failed when CI is set.
set -u

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${srcdir:-$here/../..}" && pwd)

if [ "$(id -u)" -ne 0 ]; then
	echo "1..0 # SKIP needs root (installs the package)"
	exit 0
fi
if dpkg-query -W -f='${Status}' mtastsd 2>/dev/null | grep -q installed; then
	echo "1..0 # SKIP an mtastsd package is installed already; not touching it"
	exit 0
fi

tmp=$(mktemp -d)
n=0
failed=0
user_existed=no
getent passwd mtastsd >/dev/null && user_existed=yes
group_existed=no
getent group mtastsd >/dev/null && group_existed=yes
# tmpfiles.d hands /run/mtastsd to the user; where /run is not a tmpfs that would outlive us.
run_owner=$(stat -c %u:%g /run/mtastsd 2>/dev/null || echo none)

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
	[ -s "$tmp/out" ] && tail -n 40 "$tmp/out" | sed 's/^/# /'
}
check() {
	local name=$1
	shift
	if "$@" >"$tmp/out" 2>&1; then ok "$name"; else not_ok "$name"; fi
}
cleanup() {
	if dpkg-query -W -f='${Status}' mtastsd 2>/dev/null | grep -q installed; then
		DEBIAN_FRONTEND=noninteractive apt-get purge -y mtastsd >/dev/null 2>&1
	fi
	[ "$user_existed" = yes ] || userdel mtastsd 2>/dev/null
	[ "$group_existed" = yes ] || groupdel mtastsd 2>/dev/null
	if [ "$run_owner" = none ]; then
		rmdir /run/mtastsd 2>/dev/null
	else
		chown "$run_owner" /run/mtastsd 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "1..9"

# ---- build ----
deb=${1:-}
if [ -z "$deb" ]; then
	if "$src/contrib/debian/build-deb.sh" "$tmp/deb" >"$tmp/out" 2>&1; then
		deb=$(ls "$tmp"/deb/mtastsd_*.deb 2>/dev/null | head -n 1)
	fi
	if [ -n "$deb" ]; then ok "dpkg-buildpackage: ${deb##*/}"; else not_ok "dpkg-buildpackage"; fi
else
	deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")
	ok "package given: $deb"
fi
if [ -z "$deb" ]; then
	echo "Bail out! no package to install"
	exit 1
fi

# ---- install ----
check "apt-get install ${deb##*/}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$deb"

installed() {
	local f
	getent passwd mtastsd | grep -q '^mtastsd:x:[0-9]*:[0-9]*:[^:]*:/var/lib/mtastsd:/usr/sbin/nologin$' ||
		{ echo "user mtastsd: $(getent passwd mtastsd)"; return 1; }
	getent group mtastsd >/dev/null || { echo "no group mtastsd"; return 1; }
	for f in /usr/sbin/mtastsd /usr/bin/mtasts-ctl /etc/mtastsd/mtastsd.conf \
		/lib/systemd/system/mtastsd.service /lib/systemd/system/mtastsd.socket \
		/usr/lib/sysusers.d/mtastsd.conf /usr/lib/tmpfiles.d/mtastsd.conf \
		/usr/share/man/man8/mtastsd.8.gz /usr/share/man/man5/mtastsd.conf.5.gz \
		/usr/share/man/man8/mtasts-ctl.8.gz /usr/share/bash-completion/completions/mtasts-ctl; do
		[ -e "$f" ] || { echo "missing: $f"; return 1; }
	done
	[ "$(stat -c %U:%a /var/lib/mtastsd)" = mtastsd:750 ] ||
		{ echo "/var/lib/mtastsd: $(stat -c %U:%a /var/lib/mtastsd)"; return 1; }
	dpkg-query -W -f='${Conffiles}\n' mtastsd | grep -q ' /etc/mtastsd/mtastsd.conf ' ||
		{ echo "/etc/mtastsd/mtastsd.conf is not a conffile"; return 1; }
	[ -L /etc/systemd/system/multi-user.target.wants/mtastsd.service ] ||
		{ echo "mtastsd.service is not enabled"; return 1; }
	[ ! -e /etc/systemd/system/sockets.target.wants/mtastsd.socket ] ||
		{ echo "mtastsd.socket is enabled; it should stay optional"; return 1; }
	/usr/sbin/mtastsd -t -c /etc/mtastsd/mtastsd.conf
}
check "installed: user, files, conffile, service enabled, socket not" installed
# verify exits 0 on unknown keys and bad values too: any message is a failure.
check "systemd-analyze verify on the installed units" sh -c '
	out=$(systemd-analyze verify /lib/systemd/system/mtastsd.service \
		/lib/systemd/system/mtastsd.socket 2>&1); echo "$out"; [ -z "$out" ]'

# A local change to the configuration survives reinstalling (an upgrade) untouched.
echo "# local change by test_deb.sh" >>/etc/mtastsd/mtastsd.conf
check "a changed /etc/mtastsd/mtastsd.conf survives a reinstall" sh -c "
	DEBIAN_FRONTEND=noninteractive apt-get install -y --reinstall -o Dpkg::Options::=--force-confdef \
		-o Dpkg::Options::=--force-confold '$deb' &&
	tail -n 1 /etc/mtastsd/mtastsd.conf | grep -q 'local change by test_deb.sh'"
sed -i '/# local change by test_deb.sh/d' /etc/mtastsd/mtastsd.conf

# ---- the unit under systemd, in a container ----
nspawn_test() {
	local c="$tmp/ct"
	mkdir -p "$c/in" "$c/out" "$c/layers"
	cat >"$c/in/scenario.py" <<'PY'
# Runs in the container: the installed unit, sandboxed, does a real discovery.
import os, subprocess, sys, time
sys.path.insert(0, "/opt/src/tests/world")
from world import World

def sh(cmd):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    print(f"$ {cmd}\n{r.stdout}{r.stderr}", flush=True)
    return r.stdout.strip()

# Host services enabled in this image must not hold the world's ports.
sh("systemctl stop unbound.service nginx.service redis-server.service postfix.service")
os.makedirs("/srv/world", exist_ok=True)
w = World("/srv/world", allow_host_net=True, ipv6=False)
w.add_domain("good.test")
w.start()
for p in ("/srv/world", os.path.dirname(w.ca_file)):
    os.chmod(p, 0o755)
os.chmod(w.ca_file, 0o644)
conf = open("/etc/mtastsd/mtastsd.conf").read()
conf = conf.replace("servers = [];", 'servers = [ "127.0.0.1" ];')
conf = conf.replace('ca_file = "";', f'ca_file = "{w.ca_file}";')
open("/etc/mtastsd/mtastsd.conf", "w").write(conf)
sh("systemctl restart mtastsd.service")
# Postfix's own client, as an smtp process would ask (Type=notify: ready when restart returns).
SPEC = "socketmap:inet:127.0.0.1:8461:postfix"
answers = [w.postmap_query("good.test", SPEC) for _ in range(2)]
print("answers:", answers, flush=True)
sh("systemctl reload mtastsd.service")
time.sleep(2.5)  # sqlite.write_interval
pid = sh("systemctl show -p MainPID --value mtastsd.service")
status = sh(f"grep -E '^(Uid|Threads|CapEff|NoNewPrivs|Seccomp):' /proc/{pid}/status")
rows = sh("sqlite3 /var/lib/mtastsd/cache.db 'select count(*) from policies'")
sh("systemctl restart mtastsd.service")
after = w.postmap_query("good.test", SPEC)
print("after restart:", after, flush=True)
sh("systemctl stop mtastsd.service")
result = sh("systemctl show -p Result,NRestarts --value mtastsd.service")
sh("journalctl -u mtastsd.service --no-pager | grep -v ' lookup ' | tail -n 30")
w.stop()
want = (0, "secure match=mx1.good.test servername=hostname\n")
good = (all(tuple(a) == want for a in answers) and tuple(after) == want and rows == "1"
        and "Seccomp:\t2" in status and "CapEff:\t0000000000000000" in status
        and "NoNewPrivs:\t1" in status and result.split() == ["success", "0"])
print("SCENARIO", "OK" if good else "FAILED", flush=True)
PY
	cat >"$c/in/run.sh" <<'SH'
#!/bin/sh
python3 /opt/in/scenario.py >/opt/out/result.txt 2>&1
SH
	chmod +x "$c/in/run.sh"
	# The overlay and its tmpfs live in a private mount namespace and vanish with it.
	unshare -m --propagation private sh -c '
		set -e
		mount -t tmpfs tmpfs "$1/layers"
		mkdir -p "$1/layers/upper" "$1/layers/work" "$1/layers/root"
		mount -t overlay overlay \
			-o "lowerdir=/,upperdir=$1/layers/upper,workdir=$1/layers/work" "$1/layers/root"
		timeout 300 systemd-nspawn -D "$1/layers/root" --private-network --machine=mtastsd-test \
			--register=no --keep-unit --link-journal=no -b --console=pipe \
			--bind-ro="$1/in:/opt/in" --bind="$1/out:/opt/out" --bind-ro="$2:/opt/src" \
			systemd.run=/opt/in/run.sh systemd.run_success_action=poweroff \
			systemd.run_failure_action=poweroff
	' sh "$c" "$src" >"$c/nspawn.log" 2>&1 </dev/null
	cat "$c/out/result.txt" "$c/nspawn.log" 2>/dev/null
	grep -q '^SCENARIO OK$' "$c/out/result.txt" 2>/dev/null
}
if command -v systemd-nspawn >/dev/null 2>&1; then
	check "the installed unit under systemd (container): fetch, store, reload, restart" nspawn_test
elif [ -n "${CI:-}" ]; then
	: >"$tmp/out"
	not_ok "the installed unit under systemd (systemd-nspawn is not installed; CI needs systemd-container)"
else
	n=$((n + 1)); echo "ok $n - the installed unit under systemd # SKIP systemd-nspawn is not installed"
fi

# ---- purge ----
check "apt-get purge mtastsd" env DEBIAN_FRONTEND=noninteractive apt-get purge -y mtastsd
gone() {
	local f
	for f in /usr/sbin/mtastsd /etc/mtastsd /var/lib/mtastsd /lib/systemd/system/mtastsd.service \
		/etc/systemd/system/multi-user.target.wants/mtastsd.service; do
		[ ! -e "$f" ] || { echo "left behind: $f"; return 1; }
	done
}
check "purged: binaries, configuration, cache and unit links are gone" gone
if [ "$user_existed" = no ]; then
	userdel mtastsd 2>/dev/null
	[ "$group_existed" = yes ] || groupdel mtastsd 2>/dev/null
fi
check "user mtastsd back to its state before the test ($user_existed)" \
	sh -c "if [ $user_existed = yes ]; then getent passwd mtastsd; else ! getent passwd mtastsd; fi"

[ "$n" -eq 9 ] || echo "# planned 9 tests, ran $n"
exit $((failed > 0))
