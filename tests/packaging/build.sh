#!/usr/bin/env bash
# Packaging test: orig tarball -> gbp import-orig -> gbp buildpackage --git-pbuilder (a clean
# bookworm chroot, Debian's Rust toolchain, no network) -> lintian -> checks of the source
# package, the .deb's contents and its maintainer scripts.
#
#   sudo tests/packaging/build.sh
#
# Runs as root on Debian 12 (installs its tools with apt-get), non-interactively. It needs
# crates.io once (cargo vendor with the host's cargo, or the local cargo cache) and the Debian
# mirror to make the pbuilder base once (tests/packaging/pbuilder-build.sh, cached in
# /var/cache/chartroom-test/pbuilder); the package build itself has no network (USENETWORK=no).
#
# Environment:
#   CHARTROOM_PKG_SRC   source tree to package (default: this checkout, working tree as is:
#                       tracked and untracked files, minus .gitignore'd ones)
#   CHARTROOM_PKG_WORK  scratch directory, emptied first (default /var/tmp/chartroom-packaging)
#   CHARTROOM_PKG_OUT   where the built packages are left (default $CHARTROOM_PKG_WORK/out);
#                       tests/packaging/install-test.sh takes the .deb from there
#   DEB_BUILD_OPTIONS   passed to the build (default: parallel=<cores>; add nocheck to skip
#                       the unit tests run during the build)
#   CHARTROOM_PKG_BUILDER  pbuilder (default): the clean chroot; rustup: the fallback, a build
#                       on this host with the rustup toolchain (~/.cargo/bin) and the
#                       pkg.chartroom.rustup profile, in a network namespace (unshare --net)
#   CHARTROOM_PKG_BUILD_ONLY=1  stop after the build (no lintian, contents or patch checks):
#                       how deb-checks.sh builds a parent commit for its upgrade test
#   CHARTROOM_PKG_COMMIT  the commit the source is (default: HEAD of a git checkout whose
#                       working tree is clean, else none)
#   CHARTROOM_PKG_PREVIOUS  where the .debs of pbuilder builds are kept by commit, for the
#                       upgrade test of deb-checks.sh (default $CHARTROOM_PBUILDER_CACHE/previous,
#                       i.e. /var/cache/chartroom-test/pbuilder/previous/<commit>/; the newest
#                       $CHARTROOM_PKG_PREVIOUS_KEEP (default 6) commits are kept)
# Last line: "packaging: N passed, M failed"; exit status 0 only if nothing failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
SRC=${CHARTROOM_PKG_SRC:-$(cd "$here/../.." && pwd)}
WORK=${CHARTROOM_PKG_WORK:-/var/tmp/chartroom-packaging}
BUILDER=${CHARTROOM_PKG_BUILDER:-pbuilder}
OUT=${CHARTROOM_PKG_OUT:-$WORK/out}
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-parallel=$(nproc)}
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

