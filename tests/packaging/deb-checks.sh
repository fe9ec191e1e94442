#!/usr/bin/env bash
# Checks of the built package beyond build.sh: reproducibility (a second clean-chroot build of
# the same .dsc, at another build path, time, time zone and umask, must give bit-identical
# .debs; diffoscope shows any difference), autopkgtest (debian/tests, run with the chroot
# runner on a throw-away copy of a minimal bookworm tarball) and piuparts (install, remove, purge in a clean
# chroot).
#
#   sudo tests/packaging/deb-checks.sh [reproducible] [autopkgtest] [piuparts]   (default: all)
#
# Takes the packages tests/packaging/build.sh left in $CHARTROOM_PKG_OUT (run it first).
# Uses the pbuilder base of tests/packaging/pbuilder-build.sh and a minimal bookworm tarball
# made once next to it ($CHARTROOM_PBUILDER_CACHE/minbase-bookworm.tgz, with
# bookworm-security). Last line: "deb-checks: N passed, M failed".
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PKG_WORK=${CHARTROOM_PKG_WORK:-/var/tmp/chartroom-packaging}
OUT=${CHARTROOM_PKG_OUT:-$PKG_WORK/out}
WORK=$PKG_WORK/deb-checks
CACHE=${CHARTROOM_PBUILDER_CACHE:-/var/cache/chartroom-test/pbuilder}
export CHARTROOM_PBUILDER_CACHE=$CACHE
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-parallel=$(nproc)}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
MINBASE=$CACHE/minbase-bookworm.tgz

