#!/usr/bin/env bash
# build-deb.sh: builds the mtastsd .deb from a clean copy of this tree, leaving the work tree
# untouched.
#
#   contrib/debian/build-deb.sh [--check] [OUTDIR]
#
# Copies the tree (a git checkout: the tracked and untracked, not ignored files; otherwise
# everything but build output) to a temporary directory, puts contrib/debian there as debian/,
# and runs dpkg-buildpackage -us -uc -b. The .deb, .buildinfo and .changes land in OUTDIR
# (default: the current directory). make check is left out (DEB_BUILD_OPTIONS=nocheck)
# unless --check is given: its integration tests need root and network namespaces.
# Needs: dpkg-dev, debhelper and the Build-Depends of contrib/debian/control
# (dpkg-checkbuilddeps names what is missing).
set -euo pipefail

check=no
if [ "${1:-}" = --check ]; then
	check=yes
	shift
fi
out=$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)
top=$(cd "$(dirname "$0")/../.." && pwd)

version=$(dpkg-parsechangelog -l "$top/contrib/debian/changelog" -S Version)
upstream=$(sed -n 's/^AC_INIT(\[mtastsd\], \[\([^]]*\)\].*/\1/p' "$top/configure.ac")
if [ "$version" != "$upstream" ]; then
	echo "build-deb: contrib/debian/changelog is at $version, configure.ac at $upstream;" \
		"add a changelog entry (dch -v $upstream)" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
src="$work/mtastsd-$version"
mkdir "$src"
if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	# Files deleted but not yet committed are still listed: skip them quietly.
	(cd "$top" && git ls-files -z --cached --others --exclude-standard |
		tar cf - --null --no-recursion --ignore-failed-read -T - 2>/dev/null) |
		tar xf - -C "$src"
else
	tar cf - -C "$top" --exclude=./build --exclude='./build-*' --exclude=./debian . |
		tar xf - -C "$src"
fi
rm -rf "$src/debian"
cp -a "$src/contrib/debian" "$src/debian"

opts=${DEB_BUILD_OPTIONS:-}
[ "$check" = yes ] || opts="${opts:+$opts }nocheck"
(cd "$src" && DEB_BUILD_OPTIONS="$opts" dpkg-buildpackage -us -uc -b)

for f in "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes; do
	[ -e "$f" ] || continue
	cp "$f" "$out/"
	echo "build-deb: $out/${f##*/}"
done