passed=0
failed=0
declare -a timings=()
ok() { passed=$((passed + 1)); echo "PASS: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
summary() {
	echo
	echo "== timings"
	local t
	for t in "${timings[@]}"; do echo "  $t"; done
	echo "packaging: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}
# timed NAME COMMAND...: runs it, logs to $WORK/logs/NAME.log, records the time.
timed() {
	local name=$1; shift
	local start end rc
	start=$(date +%s.%N)
	echo "== $name"
	"$@" > "$WORK/logs/$name.log" 2>&1
	rc=$?
	end=$(date +%s.%N)
	timings+=("$(printf '%-22s %6.1f s' "$name" "$(echo "$end - $start" | bc)")")
	if [ $rc -ne 0 ]; then
		tail -n 40 "$WORK/logs/$name.log" | sed 's/^/    /'
	fi
	return $rc
}
fatal() { bad "$*"; summary; }

if [ "$(id -u)" != 0 ]; then
	echo "build.sh: run as root (it installs packages and uses unshare --net)" >&2
	exit 2
fi

rm -rf "$WORK"
mkdir -p "$WORK/logs" "$OUT"

# The commit this build is of, if it is exactly one: its .debs are kept for later upgrade tests.
commit=${CHARTROOM_PKG_COMMIT:-}
if [ -z "$commit" ] && git -C "$SRC" rev-parse --git-dir > /dev/null 2>&1 &&
	[ -z "$(git -C "$SRC" status --porcelain 2> /dev/null)" ]; then
	commit=$(git -C "$SRC" rev-parse HEAD)
fi
PREVIOUS=${CHARTROOM_PKG_PREVIOUS:-${CHARTROOM_PBUILDER_CACHE:-/var/cache/chartroom-test/pbuilder}/previous}
# keep_previous: after a successful pbuilder build of a known commit, keep its .debs in
# $PREVIOUS/<commit>/ (the newest few commits only).
keep_previous() {
	[ "$BUILDER" = pbuilder ] && [ -n "$commit" ] && [ "$failed" -eq 0 ] || return 0
	local d=$PREVIOUS/$commit
	rm -rf "$d.tmp" && mkdir -p "$d.tmp" &&
		cp "$OUT"/chartroom_"$debver"_*.deb "$d.tmp/" &&
		rm -rf "$d" && mv "$d.tmp" "$d" &&
		echo "kept the .deb of commit $commit in $d for later upgrade tests"
	local old
	ls -1td "$PREVIOUS"/*/ 2> /dev/null | tail -n +$((${CHARTROOM_PKG_PREVIOUS_KEEP:-6} + 1)) |
		while IFS= read -r old; do rm -rf "$old"; done
}

# --- tools -------------------------------------------------------------------------------
install_tools() {
	local need=() p
	for p in debhelper git-buildpackage lintian devscripts fakeroot build-essential git \
		xz-utils python3 man-db bc iproute2 util-linux curl ca-certificates pbuilder; do
		dpkg -s "$p" > /dev/null 2>&1 || need+=("$p")
	done
	if [ ${#need[@]} -gt 0 ]; then
		apt-get update -q &&
			apt-get install -y -q --no-install-recommends "${need[@]}"
	fi
}
# bc is used by timed itself: install without it first.
start=$(date +%s)
install_tools > "$WORK/logs/tools.log" 2>&1 || { tail -20 "$WORK/logs/tools.log"; fatal "installing the packaging tools"; }
timings+=("$(printf '%-22s %6.1f s' tools "$(( $(date +%s) - start ))")")

# The host's Rust toolchain, for cargo vendor (debian/make-orig) and the rustup fallback
# build: the rustup one (installed if missing). The pbuilder build uses Debian's, in the chroot.
export PATH="$HOME/.cargo/bin:$PATH"
rust_min=$(sed -n 's/^rust-version *= *"\([^"]*\)".*/\1/p' "$SRC/Cargo.toml")
have_rust() {
	local v
	v=$(cargo --version 2>/dev/null | sed -n 's/^cargo \([0-9][0-9.]*\).*/\1/p')
	[ -n "$v" ] && dpkg --compare-versions "$v" ge "$rust_min"
}
if ! have_rust; then
	echo "== installing a Rust toolchain with rustup (cargo >= $rust_min not found)"
	curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
		sh -s -- -y --profile minimal --default-toolchain stable > "$WORK/logs/rustup.log" 2>&1
fi
check "Rust toolchain >= $rust_min ($(cargo --version 2>/dev/null))" have_rust || true
have_rust || summary

# --- a git repository of the source, as the packaging branch -----------------------------
snapshot() {
	local dest=$WORK/chartroom
	mkdir -p "$dest"
	if git -C "$SRC" rev-parse --git-dir > /dev/null 2>&1; then
		(cd "$SRC" && git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done |
			tar --null -T - -cf -) | tar -x -C "$dest"
	else
		cp -a "$SRC/." "$dest/"
		rm -rf "$dest/target" "$dest/vendor"
	fi
	cd "$dest" || return 1
	git init -q -b main
	git config user.name "${DEBFULLNAME:-chartroom packaging test}"
	git config user.email "${DEBEMAIL:-packaging-test@localhost}"
	git add -A
	git commit -q -m "chartroom source snapshot"
	# Packaging branches as in debian/gbp.conf and the README.
	git checkout -q -b debian/latest
	git branch upstream/latest "$(git commit-tree -m 'upstream branch' "$(git mktree < /dev/null)")"
}
timed snapshot snapshot || fatal "snapshot of $SRC"
cd "$WORK/chartroom" || fatal "cd"
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -1)
debver=$(dpkg-parsechangelog -S Version)
orig=$WORK/chartroom_$version.orig.tar.xz
echo "chartroom $version, package $debver"

# --- orig tarball ------------------------------------------------------------------------
timed make-orig debian/make-orig || fatal "debian/make-orig"
check "orig tarball $(basename "$orig") written" test -s "$orig"
tar -tJf "$orig" > "$WORK/orig.list"
check "orig has vendor/ and .cargo/config.toml" \
	grep -qx "chartroom-$version/.cargo/config.toml" "$WORK/orig.list"
check "orig has the vendored crates" grep -q "^chartroom-$version/vendor/.*/.cargo-checksum.json$" "$WORK/orig.list"
check "orig has no debian/" sh -c "! grep -q '^chartroom-$version/debian/' '$WORK/orig.list'"
if git diff --quiet -- debian/copyright; then
	ok "debian/copyright is current (debian/gen-copyright output == committed file)"
else
	bad "debian/copyright is stale: run debian/make-orig and commit debian/copyright"
	git --no-pager diff --stat -- debian/copyright
	git commit -q -m "debian/copyright regenerated" debian/copyright   # to test the rest
fi
ls -l "$orig" | awk '{printf "    orig: %.1f MB\n", $5/1048576}'

# --- gbp import-orig ---------------------------------------------------------------------
timed import-orig gbp import-orig "$orig" || fatal "gbp import-orig"
check "upstream tag upstream/$version" git show-ref -q --verify "refs/tags/upstream/$version"
tree_matches_orig() {
	# every file of the tarball is in debian/latest, nothing else but debian/
	sed -n "s|^chartroom-$version/||p" "$WORK/orig.list" | grep -v '/$' | grep -v '^$' | sort > "$WORK/a"
	git ls-tree -r --name-only HEAD | grep -v '^debian/' | sort > "$WORK/b"
	diff -q "$WORK/a" "$WORK/b" > /dev/null
}
check "debian/latest = orig tarball + debian/" tree_matches_orig

# --- offline build -----------------------------------------------------------------------
if [ "$BUILDER" = pbuilder ]; then
	# The base is made once (debootstrap + the toolchain) and cached.
	timed pbuilder-base "$here/pbuilder-build.sh" base || fatal "pbuilder base ($here/pbuilder-build.sh base)"
	timed build "$here/pbuilder-build.sh" build ||
		fatal "gbp buildpackage --git-pbuilder (DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS)"
	check "the chroot build had no network (pbuilder USENETWORK=no)" \
		grep -q 'network access will be disabled during build' "$WORK/logs/build.log"
	check "built with Debian's toolchain (/usr/bin/cargo of cargo-web or cargo)" \
		grep -q 'debian/rules: using /usr/bin/cargo (cargo 1\.' "$WORK/logs/build.log"
else
	check "the build namespace has no network" \
		unshare --net -- sh -c '! curl -s -m 5 -o /dev/null https://index.crates.io/config.json'
	offline_build() {
		unshare --net -- sh -c 'ip link set lo up 2>/dev/null; exec gbp buildpackage \
			--git-builder="debuild --no-lintian --prepend-path=$HOME/.cargo/bin -i -I -us -uc --build-profiles=pkg.chartroom.rustup"'
	}
	timed build offline_build || fatal "gbp buildpackage (offline, DEB_BUILD_OPTIONS=$DEB_BUILD_OPTIONS)"
fi
area=$WORK/build-area
deb=$(ls "$area"/chartroom_"$debver"_*.deb 2>/dev/null | head -1)
changes=$(ls "$area"/chartroom_"$debver"_*.changes 2>/dev/null | grep -v _source.changes | head -1)
dsc=$area/chartroom_$debver.dsc
check "binary package built" test -s "$deb"
check "source package built (.dsc, orig, debian.tar.xz)" \
	test -s "$dsc" -a -s "$area/chartroom_$version.orig.tar.xz" -a -s "$area/chartroom_$debver.debian.tar.xz"
check "cargo ran --offline --frozen" grep -q -- "--offline --frozen" "$WORK/logs/build.log"
check "the source package carries make-orig's tarball, byte for byte" \
	cmp -s "$orig" "$area/chartroom_$version.orig.tar.xz"
[ -s "$deb" ] || summary
cp "$area"/chartroom_"$debver"* "$area/chartroom_$version.orig.tar.xz" "$OUT/" 2>/dev/null
cp "$area"/chartroom-dbgsym_"$debver"_*.deb "$OUT/" 2>/dev/null
if [ "${CHARTROOM_PKG_BUILD_ONLY:-}" = 1 ]; then
	keep_previous
	summary
fi

# --- lintian -----------------------------------------------------------------------------
run_lintian() {
	# As nobody (lintian warns when run as root). Exit status 2 only means tags were shown,
	# overridden ones included: the tags are judged below.
	mkdir -p "$WORK/lintian-home" && chown nobody "$WORK/lintian-home"
	runuser -u nobody -- env HOME="$WORK/lintian-home" \
		lintian --pedantic --show-overrides --display-level '>=pedantic' "$changes"
	local rc=$?
	[ $rc -eq 2 ] && rc=0
	return $rc
}
timed lintian run_lintian
check "lintian ran" test $? -eq 0
grep -E '^[EWIPXO]: ' "$WORK/logs/lintian.log" > "$WORK/lintian.tags"
for level in E W I P O; do
	n=$(grep -c "^$level: " "$WORK/lintian.tags")
	echo "    lintian $level: $n"
done
sed 's/^/    /' "$WORK/lintian.tags"   # overrides' reasons: $WORK/logs/lintian.log
check "lintian: no errors" sh -c "! grep -q '^E: ' '$WORK/lintian.tags'"
check "lintian: no warnings that are not overridden" sh -c "! grep -q '^W: ' '$WORK/lintian.tags'"

# --- contents ----------------------------------------------------------------------------
x=$WORK/deb
mkdir -p "$x/root" "$x/control"
dpkg-deb -x "$deb" "$x/root"
dpkg-deb -e "$deb" "$x/control"
dpkg-deb -c "$deb" > "$WORK/deb.list"
has() { test -e "$x/root$1"; }
mode_of() { stat -c %a "$x/root$1"; }
check "/usr/bin/chartroom" test -x "$x/root/usr/bin/chartroom"
check "chartroom --version is $version" \
	sh -c "'$x/root/usr/bin/chartroom' --version | grep -qx 'chartroom version $version'"
check "/etc/chartroom/chartroom.yaml" has /etc/chartroom/chartroom.yaml
check "/etc/default/chartroom, mode 0600" test "$(mode_of /etc/default/chartroom 2>/dev/null)" = 600
check "conffiles: both files in /etc" sh -c "
	grep -qx /etc/chartroom/chartroom.yaml '$x/control/conffiles' &&
	grep -qx /etc/default/chartroom '$x/control/conffiles'"
packaged_config() {
	local conf=$x/root/etc/chartroom/chartroom.yaml
	# The generated example (etc/chartroom.yaml) with exactly the packaged keys set.
	diff "$WORK/chartroom/etc/chartroom.yaml" "$conf" > "$WORK/conf.diff"
	grep -qx 'storage.backend: local' "$conf" &&
		grep -qx 'storage.local.rootdir: /var/lib/chartroom' "$conf" &&
		grep -qx 'listen.host: 127.0.0.1' "$conf" &&
		grep -qx 'port: 8080' "$conf" &&
		[ "$(grep -c '^>' "$WORK/conf.diff")" -eq 4 ]
}
check "chartroom.yaml = generated example + packaged storage/listen settings" packaged_config
config_loads() {
	local d
	d=$(mktemp -d)
	"$x/root/usr/bin/chartroom" --config "$x/root/etc/chartroom/chartroom.yaml" \
		--storage-local-rootdir "$d" --gen-index > "$d/index.yaml" &&
		grep -q '^apiVersion: v1' "$d/index.yaml"
	local rc=$?
	rm -rf "$d"
	return $rc
}
check "the packaged chartroom.yaml loads (chartroom --gen-index)" config_loads
check "units in /lib/systemd/system" sh -c "
	test -f '$x/root/lib/systemd/system/chartroom.service' &&
	test -f '$x/root/lib/systemd/system/chartroom.socket'"
check "sysusers.d/chartroom.conf creates user chartroom" \
	grep -q '^u *chartroom ' "$x/root/usr/lib/sysusers.d/chartroom.conf"
check "tmpfiles.d/chartroom.conf: /var/lib/chartroom owned by chartroom" \
	grep -q '^d */var/lib/chartroom .* chartroom *chartroom' "$x/root/usr/lib/tmpfiles.d/chartroom.conf"
check "man pages chartroom(8), chartroom.yaml(5)" sh -c "
	test -f '$x/root/usr/share/man/man8/chartroom.8.gz' &&
	test -f '$x/root/usr/share/man/man5/chartroom.yaml.5.gz'"
man_clean() {
	local page out
	for page in man8/chartroom.8.gz man5/chartroom.yaml.5.gz; do
		out=$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 \
			man --warnings -E UTF-8 -l -Tutf8 -Z "$x/root/usr/share/man/$page" 2>&1 > /dev/null)
		if [ -n "$out" ]; then echo "$page: $out"; return 1; fi
	done
}
check "man --warnings: both pages clean" man_clean
man_lists_options() {
	# every option of chartroom --help is in chartroom(8)
	local flag missing=0 page=$WORK/chartroom.8.txt
	zcat "$x/root/usr/share/man/man8/chartroom.8.gz" | sed 's/\\-/-/g' > "$page"
	for flag in $("$x/root/usr/bin/chartroom" --help | grep -o -- '--[a-z][a-z0-9-]*' | sort -u); do
		case "$flag" in --cache-redis-*)
			continue ;;
		esac
		if ! grep -q -- "$flag\b" "$page"; then
			echo "    not in chartroom(8): $flag"
			missing=1
		fi
	done
	return $missing
}
check "chartroom(8) documents every option of --help" man_lists_options
check "README.Debian, copyright, changelog in /usr/share/doc/chartroom" sh -c "
	ls '$x/root/usr/share/doc/chartroom/' | grep -q '^README.Debian' &&
	test -f '$x/root/usr/share/doc/chartroom/copyright' &&
	test -f '$x/root/usr/share/doc/chartroom/changelog.Debian.gz'"
