#!/usr/bin/env bash
# The clean-chroot build of the Debian package, as a buildd and the site build it: pbuilder
# with a Debian 12 base (bookworm + bookworm-security, Debian's own Rust: rustc-web/cargo-web),
# driven by `gbp buildpackage --git-pbuilder`. The build runs with no network (USENETWORK=no).
#
#   sudo tests/packaging/pbuilder-build.sh base            # make the cached base if missing
#   sudo tests/packaging/pbuilder-build.sh build [GBP-OPTIONS...]
#                                           # in a gbp checkout (debian/latest): source + binary
#   sudo tests/packaging/pbuilder-build.sh env             # prints the environment gbp needs
#
# The base tarball is made once and kept in $CHARTROOM_PBUILDER_CACHE (default
# /var/cache/chartroom-test/pbuilder): base-bookworm.tgz, the apt archive (aptcache/) and
# pbuilderrc. It is remade when the settings below change (stamp file base-bookworm.stamp).
# The toolchain and debhelper are installed into the base, so a cached build installs no
# packages. Environment:
#   CHARTROOM_PBUILDER_CACHE  as above
#   DEBIAN_MIRROR             mirror (default: the first deb.debian.org-style mirror of this
#                             machine's apt sources, else http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR    default: the same host's debian-security
#   CHARTROOM_PBUILDER_BUILDDIR  the build path inside the chroot (default /build); the
#                             reproducibility check (deb-checks.sh) builds with another one
set -euo pipefail

CACHE=${CHARTROOM_PBUILDER_CACHE:-/var/cache/chartroom-test/pbuilder}
DIST=bookworm
BASE=$CACHE/base-$DIST.tgz
RC=$CACHE/pbuilderrc
# Pre-installed in the base: the Build-Depends of debian/control (first alternatives).
BASE_PACKAGES="cargo-web rustc-web debhelper"

mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(grep -rhoE '^(deb|URIs:) +(\[[^]]*\] +)?https?://[^ ]+/debian/?( |$)' \
		/etc/apt/sources.list /etc/apt/sources.list.d/ 2> /dev/null |
		grep -v security | head -1 | grep -oE 'https?://[^ ]+' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
security=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}

write_rc() {
	mkdir -p "$CACHE/aptcache" "$CACHE/result" "$CACHE/build"
	cat > "$RC.tmp" <<EOF
# Written by tests/packaging/pbuilder-build.sh
DISTRIBUTION=$DIST
MIRRORSITE=$mirror
OTHERMIRROR="deb $security $DIST-security main|deb $mirror $DIST-updates main"
COMPONENTS=main
BASETGZ=$BASE
APTCACHE=$CACHE/aptcache/
APTCACHEHARDLINK=no
BUILDPLACE=$CACHE/build
BUILDDIR=${CHARTROOM_PBUILDER_BUILDDIR:-/build}
USENETWORK=no
EXTRAPACKAGES="$BASE_PACKAGES"
# pdebuild runs pbuilder through sudo by default: this script runs as root already.
PBUILDERROOTCMD=""
DEBOOTSTRAPOPTS=(--variant=buildd --keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
EOF
	mv "$RC.tmp" "$RC"
}

stamp="$DIST $mirror $security $BASE_PACKAGES"
ensure_base() {
	write_rc
	if [ -f "$BASE" ] && [ "$(cat "$BASE.stamp" 2> /dev/null)" = "$stamp" ]; then
		return 0
	fi
	echo "== pbuilder --create $BASE (mirror $mirror, security $security)" >&2
	rm -f "$BASE" "$BASE.stamp"
	pbuilder create --configfile "$RC" --basetgz "$BASE" >&2
	echo "$stamp" > "$BASE.stamp"
}

# What gbp's --git-pbuilder (git-pbuilder) needs: our base and pbuilderrc.
gbp_env() {
	echo "BUILDER=pbuilder"
	echo "DIST=$DIST"
	echo "PBUILDER_BASE=$CACHE"
	echo "GIT_PBUILDER_PDEBUILDOPTIONS='--configfile $RC'"
}

case "${1:-}" in
base) ensure_base ;;
env) write_rc; gbp_env ;;
build)
	shift
	ensure_base
	BUILDER=pbuilder PBUILDER_BASE=$CACHE GIT_PBUILDER_PDEBUILDOPTIONS="--configfile $RC" \
		gbp buildpackage --git-pbuilder --git-dist="$DIST" \
		--git-pbuilder-options="--configfile $RC" "$@"
	;;
*) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
