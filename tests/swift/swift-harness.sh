#!/usr/bin/env bash
# Harness for a real one-node OpenStack Swift (tempauth, v1 auth) on 127.0.0.1.
#
#   swift-harness.sh install                 apt-install Swift + memcached (idempotent)
#   swift-harness.sh start DIR [PORT]        build configs/rings under DIR, start everything,
#                                            print `export ST_AUTH=... ST_USER=... ST_KEY=...`
#   swift-harness.sh stop DIR                stop every process recorded in DIR/run/*.pid
#   swift-harness.sh stop-server DIR NAME    stop one of: proxy account container object memcached
#   swift-harness.sh start-server DIR NAME   (re)start one of them, waiting until it answers
#   swift-harness.sh status DIR              show recorded PIDs and whether they are alive
#
# PORT is the proxy port (default $SWIFT_PORT or 18480). The other ports default to
# PORT+1 (object), PORT+2 (container), PORT+3 (account), PORT+4 (memcached) and can be set with
# SWIFT_OBJECT_PORT, SWIFT_CONTAINER_PORT, SWIFT_ACCOUNT_PORT, SWIFT_MEMCACHED_PORT.
# SWIFT_TOKEN_LIFE (seconds, default 86400) sets tempauth's token_life.
# SWIFT_STORAGE_URL_SCHEME (http or https; unset: as requested) sets tempauth's storage_url_scheme,
# the scheme of the X-Storage-Url a login answers with (https for a TLS proxy in front of Swift;
# SWIFT_STORAGE_URL stays the plain http URL of the proxy).
# SWIFT_START_TIMEOUT (seconds, default 60) bounds every wait in `start`.
#
# `start` writes nothing outside DIR (not /etc/swift): every server reads its config from DIR/etc
# and is launched through DIR/etc/swift_helper.py (a copy of tests/swift/swift_helper.py), which
# points Swift's hard-coded /etc/swift/swift.conf at DIR/etc/swift.conf (see README.md).
# All servers are children of a small supervisor (PID in DIR/run/supervisor.pid) that reaps them.
#
# Stdout of `start` carries only the export lines; progress goes to stderr.
set -euo pipefail

PACKAGES=(swift swift-proxy swift-account swift-container swift-object python3-swiftclient memcached)
SWIFT_USER=test:tester
SWIFT_KEY=testing

log() { printf 'swift-harness: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --------------------------------------------------------------------------------------------
# install
# --------------------------------------------------------------------------------------------
missing_packages() {
    local p status
    for p in "${PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$status" = installed ] || printf '%s\n' "$p"
    done
}

cmd_install() {
    local missing
    missing=$(missing_packages)
    if [ -z "$missing" ]; then
        log "all packages already installed"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "install needs root (apt-get)"
    log "installing: $(echo $missing)"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package postinst scripts from starting any service (system-wide memcached on
    # 0.0.0.0:11211 or swift daemons reading /etc/swift). Only remove the policy file if we made it.
    MADE_POLICY=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        MADE_POLICY=1
        trap 'if [ "$MADE_POLICY" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
    fi
    # A fresh machine may have empty or stale package lists.
    if ! apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
            -o Dpkg::Options::=--force-confold $missing </dev/null >&2; then
        log "apt-get install failed; running apt-get update and retrying"
        apt-get update -q </dev/null >&2
        apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef \
            -o Dpkg::Options::=--force-confold $missing </dev/null >&2
    fi
    if [ "$MADE_POLICY" = 1 ]; then rm -f /usr/sbin/policy-rc.d; MADE_POLICY=0; fi
    missing=$(missing_packages)
    [ -z "$missing" ] || die "still missing after install: $(echo $missing)"
    log "install done"
}

# --------------------------------------------------------------------------------------------
# common
# --------------------------------------------------------------------------------------------
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY=${SWIFT_PYTHON:-/usr/bin/python3}   # Debian's python3: the `swift` package lives there
START_TIMEOUT=${SWIFT_START_TIMEOUT:-60}
STOP_TIMEOUT=${SWIFT_STOP_TIMEOUT:-10}
ALL_NAMES=(memcached account container object proxy)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

absdir() {
    [ -n "${1:-}" ] || die "missing DIR"
    mkdir -p "$1"
    (cd "$1" && pwd)
}

valid_name() {
    local n
    for n in "${ALL_NAMES[@]}"; do [ "$n" = "$1" ] && return 0; done
    die "unknown server '$1' (one of: ${ALL_NAMES[*]})"
}

# alive PID: the process exists and is not a zombie
alive() {
    local pid=$1 state
    [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# ours DIR NAME PID: the live process PID is the one this DIR started (guards against PID reuse)
ours() {
    local dir=$1 name=$2 pid=$3 cmd
    cmd=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null) || return 1
    case $name in
        memcached) [[ $cmd == *memcached* && $cmd == *"-p $(port_of "$dir" memcached) "* ]] ;;
        *) [[ $cmd == *"$dir/etc/"* ]] ;;
    esac
}

