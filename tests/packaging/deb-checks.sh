#!/usr/bin/env bash
# Checks of the built package beyond build.sh: reproducibility (a second clean-chroot build of
# the same .dsc, at another build path, time, time zone and umask, must give bit-identical
# .debs; diffoscope shows any difference), autopkgtest (debian/tests, run with the chroot
# runner on a throw-away copy of a minimal bookworm tarball) and piuparts (install, remove,
# purge in a clean chroot, and an upgrade from the package of the parent commit; charts in
# /var/lib/chartroom must survive the upgrade and the purge).
#
#   sudo tests/packaging/deb-checks.sh [reproducible] [autopkgtest] [piuparts]   (default: all)
#
# Takes the packages tests/packaging/build.sh left in $CHARTROOM_PKG_OUT (run it first).
# Uses the pbuilder base of tests/packaging/pbuilder-build.sh and a minimal bookworm tarball
# made once next to it ($CHARTROOM_PBUILDER_CACHE/minbase-bookworm.tgz, with
# bookworm-security). The rebuild runs in the background while autopkgtest and piuparts run
# (none of them is timing-sensitive; CHARTROOM_DEB_CHECKS_SERIAL=1 runs one after the other).
#
# The upgrade test's old version: the .deb that build.sh kept for the nearest ancestor commit
# of $CHARTROOM_PKG_SRC's HEAD in $CHARTROOM_PKG_PREVIOUS (default
# $CHARTROOM_PBUILDER_CACHE/previous/<commit>/; HEAD itself counts only when the working tree
# has changes). If none is kept, the parent commit (HEAD^) is built once with build.sh
# (CHARTROOM_PKG_BUILD_ONLY=1) and kept. CHARTROOM_UPGRADE_FROM=/path/to/old.deb names the old
# package instead; CHARTROOM_UPGRADE_FROM=none skips the upgrade test (a SKIP line says so).
# The old .deb is repacked with its version lowered below the new one's (VERSION~parent.<sha>,
# contents and maintainer scripts unchanged) and offered to piuparts in a local apt repository.
# Last line: "deb-checks: N passed, M failed".
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
SRC=${CHARTROOM_PKG_SRC:-$(cd "$here/../.." && pwd)}
PREVIOUS=${CHARTROOM_PKG_PREVIOUS:-$CACHE/previous}

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
for p in pbuilder autopkgtest piuparts diffoscope-minimal debootstrap dpkg-dev apt-utils; do
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
# The second build: another build path (BUILDDIR), time zone, umask and, by the clock, another
# time. Runs in its own session (setsid), so that it can be stopped as a whole.
reproducible() {
	"$here/pbuilder-build.sh" base || return 1
	local rc=$WORK/pbuilderrc-rebuild r2=$WORK/rebuild
	mkdir -p "$r2"
	sed 's|^BUILDDIR=.*|BUILDDIR=/build/another/path/for/the/rebuild|' "$CACHE/pbuilderrc" > "$rc"
	umask 0002
	TZ=Etc/GMT-14 pbuilder build --configfile "$rc" --buildresult "$r2" "$dsc"
}
rebuild_pid=
rebuild_start=
stop_rebuild() {
	if [ -n "$rebuild_pid" ] && kill -0 "$rebuild_pid" 2> /dev/null; then
		kill -TERM -- "-$rebuild_pid" 2> /dev/null
		wait "$rebuild_pid" 2> /dev/null
	fi
	rebuild_pid=
}
trap stop_rebuild EXIT
trap 'bad "interrupted"; stop_rebuild; summary' INT TERM
start_rebuild() {
	rebuild_start=$(date +%s)
	# (Its variables go to it alone: exported, CACHE would reach chartroom in autopkgtest's
	# testbed as ChartMuseum's CACHE setting.)
	here=$here CACHE=$CACHE WORK=$WORK dsc=$dsc \
		setsid bash -c "$(declare -f reproducible); reproducible" > "$WORK/rebuild.log" 2>&1 &
	rebuild_pid=$!
}
finish_rebuild() {
	local rc
	wait "$rebuild_pid"
	rc=$?
	rebuild_pid=
	timings+=("$(printf '%-22s %6d s' rebuild "$(( $(date +%s) - rebuild_start ))")")
	[ $rc -ne 0 ] && tail -n 40 "$WORK/rebuild.log" | sed 's/^/    /'
	check "second clean-chroot build (other path, time, TZ, umask)" test $rc -eq 0
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
}
if [[ " $what " == *" reproducible "* ]]; then
	if [ "${CHARTROOM_DEB_CHECKS_SERIAL:-}" = 1 ] ||
		! [[ " $what " == *" autopkgtest "* || " $what " == *" piuparts "* ]]; then
		echo "== rebuild"
		start_rebuild
		finish_rebuild
	else
		echo "== rebuild (in the background, while autopkgtest and piuparts run)"
		start_rebuild
	fi
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
		# A clean environment: the chroot runner hands ours to the test (a CI's variables,
		# or ChartMuseum-style ones such as PORT or CACHE, would reach chartroom).
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			LC_ALL=C.UTF-8 \
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
# The old version for the upgrade test (see the header). Sets old_deb and old_from, or
# skip_why.
old_deb=
old_from=
old_tag=
skip_why=
previous_deb() {  # COMMIT: the kept .deb of that commit
	ls "$PREVIOUS/$1"/chartroom_*.deb 2> /dev/null | head -1
}
find_old_version() {
	if [ -n "${CHARTROOM_UPGRADE_FROM:-}" ]; then
		if [ "$CHARTROOM_UPGRADE_FROM" = none ]; then
			skip_why="CHARTROOM_UPGRADE_FROM=none"
		elif [ -s "$CHARTROOM_UPGRADE_FROM" ]; then
			old_deb=$CHARTROOM_UPGRADE_FROM
			old_tag=given
			old_from="$CHARTROOM_UPGRADE_FROM (CHARTROOM_UPGRADE_FROM)"
		else
			bad "CHARTROOM_UPGRADE_FROM=$CHARTROOM_UPGRADE_FROM: no such package"
			skip_why="CHARTROOM_UPGRADE_FROM names no package"
		fi
		return
	fi
	if ! git -C "$SRC" rev-parse --git-dir > /dev/null 2>&1; then
		skip_why="$SRC is not a git checkout: no parent commit to upgrade from"
		return
	fi
	local head dirty d c n best= bestn=
	head=$(git -C "$SRC" rev-parse HEAD)
	dirty=$(git -C "$SRC" status --porcelain)
	# The nearest kept ancestor (HEAD itself only when the working tree differs from it).
	for d in "$PREVIOUS"/*/; do
		c=$(basename "$d")
		[ -n "$(previous_deb "$c")" ] || continue
		git -C "$SRC" cat-file -e "$c^{commit}" 2> /dev/null || continue
		[ "$c" != "$head" ] || [ -n "$dirty" ] || continue
		git -C "$SRC" merge-base --is-ancestor "$c" "$head" || continue
		n=$(git -C "$SRC" rev-list --count "$c..$head")
		if [ -z "$bestn" ] || [ "$n" -lt "$bestn" ]; then
			best=$c
			bestn=$n
		fi
	done
	if [ -n "$best" ]; then
		old_deb=$(previous_deb "$best")
		old_tag=${best:0:12}
		old_from="commit ${best:0:12} ($bestn commit(s) before HEAD; kept in $PREVIOUS)"
		return
	fi
	# None kept: build the parent once (a fresh machine), and keep it.
	local parent=$head
	[ -n "$dirty" ] || parent=$(git -C "$SRC" rev-parse -q --verify "HEAD^" 2> /dev/null) || {
		if [ "$(git -C "$SRC" rev-parse --is-shallow-repository)" = true ]; then
			skip_why="shallow clone: HEAD's parent commit is not in it (clone with more history)"
		else
			skip_why="HEAD has no parent commit"
		fi
		return
	}
	echo "   no package kept for an ancestor of HEAD in $PREVIOUS: building commit ${parent:0:12}"
	local pw=$WORK/parent-build
	rm -rf "$pw" && mkdir -p "$pw/src" &&
		git -C "$SRC" archive "$parent" | tar -x -C "$pw/src" || {
		bad "git archive of the parent commit $parent"
		skip_why="the parent commit could not be exported"
		return
	}
	if timed parent-build env CHARTROOM_PKG_SRC="$pw/src" CHARTROOM_PKG_WORK="$pw/work" \
		CHARTROOM_PKG_COMMIT="$parent" CHARTROOM_PKG_BUILD_ONLY=1 CHARTROOM_PKG_PREVIOUS="$PREVIOUS" \
		DEB_BUILD_OPTIONS="nocheck $DEB_BUILD_OPTIONS" "$here/build.sh" &&
		[ -n "$(previous_deb "$parent")" ]; then
		ok "the parent commit ${parent:0:12} built (pbuilder) for the upgrade test"
		old_deb=$(previous_deb "$parent")
		old_tag=${parent:0:12}
		old_from="commit ${parent:0:12} (HEAD's parent, built now and kept in $PREVIOUS)"
	else
		bad "building the parent commit ${parent:0:12} for the upgrade test ($WORK/parent-build.log)"
		skip_why="the parent commit did not build"
	fi
	rm -rf "$pw"
}
# upgrade_repo: the old .deb, its version lowered below the new one's if need be, in a
# local apt repository ($WORK/upgrade-repo) that piuparts binds into its chroot.
upgrade_repo() {
	local repo=$WORK/upgrade-repo r=$WORK/repack oldv newv v short
	oldv=$(dpkg-deb -f "$old_deb" Version)
	newv=$(dpkg-deb -f "$deb" Version)
	rm -rf "$repo" "$r" && mkdir -p "$repo" || return 1
	if dpkg --compare-versions "$oldv" lt "$newv"; then
		v=$oldv
		cp "$old_deb" "$repo/" || return 1
	else
		# Same version (0.1.0-1 on both sides): only the version changes; the contents
		# and maintainer scripts stay the old commit's.
		v="$newv~parent.$old_tag"
		dpkg-deb -R "$old_deb" "$r" || return 1
		sed -i "s/^Version: .*/Version: $v/" "$r/DEBIAN/control"
		dpkg-deb -Zxz -b "$r" "$repo/chartroom_${v}_$(dpkg-deb -f "$old_deb" Architecture).deb" > /dev/null ||
			return 1
		rm -rf "$r"
	fi
	(cd "$repo" && dpkg-scanpackages --multiversion . > Packages 2> /dev/null &&
		apt-ftparchive release . > Release) || return 1
	old_version=$v
	dpkg --compare-versions "$old_version" lt "$newv"
}
if [[ " $what " == *" piuparts "* ]]; then
	echo "== upgrade test: the old version"
	find_old_version
	upgrade_args=(--no-upgrade-test)
	if [ -n "$old_deb" ]; then
		if upgrade_repo; then
			echo "   upgrade from $old_from: $(dpkg-deb -f "$old_deb" Version) repacked as $old_version"
			upgrade_args=(--extra-repo "deb [trusted=yes] file://$WORK/upgrade-repo ./"
				--bindmount "$WORK/upgrade-repo")
		else
			bad "repacking $old_deb as a lower version"
			skip_why="the old package could not be repacked"
		fi
	fi
	[ -z "$skip_why" ] || echo "SKIP: piuparts upgrade test: $skip_why"
	# Install, remove, purge in a clean chroot; then, with the old version in the local
	# repository, install it from there, upgrade to the new .deb, remove, purge. The scripts in
	# tests/packaging/piuparts-scripts put charts and chartroom's own files in
	# /var/lib/chartroom after the installation and check after the purge that the charts
	# are still there and chartroom's files are gone (README.Debian); they then delete the
	# test's charts, so that piuparts finds nothing left behind.
	# The ignored paths are systemd's (pulled in for systemd-sysusers/-tmpfiles, created by
	# its own tmpfiles.d at configuration), none is chartroom's.
	timed piuparts piuparts --basetgz "$MINBASE" --distribution bookworm --mirror "$mirror main" \
		--extra-repo "deb $mirror bookworm-updates main" \
		--extra-repo "deb $security bookworm-security main" \
		"${upgrade_args[@]}" --scriptsdir "$here/piuparts-scripts" -l "$WORK/piuparts-full.log" \
		-I '^/root/\.ssh/$' -I '^/var/(cache|lib|log)/private/$' \
		-I '^/var/lib/systemd/(coredump|pstore)/$' "$deb"
	check "piuparts passes" test $? -eq 0
	check "piuparts: install, remove, purge" grep -q 'PASS: Installation and purging test' "$WORK/piuparts.log"
	if [ -z "$skip_why" ]; then
		check "piuparts: upgrade from $old_version ($old_from) to $(dpkg-deb -f "$deb" Version), remove, purge" \
			grep -q 'PASS: Installation, upgrade and purging tests' "$WORK/piuparts.log"
		check "piuparts: the upgrade test installed the old version first" \
			grep -qF "Setting up chartroom ($old_version)" "$WORK/piuparts-full.log"
	fi
	n_kept=$(grep -c 'chartroom-charts: purge kept the charts' "$WORK/piuparts-full.log")
	check "purge kept the charts in /var/lib/chartroom and removed chartroom's own files ($n_kept purges checked)" \
		test "$n_kept" -eq "$([ -z "$skip_why" ] && echo 2 || echo 1)"
	[ -z "$skip_why" ] && check "an upgrade kept the charts" \
		grep -q 'chartroom-charts: the charts survived the upgrade' "$WORK/piuparts-full.log"
fi

if [ -n "$rebuild_pid" ]; then
	echo "== rebuild: waiting for it"
	finish_rebuild
fi
summary
