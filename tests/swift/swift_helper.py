#!/usr/bin/python3
"""Helper for swift-harness.sh. Runs under Debian's /usr/bin/python3 (where the `swift` package
lives); uses only the standard library plus Swift itself.

Subcommands:
  serve NAME CONF          run one Swift WSGI server (account|container|object|proxy) in the
                           foreground, reading swift.conf from CONF's directory, logging to stderr
  rings ETC A_PORT C_PORT O_PORT DEVICE
                           write account/container/object .ring.gz into ETC (1 replica, 1 device)
  supervise DIR            run the per-DIR supervisor (child subreaper; spawns and reaps servers)
  ctl DIR start NAME       ask the supervisor of DIR to spawn server NAME; prints its PID
  ctl DIR ping             check that the supervisor answers
  wait-http URL TIMEOUT [PID]
                           poll URL until it answers 200 (fail early if process PID exits)
  wait-tcp HOST PORT TIMEOUT [PID]
  port-free HOST PORT      exit 0 if nothing listens on HOST:PORT
  login AUTH_URL USER KEY TIMEOUT
                           retry a v1 login until it works; prints "STORAGE_URL TOKEN"
  put-container STORAGE_URL TOKEN NAME
"""
import json
import os
import selectors
import signal
import socket
import sys
import time
import urllib.error
import urllib.request


# ---------------------------------------------------------------------------------------------
# serve: run a Swift server without /etc/swift
# ---------------------------------------------------------------------------------------------
def cmd_serve(name, conf):
    conf = os.path.abspath(conf)
    import logging

    import swift.common.utils as utils

    # Swift reads swift.conf from the module-level constant SWIFT_CONF_FILE
    # ('/etc/swift/swift.conf'); swift.common.storage_policy and swift.common.constraints read it
    # at import time. Point it at our file before anything imports those modules.
    for mod in ("swift.common.storage_policy", "swift.common.constraints"):
        if mod in sys.modules:
            sys.exit("swift_helper: %s imported too early" % mod)
    utils.SWIFT_CONF_FILE = os.path.join(os.path.dirname(conf), "swift.conf")

    # No syslog: without /dev/log Swift falls back to UDP syslog on localhost:514. All logging
    # goes to the console handler (stderr, redirected to DIR/log/NAME.log by the supervisor).
    class _NoSyslog(logging.NullHandler):
        def __init__(self, *args, **kwargs):
            logging.NullHandler.__init__(self)

    utils.ThreadSafeSysLogHandler = _NoSyslog

    from swift.common.wsgi import run_wsgi

    kwargs = {"verbose": True}
    if name == "object":
        from swift.obj import server as obj_server

        kwargs["global_conf_callback"] = obj_server.global_conf_callback
    section = {"account": "account-server", "container": "container-server",
               "object": "object-server", "proxy": "proxy-server"}[name]
    sys.exit(run_wsgi(conf, section, **kwargs))


# ---------------------------------------------------------------------------------------------
# rings
# ---------------------------------------------------------------------------------------------
def cmd_rings(etc, a_port, c_port, o_port, device):
    from swift.common.ring import RingBuilder

    for kind, port in (("account", a_port), ("container", c_port), ("object", o_port)):
        builder = RingBuilder(8, 1, 1)  # part power 8, 1 replica, min_part_hours 1
        builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                         "device": device, "weight": 1.0, "meta": ""})
        builder.rebalance(seed=1)
        builder.save(os.path.join(etc, kind + ".builder"))
        builder.get_ring().save(os.path.join(etc, kind + ".ring.gz"))


