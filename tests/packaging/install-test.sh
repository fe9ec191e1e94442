#!/usr/bin/env bash
# Install test on real systemd: boots a minimal Debian 12 with systemd-nspawn, installs the
# chartroom .deb there and checks socket activation, uploads and downloads, reload to another
# storage, a failed reload, stop, remove/reinstall and purge.
#
#   sudo tests/packaging/install-test.sh [path/to/chartroom_VERSION_ARCH.deb]
#
# Runs as root on Debian 12, non-interactively; installs systemd-container and debootstrap.
# Without an argument, the newest .deb of tests/packaging/build.sh ($CHARTROOM_PKG_OUT) is
# used, and build.sh is run first if there is none.
#
# Environment:
#   CHARTROOM_TEST_ROOT  the debootstrapped root, made once and reused (default
#                        /var/cache/chartroom-test/bookworm-root); the container runs on a
#                        throw-away overlay of it (--volatile=overlay), so it stays clean
#   DEBIAN_MIRROR        mirror for debootstrap (default: the first deb.debian.org-style
#                        mirror of this machine's apt sources, else debootstrap's default)
#   CHARTROOM_PKG_WORK / CHARTROOM_PKG_OUT  as for build.sh
# The container has no network (--private-network) and is stopped by its PID at the end.
# Last line: "install-test: N passed, M failed"; exit status 0 only if nothing failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ROOT=${CHARTROOM_TEST_ROOT:-/var/cache/chartroom-test/bookworm-root}
PKG_WORK=${CHARTROOM_PKG_WORK:-/var/tmp/chartroom-packaging}
OUT=${CHARTROOM_PKG_OUT:-$PKG_WORK/out}
WORK=$PKG_WORK/install-test
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
# What the root needs besides the minimal base: chartroom's dependencies must be there
# already, the container has no network for apt. Changing this list rebuilds the root.
# (git: for chartroom publish's git pull, a Recommends of the package, and its test block)
ROOT_PACKAGES="systemd,systemd-sysv,dbus,ca-certificates,curl,procps,iproute2,git"