passed=0
failed=0
declare -a timings=()
ok() { passed=$((passed + 1)); echo "PASS: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
timed() {
	local name=$1; shift
	local start rc
	start=$(date +%s)
	echo "== $name"
	"$@" > "$WORK/$name.log" 2>&1
	rc=$?
	timings+=("$(printf '%-22s %6d s' "$name" "$(( $(date +%s) - start ))")")
	[ $rc -ne 0 ] && tail -n 40 "$WORK/$name.log" | sed 's/^/    /'
	return $rc
}
summary() {
	echo
	echo "== timings"
	local t
	for t in "${timings[@]}"; do echo "  $t"; done
	echo "deb-checks: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}

if [ "$(id -u)" != 0 ]; then
	echo "deb-checks.sh: run as root" >&2
	exit 2
fi
what=${*:-reproducible autopkgtest piuparts}
rm -rf "$WORK"
mkdir -p "$WORK"

need=()
for p in pbuilder autopkgtest piuparts diffoscope-minimal debootstrap; do
	dpkg -s "$p" > /dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	{ apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } \
		> "$WORK/tools.log" 2>&1 || { tail -20 "$WORK/tools.log"; bad "installing ${need[*]}"; summary; }
fi

dsc=$(ls -t "$OUT"/chartroom_*.dsc 2> /dev/null | head -1)
deb=$(ls -t "$OUT"/chartroom_*.deb 2> /dev/null | head -1)
[ -s "$dsc" ] && [ -s "$deb" ] || { bad "no .dsc/.deb in $OUT: run tests/packaging/build.sh first"; summary; }
echo "source: $dsc"

"$here/pbuilder-build.sh" env > /dev/null   # writes $CACHE/pbuilderrc
mirror=$(sed -n 's/^MIRRORSITE=//p' "$CACHE/pbuilderrc")
security=$(sed -n 's/^OTHERMIRROR="deb \([^ ]*\) .*/\1/p' "$CACHE/pbuilderrc")

# --- reproducibility -------------------------------------------------------------------------
reproducible() {
	"$here/pbuilder-build.sh" base || return 1
	local rc=$WORK/pbuilderrc-rebuild r2=$WORK/rebuild
	mkdir -p "$r2"
	# Another build path (BUILDDIR), time zone, umask and, by the clock, another time.
	sed 's|^BUILDDIR=.*|BUILDDIR=/build/another/path/for/the/rebuild|' "$CACHE/pbuilderrc" > "$rc"
	umask 0002
	TZ=Etc/GMT-14 pbuilder build --configfile "$rc" --buildresult "$r2" "$dsc"
}
if [[ " $what " == *" reproducible "* ]]; then
	timed rebuild reproducible
	check "second clean-chroot build (other path, time, TZ, umask)" test $? -eq 0
	for f in "$OUT"/chartroom*_*.deb; do
		b=$(basename "$f")
		if cmp -s "$f" "$WORK/rebuild/$b"; then
			ok "reproducible: $b is bit for bit the same"
		else
			bad "reproducible: $b differs (diffoscope: $WORK/diffoscope-$b.txt)"
			[ -f "$WORK/rebuild/$b" ] &&
				diffoscope --text "$WORK/diffoscope-$b.txt" "$f" "$WORK/rebuild/$b" > /dev/null 2>&1
			head -60 "$WORK/diffoscope-$b.txt" 2> /dev/null | sed 's/^/    /'
		fi
	done
fi

# --- a minimal bookworm tarball (with bookworm-security), for autopkgtest and piuparts --------
minbase() {
	local stamp="bookworm minbase $mirror $security"
	[ -f "$MINBASE" ] && [ "$(cat "$MINBASE.stamp" 2> /dev/null)" = "$stamp" ] && return 0
	local d=$WORK/minbase
	rm -rf "$d"
	debootstrap --variant=minbase bookworm "$d" "$mirror" || return 1
	printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
		"$mirror" "$mirror" "$security" > "$d/etc/apt/sources.list"
	chroot "$d" apt-get update -q || return 1
	chroot "$d" apt-get -y -q dist-upgrade || return 1
	chroot "$d" apt-get clean
	tar -C "$d" -czf "$MINBASE.tmp" . || return 1
	mv "$MINBASE.tmp" "$MINBASE"
	echo "$stamp" > "$MINBASE.stamp"
	rm -rf "$d"
}
if [[ " $what " == *" autopkgtest "* || " $what " == *" piuparts "* ]]; then
	timed minbase minbase || { bad "minimal bookworm tarball $MINBASE"; summary; }
fi

# --- autopkgtest -----------------------------------------------------------------------------
if [[ " $what " == *" autopkgtest "* ]]; then
	# The chroot runner on a throw-away copy of the minimal tarball (the unshare runner
	# needs /etc/subuid entries for root, which this host does not have).
	testbed() {
		local t=$WORK/testbed rc
		rm -rf "$t" && mkdir -p "$t" && tar -C "$t" -xzf "$MINBASE" || return 1
		cp /etc/resolv.conf "$t/etc/resolv.conf"
		mount -t proc proc "$t/proc" || return 1
		autopkgtest --output-dir "$WORK/autopkgtest-out" "$deb" "$dsc" -- chroot "$t"
		rc=$?
		umount "$t/proc"
		rm -rf "$t"
		return $rc
	}
	timed autopkgtest testbed
	check "autopkgtest (debian/tests: smoke) passes" test $? -eq 0
	check "autopkgtest ran the smoke test" grep -q '^smoke *PASS' "$WORK/autopkgtest.log"
fi

# --- piuparts --------------------------------------------------------------------------------
if [[ " $what " == *" piuparts "* ]]; then
	# Install, remove, purge in a clean chroot. (There is no earlier version in the archive
	# to upgrade from: --no-upgrade-test.) Charts in /var/lib/chartroom are kept on purge by
	# design (README.Debian); the package creates none, so nothing is left behind here.
	# The ignored paths are systemd's (pulled in for systemd-sysusers/-tmpfiles, created by
	# its own tmpfiles.d at configuration), none is chartroom's.
	timed piuparts piuparts --basetgz "$MINBASE" --distribution bookworm --mirror "$mirror main" \
		--keep-sources-list --no-upgrade-test \
		-I '^/root/\.ssh/$' -I '^/var/(cache|lib|log)/private/$' \
		-I '^/var/lib/systemd/(coredump|pstore)/$' "$deb"
	check "piuparts: install, remove, purge" test $? -eq 0
fi
summary