check "nothing shipped in /var or /usr/local" sh -c "! grep -E ' \./(var|usr/local)/' '$WORK/deb.list'"
check "Depends: libc6 (from shlibs) and procps (kill in ExecReload)" sh -c "
	dpkg-deb -f '$deb' Depends | grep -q 'libc6' && dpkg-deb -f '$deb' Depends | grep -q 'procps'"

# --- maintainer scripts ------------------------------------------------------------------
ms=$x/control
for s in postinst prerm postrm; do
	check "$s exists and is valid sh" sh -n "$ms/$s"
done
check "postinst: systemd-sysusers before systemd-tmpfiles" sh -c "
	a=\$(grep -n 'systemd-sysusers' '$ms/postinst' | head -1 | cut -d: -f1)
	b=\$(grep -n 'systemd-tmpfiles' '$ms/postinst' | head -1 | cut -d: -f1)
	[ -n \"\$a\" ] && [ -n \"\$b\" ] && [ \"\$a\" -lt \"\$b\" ]"
check "postinst: enables and starts chartroom.socket" sh -c "
	grep -q \"deb-systemd-helper enable 'chartroom.socket'\" '$ms/postinst' &&
	grep -q \"deb-systemd-invoke .*start 'chartroom.socket'\" '$ms/postinst'"
check "postinst: does not start chartroom.service, try-restarts it (alone) on upgrade" sh -c "
	! grep -q \"deb-systemd-invoke [a-z]*start 'chartroom.service'\" '$ms/postinst' &&
	grep -q \"deb-systemd-invoke try-restart 'chartroom.service' >\" '$ms/postinst'"
check "upgrades leave the socket alone (no stop in preinst, no restart in postinst)" sh -c "
	! grep -qs 'deb-systemd-invoke stop' '$ms/preinst' &&
	! grep -q \"deb-systemd-invoke .*restart.*'chartroom.socket'\" '$ms/postinst'"
check "prerm: stops the socket, then the service, on remove (not on upgrade)" sh -c "
	a=\$(grep -n \"deb-systemd-invoke stop 'chartroom.socket'\" '$ms/prerm' | cut -d: -f1)
	b=\$(grep -n \"deb-systemd-invoke stop 'chartroom.service'\" '$ms/prerm' | cut -d: -f1)
	[ -n \"\$a\" ] && [ -n \"\$b\" ] && [ \"\$a\" -lt \"\$b\" ] &&
	[ \$(grep -c '\"\$1\" = remove' '$ms/prerm') -eq 3 ]"  # (3: + chartroom-publish.timer)
check "postrm purge: keeps charts (no rm -r of /var/lib/chartroom)" sh -c "
	grep -q 'chartroom-state.json' '$ms/postrm' && ! grep -Eq 'rm -[a-zA-Z]*r[a-zA-Z]* .*/var/lib/chartroom' '$ms/postrm'"

# --- chartroom publish (issue 8): units installed, not enabled --------------------------
check "chartroom-publish.service and .timer in /lib/systemd/system" sh -c "
	test -f '$x/root/lib/systemd/system/chartroom-publish.service' &&
	test -f '$x/root/lib/systemd/system/chartroom-publish.timer'"
check "/etc/default/chartroom-publish, mode 0600, a conffile" sh -c "
	test \"\$(stat -c %a '$x/root/etc/default/chartroom-publish')\" = 600 &&
	grep -qx /etc/default/chartroom-publish '$x/control/conffiles'"
# (dh_installsystemd --no-enable's snippet: enables only a unit the operator had enabled)
check "postinst: the timer is not enabled at installation" \
	grep -q "deb-systemd-helper debian-installed 'chartroom-publish.timer'" "$ms/postinst"
check "prerm: stops chartroom-publish.timer on remove" \
	grep -q "deb-systemd-invoke stop 'chartroom-publish.timer'" "$ms/prerm"
check "man page chartroom-publish(8)" test -f "$x/root/usr/share/man/man8/chartroom-publish.8.gz"
check "Recommends: git" sh -c "dpkg-deb -f '$deb' Recommends | grep -qw git"

# --- a patch to a vendored crate, the documented way (gbp pq, refresh-vendor-checksums) -----
patch_test() {
	local p=$WORK/patch crate
	rm -rf "$p"; mkdir -p "$p"
	cd "$WORK/chartroom" || return 1
	git checkout -q -b patch-test debian/latest || return 1
	gbp pq import || return 1
	crate=$(cd vendor && ls -d hex-* | head -1)
	[ -n "$crate" ] || { echo "no vendor/hex-*"; return 1; }
	echo "// patched through debian/patches" >> "vendor/$crate/src/lib.rs"
	# (a) without refreshing the checksums, cargo refuses the crate
	if CARGO_HOME=$p/cargo-home CARGO_TARGET_DIR=$p/target unshare --net -- \
		cargo build --offline --frozen -p hex > "$p/unrefreshed.log" 2>&1; then
		echo "cargo accepted a patched crate whose checksums were not refreshed"; return 1
	fi
	cat "$p/unrefreshed.log"
	grep -q "checksum" "$p/unrefreshed.log" || return 1
	# (b) refresh the crate's checksums, commit both, export as debian/patches
	debian/refresh-vendor-checksums "vendor/$crate" || return 1
	git commit -q -a -m "Test patch of a vendored crate" || return 1
	gbp pq export || return 1
	git add debian/patches && git commit -q -m "Add a test patch" || return 1
	cat debian/patches/series
	# the source package carries it; dpkg-source -x applies it; cargo takes the crate
	gbp buildpackage --git-ignore-branch --git-export-dir="$p/area" \
		--git-builder='dpkg-source -i -I -b .' || return 1
	cd "$p" || return 1
	dpkg-source -x area/chartroom_"$debver".dsc src || return 1
	grep -q "patched through debian/patches" src/vendor/"$crate"/src/lib.rs || return 1
	cd src && CARGO_HOME=$p/cargo-home CARGO_TARGET_DIR=$p/target unshare --net -- \
		cargo build --offline --frozen -p hex
}
timed patch-test patch_test
check "a debian/patches patch of a vendored crate (gbp pq, checksums refreshed) applies and builds" test $? -eq 0
cd "$WORK/chartroom" && git checkout -q debian/latest
keep_previous
summary
