#!/usr/bin/env bash
# quickstart.sh: install build/test dependencies on Debian 12, build, then run or test.
#   ./quickstart.sh run    build and start mtastsd in the foreground on conf/mtastsd.conf
#   ./quickstart.sh test   build and run the whole test suite (unit, fuzz replay, integration)
#   ./quickstart.sh deps   only install the Debian packages (needs root)
set -euo pipefail
cd "$(dirname "$0")"

DEPS=(
	build-essential autoconf automake autoconf-archive libtool pkg-config
	libevent-dev libc-ares-dev libcurl4-openssl-dev libssl-dev libconfig-dev libidn2-dev
	libsqlite3-dev libhiredis-dev sqlite3 redis-server libsystemd-dev
	libcmocka-dev clang libclang-rt-14-dev
	openssl ca-certificates iproute2 python3 unbound nginx-light postfix curl bind9-dnsutils
	mandoc debhelper systemd systemd-container
)

deps() {
	local missing=()
	for p in "${DEPS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "quickstart: missing packages: ${missing[*]}; run as root (or sudo) to install them" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	# Postfix asks how to configure itself; "No configuration" is all postmap needs.
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update
	apt-get install -y --no-install-recommends "${missing[@]}"
}

# Out-of-tree build in build/, so a sanitizer tree (build-asan/) can sit beside it.
build() {
	[ -x configure ] || autoreconf -fi
	mkdir -p build
	[ -f build/Makefile ] || (cd build && ../configure)
	make -C build -j"$(nproc)"
}

case "${1:-}" in
deps) deps ;;
run)
	deps
	build
	# The shipped config binds as root, then runs as the system user mtastsd.
	id mtastsd >/dev/null 2>&1 ||
		useradd --system --home-dir /var/lib/mtastsd --no-create-home \
			--shell /usr/sbin/nologin mtastsd
	install -d -o mtastsd -g mtastsd -m 0750 /var/lib/mtastsd
	exec build/mtastsd -f -c conf/mtastsd.conf
	;;
test)
	deps
	build
	make -C build -j"$(nproc)" check
	;;
*)
	echo "usage: $0 run|test|deps" >&2
	exit 2
	;;
esac