port_of() {
    local dir=$1 name=$2
    # shellcheck disable=SC1091
    ( . "$dir/etc/ports.env"
      case $name in
          proxy) echo "$PROXY_PORT" ;; object) echo "$OBJECT_PORT" ;;
          container) echo "$CONTAINER_PORT" ;; account) echo "$ACCOUNT_PORT" ;;
          memcached) echo "$MEMCACHED_PORT" ;;
      esac )
}

# kill_wait DIR NAME: TERM the recorded PID, wait, KILL after STOP_TIMEOUT, wait; drop the pid file
kill_wait() {
    local dir=$1 name=$2 pidfile="$1/run/$2.pid" pid i limit
    [ -f "$pidfile" ] || return 0
    pid=$(tr -dc '0-9' < "$pidfile")
    if [ -z "$pid" ] || ! alive "$pid"; then
        rm -f "$pidfile"; return 0
    fi
    if ! ours "$dir" "$name" "$pid"; then
        log "warning: pid $pid in $pidfile is not our $name any more; not killing it"
        rm -f "$pidfile"; return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    limit=$(( STOP_TIMEOUT * 10 ))
    for ((i = 0; i < limit; i++)); do
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        log "$name (pid $pid) ignored TERM for ${STOP_TIMEOUT}s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        alive "$pid" && die "$name (pid $pid) still alive after KILL"
    fi
    rm -f "$pidfile"
    log "stopped $name (pid $pid)"
}

supervisor_alive() {
    local dir=$1 pid
    [ -f "$dir/run/supervisor.pid" ] || return 1
    pid=$(tr -dc '0-9' < "$dir/run/supervisor.pid")
    [ -n "$pid" ] && alive "$pid" && ours "$dir" supervisor "$pid"
}

# wait_ready DIR NAME: block until server NAME answers
wait_ready() {
    local dir=$1 name=$2 port pid
    port=$(port_of "$dir" "$name")
    pid=$(tr -dc '0-9' < "$dir/run/$name.pid" 2>/dev/null || true)
    case $name in
        memcached) "$PY" "$dir/etc/swift_helper.py" wait-tcp 127.0.0.1 "$port" "$START_TIMEOUT" $pid ;;
        *) "$PY" "$dir/etc/swift_helper.py" wait-http "http://127.0.0.1:$port/healthcheck" "$START_TIMEOUT" $pid ;;
    esac || { dump_log "$dir" "$name"; return 1; }
}

dump_log() {
    local f="$1/log/$2.log"
    [ -f "$f" ] || return 0
    log "---- last lines of $f ----"
    tail -n 30 "$f" >&2 || true
}

spawn() {
    local dir=$1 name=$2 pid
    pid=$("$PY" "$dir/etc/swift_helper.py" ctl "$dir" start "$name") || return 1
    log "started $name (pid $pid)"
}

# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
write_configs() {
    local dir=$1 etc="$1/etc" user
    user=$(id -un)
    cp "$HERE/swift_helper.py" "$etc/swift_helper.py"

    cat > "$etc/ports.env" <<EOF
PROXY_PORT=$PROXY_PORT
OBJECT_PORT=$OBJECT_PORT
CONTAINER_PORT=$CONTAINER_PORT
ACCOUNT_PORT=$ACCOUNT_PORT
MEMCACHED_PORT=$MEMCACHED_PORT
TOKEN_LIFE=$TOKEN_LIFE
EOF

    cat > "$etc/swift.conf" <<EOF
[swift-hash]
swift_hash_path_prefix = chartroom-test-prefix
swift_hash_path_suffix = chartroom-test-suffix

[storage-policy:0]
name = Policy-0
default = yes

[swift-constraints]
EOF

    local kind port
    for kind in account container object; do
        case $kind in
            account) port=$ACCOUNT_PORT ;; container) port=$CONTAINER_PORT ;; object) port=$OBJECT_PORT ;;
        esac
        cat > "$etc/$kind-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $port
# workers = 0: one process, no fork, so the recorded PID is the whole server
workers = 0
user = $user
swift_dir = $etc
devices = $dir/node
mount_check = false
disable_fallocate = true
fallocate_reserve = 0
recon_cache_path = $dir/cache
log_name = $kind-server
log_level = INFO

[pipeline:main]
pipeline = healthcheck $kind-server

[app:$kind-server]
use = egg:swift#$kind

[filter:healthcheck]
use = egg:swift#healthcheck
EOF
    done

    cat > "$etc/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY_PORT
workers = 0
user = $user
swift_dir = $etc
log_name = proxy-server
log_level = INFO

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk tempurl tempauth copy slo dlo versioned_writes proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = false

[filter:tempauth]
use = egg:swift#tempauth
reseller_prefix = AUTH
token_life = $TOKEN_LIFE
storage_url_scheme = ${URL_SCHEME:-default}
# user_<account>_<user> = <key> [group] ...
user_test_tester = testing .admin
# same account, no .admin: logs in, but gets 403 on containers
user_test_reader = reading
user_admin_admin = admin .admin .reseller_admin

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:bulk]
use = egg:swift#bulk

[filter:tempurl]
use = egg:swift#tempurl

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo

[filter:versioned_writes]
use = egg:swift#versioned_writes
EOF

    local mc_user=()
    if [ "$(id -u)" = 0 ]; then
        if id memcache >/dev/null 2>&1; then mc_user=(-u memcache); else mc_user=(-u nobody); fi
    fi
    local mc_argv
    mc_argv=$(printf '"%s", ' /usr/bin/memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -c 1024 "${mc_user[@]}")
    {
        printf '{\n'
        printf '  "memcached": {"argv": [%s], "log": "%s"},\n' "${mc_argv%, }" "$dir/log/memcached.log"
        for kind in account container object proxy; do
            printf '  "%s": {"argv": ["%s", "%s", "serve", "%s", "%s"], "log": "%s"}' \
                "$kind" "$PY" "$etc/swift_helper.py" "$kind" "$etc/$kind-server.conf" "$dir/log/$kind.log"
            [ "$kind" = proxy ] && printf '\n' || printf ',\n'
        done
        printf '}\n'
    } > "$etc/servers.json"
}