passed=0
failed=0
declare -a timings=()
ok() { passed=$((passed + 1)); echo "PASS: $*"; }
bad() { failed=$((failed + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
now() { date +%s.%N; }
lap() { timings+=("$(printf '%-28s %6.1f s' "$1" "$(echo "$(now) - $2" | bc)")"); }

nspawn_pid=
cpid=
stop_container() {
	[ -n "$nspawn_pid" ] || return 0
	if kill -0 "$nspawn_pid" 2> /dev/null; then
		# SIGTERM makes systemd-nspawn halt the container's systemd cleanly.
		kill -TERM "$nspawn_pid"
		local i
		for i in $(seq 1 60); do
			kill -0 "$nspawn_pid" 2> /dev/null || break
			sleep 0.5
		done
		kill -0 "$nspawn_pid" 2> /dev/null && kill -KILL "$nspawn_pid"
	fi
	wait "$nspawn_pid" 2> /dev/null
	nspawn_pid=
}
summary() {
	local start=$(now)
	stop_container
	lap "stop container" "$start"
	echo
	echo "== timings"
	local t
	for t in "${timings[@]}"; do echo "  $t"; done
	echo "install-test: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit $?
}
fatal() { bad "$*"; summary; }
trap 'stop_container' EXIT
trap 'bad "interrupted"; summary' INT TERM

if [ "$(id -u)" != 0 ]; then
	echo "install-test.sh: run as root" >&2
	exit 2
fi
rm -rf "$WORK"
mkdir -p "$WORK/share"

# --- tools and the package -----------------------------------------------------------------
t=$(now)
need=()
for p in systemd-container debootstrap bc util-linux; do
	dpkg -s "$p" > /dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	{ apt-get update -q && apt-get install -y -q --no-install-recommends "${need[@]}"; } \
		> "$WORK/tools.log" 2>&1 || { tail -20 "$WORK/tools.log"; fatal "installing ${need[*]}"; }
fi
lap tools "$t"

deb=${1:-}
if [ -z "$deb" ]; then
	deb=$(ls -t "$OUT"/chartroom_*.deb 2> /dev/null | head -1)
	if [ -z "$deb" ]; then
		echo "== no .deb in $OUT: running build.sh"
		"$here/build.sh" || fatal "tests/packaging/build.sh"
		deb=$(ls -t "$OUT"/chartroom_*.deb 2> /dev/null | head -1)
	fi
fi
[ -s "$deb" ] || fatal "no chartroom .deb (looked in $OUT)"
echo "package: $deb"
cp "$deb" "$WORK/share/"
debname=$(basename "$deb")

# Two small charts, made here (a chart package is a gzipped tar of NAME/Chart.yaml ...).
mkchart() { # NAME VERSION
	local d
	d=$(mktemp -d)
	mkdir -p "$d/$1/templates"
	printf 'apiVersion: v2\nname: %s\nversion: %s\ndescription: install test chart\n' "$1" "$2" \
		> "$d/$1/Chart.yaml"
	printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n' "$1" > "$d/$1/templates/cm.yaml"
	tar -C "$d" --owner=0 --group=0 -czf "$WORK/share/$1-$2.tgz" "$1"
	rm -rf "$d"
}
mkchart alpha 0.1.0
mkchart beta 0.2.0

# --- the Debian 12 root (cached) -------------------------------------------------------------
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(grep -rhoE '^(deb|URIs:) +(\[[^]]*\] +)?https?://[^ ]+/debian/?( |$)' \
		/etc/apt/sources.list /etc/apt/sources.list.d/ 2> /dev/null |
		grep -v security | head -1 | grep -oE 'https?://[^ ]+')
fi
stamp="bookworm minbase $ROOT_PACKAGES"
if [ ! -f "$ROOT/.chartroom-test-root" ] || [ "$(cat "$ROOT/.chartroom-test-root")" != "$stamp" ]; then
	echo "== debootstrap bookworm into $ROOT (mirror: ${mirror:-the default of debootstrap})"
	t=$(now)
	rm -rf "$ROOT" "$ROOT.tmp"
	mkdir -p "$(dirname "$ROOT")"
	debootstrap --variant=minbase --include="$ROOT_PACKAGES" bookworm "$ROOT.tmp" $mirror \
		> "$WORK/debootstrap.log" 2>&1 || { tail -20 "$WORK/debootstrap.log"; fatal "debootstrap"; }
	# A machine-id of its own, no host name clash; nothing else to configure.
	rm -f "$ROOT.tmp/etc/machine-id"
	systemd-machine-id-setup --root="$ROOT.tmp" > /dev/null
	echo chartroom-test > "$ROOT.tmp/etc/hostname"
	echo "$stamp" > "$ROOT.tmp/.chartroom-test-root"
	mv "$ROOT.tmp" "$ROOT"
	lap debootstrap "$t"
else
	echo "== reusing the root in $ROOT"
fi

# --- boot ------------------------------------------------------------------------------------
t=$(now)
systemd-nspawn -q -D "$ROOT" --register=no --keep-unit --boot --private-network \
	--volatile=overlay --bind-ro="$WORK/share:/srv/test" --machine=chartroom-test \
	> "$WORK/nspawn.log" 2>&1 < /dev/null &
nspawn_pid=$!
# The container's PID 1 is the child of systemd-nspawn that runs systemd (an intermediate
# child comes and goes first).
for i in $(seq 1 300); do
	cpid=$(pgrep -P "$nspawn_pid" | head -1)
	[ -n "$cpid" ] && [ "$(cat "/proc/$cpid/comm" 2> /dev/null)" = systemd ] && break
	cpid=
	kill -0 "$nspawn_pid" 2> /dev/null || break
	sleep 0.1
done
[ -n "$cpid" ] || { cat "$WORK/nspawn.log"; nspawn_pid=; fatal "the container did not start"; }
ct() {
	nsenter -t "$cpid" -a env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root \
		DEBIAN_FRONTEND=noninteractive SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
state=
for i in $(seq 1 60); do
	# (answers at once, nothing or "offline", while the container's manager is not up yet)
	state=$(timeout 60 nsenter -t "$cpid" -a systemctl is-system-running --wait 2> /dev/null)
	case "$state" in running|degraded) break ;; esac
	sleep 0.5
done
lap "boot" "$t"
check "container booted (systemd: ${state:-no answer})" test "$state" = running -o "$state" = degraded
case "$state" in running|degraded) ;; *) summary ;; esac

# --- install ---------------------------------------------------------------------------------
t=$(now)
ct apt-get install -y -q "/srv/test/$debname" > "$WORK/install.log" 2>&1
check "apt install ./$debname" test $? -eq 0 || tail -20 "$WORK/install.log"
lap "apt install" "$t"
unit() { ct systemctl show -p "$2" --value "$1"; }
# until SECONDS CMD...: runs CMD every 0.2 s until it succeeds (status 0) or SECONDS pass (1).
# `systemctl reload` returns once SIGHUP is sent, before chartroom has acted on it.
until_ok() {
	local end=$(($(date +%s) + $1)); shift
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || return 1
		sleep 0.2
	done
}
status_has() { unit chartroom StatusText | grep -q "$1"; }
check "user chartroom exists (sysusers)" ct sh -c "id chartroom > /dev/null"
check "/var/lib/chartroom owned by chartroom, mode 750" \
	test "$(ct stat -c '%U:%G %a' /var/lib/chartroom)" = "chartroom:chartroom 750"
check "chartroom.socket enabled and active" \
	test "$(ct systemctl is-enabled chartroom.socket)/$(ct systemctl is-active chartroom.socket)" = enabled/active
check "the socket listens on 127.0.0.1:8080" sh -c "nsenter -t $cpid -a ss -Hltn 'sport = :8080' | grep -q '127.0.0.1:8080'"
check "bash completion installed and loadable" ct bash -c \
	'. /usr/share/bash-completion/completions/chartroom && complete -p chartroom > /dev/null'
check "chartroom.service not started before the first connection" \
	test "$(ct systemctl is-active chartroom.service)" = inactive

# --- socket activation, upload, index, download ------------------------------------------------
t=$(now)
check "GET /health through the socket" ct curl -fsS -o /dev/null -m 30 http://127.0.0.1:8080/health
check "the request activated the service (systemctl is-active chartroom: active)" \
	test "$(ct systemctl is-active chartroom)" = active
pid1=$(unit chartroom MainPID)
check "service runs as user chartroom" test "$(ct ps -o user= -p "$pid1" | tr -d ' ')" = chartroom
check "upload alpha-0.1.0.tgz with curl" sh -c "
	nsenter -t $cpid -a curl -fsS -m 30 --data-binary @/srv/test/alpha-0.1.0.tgz \
		http://127.0.0.1:8080/api/charts | grep -q saved"
check "index.yaml lists alpha 0.1.0" sh -c "
	nsenter -t $cpid -a curl -fsS -m 30 http://127.0.0.1:8080/index.yaml > '$WORK/index1.yaml' &&
	grep -q '^  alpha:' '$WORK/index1.yaml' && grep -q 'version: 0.1.0' '$WORK/index1.yaml'"
check "pull alpha-0.1.0.tgz back: same bytes" sh -c "
	nsenter -t $cpid -a curl -fsS -m 30 http://127.0.0.1:8080/charts/alpha-0.1.0.tgz > '$WORK/pulled.tgz' &&
	cmp -s '$WORK/pulled.tgz' '$WORK/share/alpha-0.1.0.tgz'"
check "the chart is stored in /var/lib/chartroom" ct test -f /var/lib/chartroom/alpha-0.1.0.tgz
lap "activation + upload/pull" "$t"

# --- reload to another storage directory -------------------------------------------------------
# As README.Debian says: the unit's sandbox (ProtectSystem=strict) needs a drop-in to write
# elsewhere than /var/lib/chartroom; that takes a restart, the storage switch does not.
t=$(now)
ct install -d -o chartroom -g chartroom -m 0750 /srv/charts-b
ct install -o chartroom -g chartroom -m 0640 /srv/test/beta-0.2.0.tgz /srv/charts-b/
ct mkdir -p /etc/systemd/system/chartroom.service.d
ct sh -c 'printf "[Service]\nReadWritePaths=/srv/charts-b\n" > /etc/systemd/system/chartroom.service.d/storage.conf'
ct systemctl daemon-reload
check "restart with the ReadWritePaths drop-in" ct systemctl restart chartroom
pid1=$(unit chartroom MainPID)
ct sed -i 's|^storage.local.rootdir: .*|storage.local.rootdir: /srv/charts-b|' /etc/chartroom/chartroom.yaml
check "systemctl reload chartroom (storage -> /srv/charts-b)" ct systemctl reload chartroom
check "the reload ends (index.yaml lists beta)" until_ok 30 sh -c "
	nsenter -t $cpid -a curl -fsS -m 5 http://127.0.0.1:8080/index.yaml | grep -q '^  beta:'"
check "still active after the reload, same MainPID" \
	test "$(ct systemctl is-active chartroom)/$(unit chartroom MainPID)" = "active/$pid1"
check "the new storage is served (beta in index.yaml, alpha gone)" sh -c "
	nsenter -t $cpid -a curl -fsS -m 30 http://127.0.0.1:8080/index.yaml > '$WORK/index2.yaml' &&
	grep -q '^  beta:' '$WORK/index2.yaml' && ! grep -q '^  alpha:' '$WORK/index2.yaml'"
check "pull beta-0.2.0.tgz from the new storage" sh -c "
	nsenter -t $cpid -a curl -fsS -m 30 http://127.0.0.1:8080/charts/beta-0.2.0.tgz > '$WORK/pulled2.tgz' &&
	cmp -s '$WORK/pulled2.tgz' '$WORK/share/beta-0.2.0.tgz'"
check "upload alpha into the new storage" sh -c "
	nsenter -t $cpid -a curl -fsS -m 30 --data-binary @/srv/test/alpha-0.1.0.tgz \
		http://127.0.0.1:8080/api/charts | grep -q saved &&
	nsenter -t $cpid -a test -f /srv/charts-b/alpha-0.1.0.tgz"
lap "reload to new storage" "$t"

# --- a broken edit, reloaded -------------------------------------------------------------------
t=$(now)
ct cp /etc/chartroom/chartroom.yaml /root/chartroom.yaml.good
ct sh -c 'printf "storage.local.rootdir: [unclosed\n" >> /etc/chartroom/chartroom.yaml'
since=$(ct date +%s)
reload_refused() { ! ct systemctl reload chartroom 2> /dev/null; }
journal_names_the_error() {
	ct journalctl -u chartroom --since "@$since" --no-pager -o cat |
		grep -q 'check-config: /etc/chartroom/chartroom.yaml: invalid YAML'
}
still_old_and_untouched() {
	test "$(ct systemctl is-active chartroom)/$(unit chartroom MainPID)" = "active/$pid1" &&
		! status_has 'reload failed'
}
check "systemctl reload with a broken file fails (check-config in ExecReload)" reload_refused
check "the journal holds check-config's message (file, YAML error)" until_ok 10 journal_names_the_error
check "after the refused reload: active, same MainPID, no reload attempted" still_old_and_untouched
# The daemon's own guard, for a SIGHUP that bypasses ExecReload (kill -HUP, systemctl kill).
ct systemctl kill -s HUP --kill-whom=main chartroom
check "the broken reload ends (StatusText: reload failed)" until_ok 30 status_has 'reload failed'
check "broken config + reload: still active, same MainPID" \
	test "$(ct systemctl is-active chartroom)/$(unit chartroom MainPID)" = "active/$pid1"
ct systemctl status --no-pager -n 5 chartroom > "$WORK/status-broken.txt" 2>&1
sed 's/^/    /' "$WORK/status-broken.txt" | head -12
check "systemctl status shows the reason (reload failed: ... YAML)" \
	grep -q 'reload failed:.*YAML' "$WORK/status-broken.txt"
check "the old settings are still served (beta from /srv/charts-b)" sh -c "
	nsenter -t $cpid -a curl -fsS -m 30 http://127.0.0.1:8080/index.yaml | grep -q '^  beta:'"
ct cp /root/chartroom.yaml.good /etc/chartroom/chartroom.yaml
check "fixed config + systemctl reload" ct systemctl reload chartroom
check "fixed config: the status clears" until_ok 30 sh -c "! nsenter -t $cpid -a systemctl show -p StatusText --value chartroom | grep -q 'reload failed'"
lap "failed reload" "$t"

# --- stop --------------------------------------------------------------------------------------
t=$(now)
check "systemctl stop chartroom" ct sh -c "systemctl stop chartroom 2> /dev/null"
check "stopped cleanly (inactive, Result=success, exit status 0)" \
	test "$(ct systemctl is-active chartroom)/$(unit chartroom Result)/$(unit chartroom ExecMainStatus)" = inactive/success/0
check "the socket keeps listening after the service stopped" \
	test "$(ct systemctl is-active chartroom.socket)" = active
check "the next request starts it again" sh -c "
	nsenter -t $cpid -a curl -fsS -o /dev/null -m 30 http://127.0.0.1:8080/health &&
	test \"\$(nsenter -t $cpid -a systemctl is-active chartroom)\" = active"
lap "stop" "$t"

# --- upgrade ----------------------------------------------------------------------------------
# The same package with a higher version (repacked here): the maintainer scripts of an
# upgrade run for real. The running service is restarted on the new binary; the socket and
# the operator's configuration stay.
t=$(now)
upver=$(dpkg-deb -f "$deb" Version)+upgradetest1
rm -rf "$WORK/repack" && dpkg-deb -R "$deb" "$WORK/repack" &&
	sed -i "s/^Version: .*/Version: $upver/" "$WORK/repack/DEBIAN/control" &&
	dpkg-deb -b "$WORK/repack" "$WORK/share/chartroom_upgrade.deb" > /dev/null
pid_before=$(unit chartroom MainPID)
socket_since=$(unit chartroom.socket ActiveEnterTimestampMonotonic)
ct apt-get install -y -q /srv/test/chartroom_upgrade.deb > "$WORK/upgrade.log" 2>&1
check "upgrade to $upver" test "$(ct dpkg-query -W -f '${Version}' chartroom)" = "$upver"
check "upgrade: no failed systemctl job in the maintainer scripts" \
	sh -c "! grep -Eq 'Job failed|Could not execute systemctl' '$WORK/upgrade.log'"
check "upgrade left the socket alone (active since before)" \
	test "$(unit chartroom.socket ActiveEnterTimestampMonotonic)" = "$socket_since"
check "upgrade restarted the running service (new MainPID, active)" sh -c "
	test \"\$(nsenter -t $cpid -a systemctl is-active chartroom)\" = active &&
	test \"\$(nsenter -t $cpid -a systemctl show -p MainPID --value chartroom)\" != '$pid_before'"
check "after upgrade: socket active, edited storage served" sh -c "
	test \"\$(nsenter -t $cpid -a systemctl is-active chartroom.socket)\" = active &&
	nsenter -t $cpid -a curl -fsS -m 30 http://127.0.0.1:8080/index.yaml | grep -q '^  beta:'"
lap "upgrade" "$t"

# --- remove, reinstall ---------------------------------------------------------------------------
t=$(now)
ct apt-get remove -y -q chartroom > "$WORK/remove.log" 2>&1
check "apt remove chartroom" test $? -eq 0
check "after remove: units stopped, binary gone" sh -c "
	test \"\$(nsenter -t $cpid -a systemctl is-active chartroom.socket chartroom.service | sort -u | tr '\n' ' ')\" = 'inactive ' &&
	! nsenter -t $cpid -a test -e /usr/bin/chartroom"
check "after remove: config (with the edit) and charts kept" sh -c "
	nsenter -t $cpid -a grep -qx 'storage.local.rootdir: /srv/charts-b' /etc/chartroom/chartroom.yaml &&
	nsenter -t $cpid -a test -f /var/lib/chartroom/alpha-0.1.0.tgz &&
	nsenter -t $cpid -a test -f /etc/default/chartroom"
ct apt-get install -y -q "/srv/test/$debname" > "$WORK/reinstall.log" 2>&1
check "apt install again" test $? -eq 0
check "reinstall kept the operator's edit of chartroom.yaml" \
	ct grep -qx 'storage.local.rootdir: /srv/charts-b' /etc/chartroom/chartroom.yaml
check "after reinstall: socket active, requests served from the edited storage" sh -c "
	test \"\$(nsenter -t $cpid -a systemctl is-active chartroom.socket)\" = active &&
	nsenter -t $cpid -a curl -fsS -m 30 http://127.0.0.1:8080/index.yaml | grep -q '^  beta:'"
lap "remove + reinstall" "$t"

# --- purge -------------------------------------------------------------------------------------
t=$(now)
ct systemctl stop chartroom 2> /dev/null   # lets it write its state file to /srv/charts-b
ct sed -i 's|^storage.local.rootdir: .*|storage.local.rootdir: /var/lib/chartroom|' /etc/chartroom/chartroom.yaml
ct curl -fsS -o /dev/null -m 30 http://127.0.0.1:8080/health
ct systemctl stop chartroom 2> /dev/null   # and one in /var/lib/chartroom
check "a state file exists in /var/lib/chartroom before purge" ct test -f /var/lib/chartroom/chartroom-state.json
ct apt-get purge -y -q chartroom > "$WORK/purge.log" 2>&1
check "apt purge chartroom" test $? -eq 0
check "purge removed /etc/chartroom and /etc/default/chartroom" sh -c "
	! nsenter -t $cpid -a test -e /etc/chartroom/chartroom.yaml &&
	! nsenter -t $cpid -a test -e /etc/default/chartroom"
check "purge kept the charts in /var/lib/chartroom, removed the state file" sh -c "
	nsenter -t $cpid -a test -f /var/lib/chartroom/alpha-0.1.0.tgz &&
	! nsenter -t $cpid -a test -e /var/lib/chartroom/chartroom-state.json"
check "purge said why /var/lib/chartroom stays" grep -q 'still holds charts' "$WORK/purge.log"
check "purge left the operator's other storage alone (/srv/charts-b)" \
	ct test -f /srv/charts-b/beta-0.2.0.tgz
check "purge: units disabled, user kept" sh -c "
	! nsenter -t $cpid -a systemctl is-enabled chartroom.socket > /dev/null 2>&1 &&
	nsenter -t $cpid -a id chartroom > /dev/null"
# Without charts left, purge removes the directory.
ct apt-get install -y -q "/srv/test/$debname" > "$WORK/reinstall2.log" 2>&1
ct curl -fsS -o /dev/null -m 30 http://127.0.0.1:8080/health
ct systemctl stop chartroom 2> /dev/null
ct rm -f /var/lib/chartroom/alpha-0.1.0.tgz
ct apt-get purge -y -q chartroom > "$WORK/purge2.log" 2>&1
check "purge with no charts left removes /var/lib/chartroom" ct test ! -e /var/lib/chartroom
lap "purge" "$t"

# --- chartroom publish (issue 8): the timer publishes new versions from a git checkout ---------
# Its own block, on a fresh installation (the purge above removed the package): a bare git
# repository stands in for the charts repository; the timer (a drop-in: every 5 s) runs
# chartroom-publish.service, which pulls the checkout and walks it against the local
# chartroom with basic auth on, as the site runs it.
t=$(now)
ct apt-get install -y -q "/srv/test/$debname" > "$WORK/publish-install.log" 2>&1
check "publish: apt install again" test $? -eq 0 || tail -20 "$WORK/publish-install.log"
check "publish: the timer is installed, not enabled, not running" \
	test "$(ct systemctl is-enabled chartroom-publish.timer)/$(ct systemctl is-active chartroom-publish.timer)" = disabled/inactive
check "publish: /etc/default/chartroom-publish is root's only (0600)" \
	test "$(ct stat -c '%U %a' /etc/default/chartroom-publish)" = "root 600"
ct sh -c 'printf "BASIC_AUTH_USER=publisher\nBASIC_AUTH_PASS=pub-secret\n" >> /etc/default/chartroom'
check "publish: chartroom restarted with basic auth" ct systemctl restart chartroom
publish_interval=5
pubgit() { # SCRIPT: as the chartroom user (git refuses repositories of other users)
	ct runuser -u chartroom -- env HOME=/var/lib/chartroom-publish GIT_AUTHOR_NAME=t \
		GIT_AUTHOR_EMAIL=t@example.invalid GIT_COMMITTER_NAME=t \
		GIT_COMMITTER_EMAIL=t@example.invalid sh -c "$1"
}
pubchart() { # VERSION: commit pubchart VERSION in the work tree, push it to the bare repository
	pubgit "set -e; cd /var/lib/chartroom-publish/work
		mkdir -p charts/pubchart/templates
		printf 'apiVersion: v2\nname: pubchart\nversion: $1\n' > charts/pubchart/Chart.yaml
		printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: pub\n' > charts/pubchart/templates/cm.yaml
		git add -A && git commit -q -m 'pubchart $1' && git push -q origin HEAD:main"
}
ct install -d -o chartroom -g chartroom -m 0750 /var/lib/chartroom-publish /srv/charts.git
check "publish: bare repository, work tree and checkout (git, as chartroom)" pubgit "set -e
	git init -q --bare -b main /srv/charts.git
	git init -q -b main /var/lib/chartroom-publish/work
	git -C /var/lib/chartroom-publish/work remote add origin /srv/charts.git"
pubchart 0.1.0
pubgit "git clone -q -b main /srv/charts.git /var/lib/chartroom-publish/checkout"
ct sh -c "printf '%s\n' CHARTROOM_PUBLISH_URL=http://127.0.0.1:8080 CHARTROOM_PUBLISH_REPOSITORY= \
	CHARTROOM_PUBLISH_CHECKOUT=/var/lib/chartroom-publish/checkout \
	CHARTROOM_PUBLISH_WALK=/var/lib/chartroom-publish/checkout/charts \
	CHARTROOM_PUBLISH_GIT_PULL=yes HELM_REPO_USERNAME=publisher HELM_REPO_PASSWORD=pub-secret \
	> /etc/default/chartroom-publish"
ct mkdir -p /etc/systemd/system/chartroom-publish.timer.d
# (an empty On...Sec= clears every timer of the unit, OnBootSec included: so first; then a
# first run 1 s after the timer starts)
ct sh -c "printf '[Timer]\nOnUnitInactiveSec=\nOnActiveSec=1s\nOnUnitInactiveSec=${publish_interval}s\nRandomizedDelaySec=\nRandomizedDelaySec=1s\n' \
	> /etc/systemd/system/chartroom-publish.timer.d/interval.conf"
ct systemctl daemon-reload
check "publish: systemctl enable --now chartroom-publish.timer" \
	ct systemctl enable --now chartroom-publish.timer
index_has() { # VERSION: index.yaml lists pubchart VERSION
	ct curl -fsS -m 5 -u publisher:pub-secret http://127.0.0.1:8080/index.yaml |
		grep -A20 '^  pubchart:' | grep -q "version: $1\$"
}
check "publish: the first run publishes pubchart 0.1.0" until_ok 30 index_has 0.1.0
pubchart 0.2.0
check "publish: pubchart 0.2.0, committed to the bare repository, in index.yaml within two intervals" \
	until_ok $((2 * publish_interval + 3)) index_has 0.2.0
pulled() {
	local a b
	a=$(pubgit 'git -C /var/lib/chartroom-publish/checkout rev-parse HEAD')
	b=$(pubgit 'git -C /srv/charts.git rev-parse main')
	[ -n "$a" ] && [ "$a" = "$b" ]
}
check "publish: the checkout was pulled (git pull in ExecStartPre)" pulled
sleep $((publish_interval + 3))   # a run after the upload: nothing new
ct systemctl status --no-pager -n 20 chartroom-publish > "$WORK/publish-status.txt" 2>&1
sed 's/^/    /' "$WORK/publish-status.txt" | tail -8
check "publish: systemctl status chartroom-publish shows the summary line" \
	grep -Eq '[0-9]+ charts found, [0-9]+ already present, [0-9]+ uploaded, 0 errors' "$WORK/publish-status.txt"
check "publish: the journal has the upload of 0.2.0" sh -c "
	nsenter -t $cpid -a journalctl -q -u chartroom-publish --no-pager | grep -q 'uploaded pubchart-0.2.0.tgz'"
check "publish: the runs succeed (ran, exit status 0), as user chartroom" test \
	"$(unit chartroom-publish Result)/$(unit chartroom-publish ExecMainStatus)/$(unit chartroom-publish User)/$(unit chartroom-publish ExecMainStartTimestampMonotonic | grep -c '^[1-9]')" \
	= success/0/chartroom/1
check "publish: each version stored once" \
	test "$(ct sh -c 'ls /var/lib/chartroom/pubchart-*.tgz' | wc -l)" = 2
ct systemctl disable --now chartroom-publish.timer > /dev/null 2>&1
lap "publish timer" "$t"

summary