# ---------------------------------------------------------------------------------------------
# supervisor
# ---------------------------------------------------------------------------------------------
PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:  # not fatal: direct children are reaped anyway
        pass


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def cmd_supervise(base):
    """Parent of every server of one harness DIR.

    This machine's PID 1 does not reap orphans, so a server started straight from the (short-lived)
    harness script would stay a zombie after being stopped. The supervisor stays alive, spawns the
    servers, reaps them when they exit and records exit statuses. It never restarts anything.
    """
    base = os.path.abspath(base)
    run = os.path.join(base, "run")
    try:
        os.setsid()  # keep terminal/pytest process-group signals away from the servers
    except OSError:
        pass
    with open(os.path.join(base, "etc", "servers.json")) as f:
        servers = json.load(f)
    _set_subreaper()

    children = {}  # pid -> name
    stopping = [False]

    def on_term(signum, frame):
        stopping[0] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    env = dict(os.environ)
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(var, None)

    def spawn(name):
        spec = servers[name]
        pidfile = os.path.join(run, name + ".pid")
        # A server just stopped by `stop-server` may still be an unreaped zombie in `children`
        # (the harness script counts a zombie as gone): reap first, or a quick restart after a
        # stop would be refused as "already running".
        reap()
        for pid, n in children.items():
            if n == name:
                return "error %s already running as pid %d" % (name, pid)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, spec["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        try:
            pid = os.posix_spawn(spec["argv"][0], spec["argv"], env, file_actions=actions,
                                 setsid=True)
        except OSError as e:
            return "error spawning %s: %s" % (name, e)
        children[pid] = name
        _write_atomic(pidfile, "%d\n" % pid)
        try:
            os.unlink(os.path.join(run, name + ".exit"))
        except FileNotFoundError:
            pass
        return "ok %d" % pid

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            name = children.pop(pid, None)
            if name is not None:
                code = os.waitstatus_to_exitcode(status)
                _write_atomic(os.path.join(run, name + ".exit"), "%d %d\n" % (pid, code))

    sock_path = os.path.join(run, "ctl.sock")
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(8)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)

    while not stopping[0]:
        try:
            events = sel.select(timeout=0.1)
        except InterruptedError:
            events = []
        for _key, _mask in events:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = conn.recv(256)
                        if not chunk:
                            break
                        data += chunk
                    words = data.decode().split()
                    if words == ["ping"]:
                        reply = "ok %d" % os.getpid()
                    elif len(words) == 2 and words[0] == "start" and words[1] in servers:
                        reply = spawn(words[1])
                    else:
                        reply = "error bad command %r" % data
                    conn.sendall(reply.encode() + b"\n")
                except OSError:
                    pass
        reap()

    # Asked to stop: end the children we still have (normally none: `stop` ends them first).
    listener.close()
    try:
        os.unlink(sock_path)
    except FileNotFoundError:
        pass
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while children and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    for pid in list(children):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while children:
        reap()
        time.sleep(0.05)
    reap()


def cmd_ctl(base, *words):
    sock_path = os.path.join(os.path.abspath(base), "run", "ctl.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sock_path)
        s.sendall((" ".join(words) + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            reply += chunk
    except OSError as e:
        sys.exit("swift_helper: supervisor of %s unreachable: %s" % (base, e))
    finally:
        s.close()
    reply = reply.decode().strip()
    if not reply.startswith("ok "):
        sys.exit("swift_helper: %s" % reply)
    print(reply.split()[1])


# ---------------------------------------------------------------------------------------------
# HTTP / TCP helpers
# ---------------------------------------------------------------------------------------------
class _NoProxy(urllib.request.ProxyHandler):
    def __init__(self):
        urllib.request.ProxyHandler.__init__(self, {})


_opener = urllib.request.build_opener(_NoProxy())


def _request(method, url, headers=None, timeout=5):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _pid_gone(pid):
    """True once process pid has exited (gone or a zombie)."""
    if not pid:
        return False
    try:
        with open("/proc/%d/stat" % int(pid)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def cmd_wait_http(url, timeout, pid=None):
    deadline = time.monotonic() + float(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            status, _h, body = _request("GET", url, timeout=2)
            if status == 200:
                return
            last = "HTTP %d %r" % (status, body[:200])
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        if _pid_gone(pid):
            sys.exit("swift_helper: process %s exited before %s answered" % (pid, url))
        time.sleep(0.1)
    sys.exit("swift_helper: %s not ready after %ss (%s)" % (url, timeout, last))


def cmd_wait_tcp(host, port, timeout, pid=None):
    deadline = time.monotonic() + float(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError as e:
            last = e
        if _pid_gone(pid):
            sys.exit("swift_helper: process %s exited before %s:%s answered" % (pid, host, port))
        time.sleep(0.05)
    sys.exit("swift_helper: %s:%s not accepting connections after %ss (%s)"
             % (host, port, timeout, last))


def cmd_port_free(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect((host, int(port)))
    except OSError:
        sys.exit(0)  # nothing answers there
    finally:
        s.close()
    sys.exit(1)


def cmd_login(auth_url, user, key, timeout):
    deadline = time.monotonic() + float(timeout)
    last = None
    while time.monotonic() < deadline:
        try:
            status, headers, body = _request(
                "GET", auth_url, {"X-Auth-User": user, "X-Auth-Key": key})
            h = {k.lower(): v for k, v in headers.items()}
            if status // 100 == 2 and "x-storage-url" in h and "x-auth-token" in h:
                print(h["x-storage-url"], h["x-auth-token"])
                return
            last = "HTTP %d %r" % (status, body[:200])
        except (OSError, urllib.error.URLError) as e:
            last = str(e)
        time.sleep(0.2)
    sys.exit("swift_helper: login to %s failed for %ss (%s)" % (auth_url, timeout, last))


def cmd_put_container(storage_url, token, name):
    status, _h, body = _request("PUT", storage_url + "/" + name, {"X-Auth-Token": token})
    if status not in (201, 202):
        sys.exit("swift_helper: PUT container %s -> HTTP %d %r" % (name, status, body[:200]))


COMMANDS = {
    "serve": cmd_serve,
    "rings": cmd_rings,
    "supervise": cmd_supervise,
    "ctl": cmd_ctl,
    "wait-http": cmd_wait_http,
    "wait-tcp": cmd_wait_tcp,
    "port-free": cmd_port_free,
    "login": cmd_login,
    "put-container": cmd_put_container,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](*sys.argv[2:])