# --------------------------------------------------------------------------------------------
# start / stop
# --------------------------------------------------------------------------------------------
cmd_start() {
    local t0 dir
    t0=$(now)
    [ -n "${1:-}" ] || die "usage: start DIR [PORT]"
    dir=$(absdir "$1")
    case $dir in *[\"\\\ ]*|*$'\n'*) die "DIR must not contain quotes, backslashes or spaces: $dir" ;; esac
    # the supervisor's control socket DIR/run/ctl.sock must fit in sun_path (108 bytes)
    [ ${#dir} -le 90 ] || die "DIR path too long for a unix socket (max 90 chars): $dir"
    [ -z "$(missing_packages)" ] || die "packages missing: $(echo $(missing_packages)); run: $0 install"

    PROXY_PORT=${2:-${SWIFT_PORT:-18480}}
    OBJECT_PORT=${SWIFT_OBJECT_PORT:-$((PROXY_PORT + 1))}
    CONTAINER_PORT=${SWIFT_CONTAINER_PORT:-$((PROXY_PORT + 2))}
    ACCOUNT_PORT=${SWIFT_ACCOUNT_PORT:-$((PROXY_PORT + 3))}
    MEMCACHED_PORT=${SWIFT_MEMCACHED_PORT:-$((PROXY_PORT + 4))}
    TOKEN_LIFE=${SWIFT_TOKEN_LIFE:-86400}
    [[ $TOKEN_LIFE =~ ^[0-9]+$ ]] && [ "$TOKEN_LIFE" -gt 0 ] || die "SWIFT_TOKEN_LIFE must be a positive integer"
    URL_SCHEME=${SWIFT_STORAGE_URL_SCHEME:-}
    [[ $URL_SCHEME =~ ^(|http|https)$ ]] || die "SWIFT_STORAGE_URL_SCHEME must be http or https"

    if supervisor_alive "$dir"; then die "a harness is already running in $dir; run: $0 stop $dir"; fi
    local name p pid
    for name in "${ALL_NAMES[@]}"; do
        [ -f "$dir/run/$name.pid" ] && [ -f "$dir/etc/ports.env" ] || continue
        pid=$(tr -dc '0-9' < "$dir/run/$name.pid")
        if [ -n "$pid" ] && alive "$pid" && ours "$dir" "$name" "$pid"; then
            die "$name (pid $pid) from an earlier start still runs; run: $0 stop $dir"
        fi
    done
    for name in proxy object container account memcached; do
        case $name in
            proxy) p=$PROXY_PORT ;; object) p=$OBJECT_PORT ;; container) p=$CONTAINER_PORT ;;
            account) p=$ACCOUNT_PORT ;; memcached) p=$MEMCACHED_PORT ;;
        esac
        "$PY" "$HERE/swift_helper.py" port-free 127.0.0.1 "$p" \
            || die "port $p ($name) on 127.0.0.1 is already in use; pick another PORT / SWIFT_*_PORT"
    done

    mkdir -p "$dir/etc" "$dir/node/d1" "$dir/log" "$dir/run" "$dir/cache"
    rm -f "$dir"/run/*.pid "$dir"/run/*.exit "$dir/run/ctl.sock"
    write_configs "$dir"
    "$PY" "$dir/etc/swift_helper.py" rings "$dir/etc" "$ACCOUNT_PORT" "$CONTAINER_PORT" "$OBJECT_PORT" d1
    log "configs and rings written under $dir ($(elapsed "$t0") s)"

    # The supervisor is the parent of every server (see swift_helper.py cmd_supervise).
    "$PY" "$dir/etc/swift_helper.py" supervise "$dir" </dev/null >>"$dir/log/supervisor.log" 2>&1 &
    echo $! > "$dir/run/supervisor.pid"
    local i
    for ((i = 0; i < 100; i++)); do
        "$PY" "$dir/etc/swift_helper.py" ctl "$dir" ping >/dev/null 2>&1 && break
        sleep 0.05
    done
    "$PY" "$dir/etc/swift_helper.py" ctl "$dir" ping >/dev/null || { dump_log "$dir" supervisor; cmd_stop "$dir"; die "supervisor did not come up"; }

    for name in memcached account container object proxy; do
        spawn "$dir" "$name" || { cmd_stop "$dir"; die "could not start $name"; }
    done
    for name in memcached account container object proxy; do
        wait_ready "$dir" "$name" || { cmd_stop "$dir"; die "$name did not become ready"; }
    done
    log "all servers answer ($(elapsed "$t0") s)"

    local auth="http://127.0.0.1:$PROXY_PORT/auth/v1.0" login url token
    login=$("$PY" "$dir/etc/swift_helper.py" login "$auth" "$SWIFT_USER" "$SWIFT_KEY" "$START_TIMEOUT") \
        || { dump_log "$dir" proxy; cmd_stop "$dir"; die "tempauth login failed"; }
    url=${login% *}; token=${login#* }
    # With SWIFT_STORAGE_URL_SCHEME the login's URL may not be reachable directly: use the proxy's.
    [ -z "$URL_SCHEME" ] || url="http://127.0.0.1:$PROXY_PORT/${url#*://*/}"
    "$PY" "$dir/etc/swift_helper.py" put-container "$url" "$token" charts \
        || { dump_log "$dir" proxy; cmd_stop "$dir"; die "could not create container charts"; }

    cat > "$dir/env.sh" <<EOF
export ST_AUTH=$auth
export ST_USER=$SWIFT_USER
export ST_KEY=$SWIFT_KEY
export SWIFT_STORAGE_URL=$url
export SWIFT_CONTAINER=charts
export SWIFT_HARNESS_DIR=$dir
EOF
    log "ready in $(elapsed "$t0") s: proxy 127.0.0.1:$PROXY_PORT, object $OBJECT_PORT, container $CONTAINER_PORT, account $ACCOUNT_PORT, memcached $MEMCACHED_PORT, token_life ${TOKEN_LIFE}s"
    cat "$dir/env.sh"
}

cmd_stop() {
    [ -n "${1:-}" ] || die "usage: stop DIR"
    if [ ! -d "$1" ]; then log "no such directory: $1 (nothing to stop)"; return 0; fi
    local dir name
    dir=$(cd "$1" && pwd)
    [ -d "$dir/run" ] || return 0
    for name in proxy object container account memcached; do
        kill_wait "$dir" "$name"
    done
    kill_wait "$dir" supervisor
    rm -f "$dir"/run/*.exit "$dir/run/ctl.sock"
}

cmd_stop_server() {
    [ $# -eq 2 ] || die "usage: stop-server DIR NAME"
    valid_name "$2"
    local dir
    dir=$(cd "$1" && pwd) || die "no such directory: $1"
    [ -f "$dir/run/$2.pid" ] || log "$2 is not running in $dir"
    kill_wait "$dir" "$2"
}

cmd_start_server() {
    [ $# -eq 2 ] || die "usage: start-server DIR NAME"
    valid_name "$2"
    local dir t0 pid
    t0=$(now)
    dir=$(cd "$1" && pwd) || die "no such directory: $1"
    supervisor_alive "$dir" || die "no harness running in $dir (use: $0 start $dir)"
    if [ -f "$dir/run/$2.pid" ]; then
        pid=$(tr -dc '0-9' < "$dir/run/$2.pid")
        if [ -n "$pid" ] && alive "$pid"; then die "$2 is already running (pid $pid)"; fi
    fi
    spawn "$dir" "$2" || die "could not start $2"
    wait_ready "$dir" "$2" || die "$2 did not become ready"
    log "$2 ready in $(elapsed "$t0") s"
}

cmd_status() {
    [ -n "${1:-}" ] || die "usage: status DIR"
    local dir f name pid rc=0
    dir=$(cd "$1" && pwd) || die "no such directory: $1"
    for name in supervisor "${ALL_NAMES[@]}"; do
        f="$dir/run/$name.pid"
        if [ -f "$f" ]; then
            pid=$(tr -dc '0-9' < "$f")
            if alive "$pid"; then echo "$name $pid running"; else echo "$name $pid dead"; rc=1; fi
        else
            echo "$name - stopped"
        fi
    done
    return $rc
}

case "${1:-}" in
    install) cmd_install ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    stop-server) shift; cmd_stop_server "$@" ;;
    start-server) shift; cmd_start_server "$@" ;;
    status) shift; cmd_status "$@" ;;
    *) echo "usage: $0 install|start DIR [PORT]|stop DIR|stop-server DIR NAME|start-server DIR NAME|status DIR" >&2; exit 2 ;;
esac
