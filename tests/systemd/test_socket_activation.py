"""Socket activation through systemd-socket-activate: chartroom serves on the sockets it is
passed (TCP over IPv4 and IPv6, Unix stream sockets), binds nothing itself, and refuses
inherited fds that are not listening stream sockets."""

from __future__ import annotations

import os
import socket
import time

import pytest
import requests

from conftest import (
    free_port,
    listening_sockets,
    make_chart,
    seed,
    unix_get,
    UnixHTTPConnection,
    write_config,
)


def activate(procs, chartroom_bin, tmp_path, listen: list[str], names: list[str], notify,
             extra_env: dict[str, str] | None = None):
    """Runs chartroom under systemd-socket-activate with one -l per entry of ``listen``. The
    configured --port is a free port that must stay unbound."""
    storage = tmp_path / "storage"
    seed(storage, [("alpha", "1.0.0"), ("beta", "0.1.0")])
    config = write_config(tmp_path / "chartroom.yaml", storage)
    unused_port = free_port()
    argv = ["systemd-socket-activate"]
    for addr in listen:
        argv += ["-l", addr]
    argv += [f"--fdname={':'.join(names)}", "-E", "NOTIFY_SOCKET"]
    env = {"NOTIFY_SOCKET": notify.path}
    for k, v in (extra_env or {}).items():
        argv += ["-E", k]
        env[k] = v
    argv += [str(chartroom_bin), "--config", str(config), "--port", str(unused_port)]
    proc = procs.start(argv, env, name="activate")
    return proc, unused_port


def wait_listening(proc, count: int, timeout: float = 5.0) -> None:
    """systemd-socket-activate prints one "Listening on" line per socket before it waits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.log().count("Listening on") >= count:
            return
        assert proc.running(), proc.log()
        time.sleep(0.02)
    raise AssertionError(proc.log())


def test_single_tcp_socket(procs, chartroom_bin, tmp_path, notify):
    port = free_port()
    proc, unused = activate(procs, chartroom_bin, tmp_path, [f"127.0.0.1:{port}"], ["web"], notify)
    wait_listening(proc, 1)
    # The first connection makes systemd-socket-activate exec chartroom in its own process.
    r = requests.get(f"http://127.0.0.1:{port}/index.yaml", timeout=15)
    assert r.status_code == 200, proc.log()
    assert "alpha" in r.text and "beta" in r.text
    _, ready = notify.wait_ready()
    assert ready.pid == proc.pid, "READY=1 must come from the main PID (NotifyAccess=main)"
    assert listening_sockets(proc.pid) == [f"tcp:127.0.0.1:{port}"]
    # The configured port stays free.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", unused)) != 0
    assert "web" in proc.log(), "the socket's LISTEN_FDNAMES name is logged"
    assert proc.stop() == 0


def test_several_sockets(procs, chartroom_bin, tmp_path, notify, short_tmp):
    p4, p6 = free_port(), free_port()
    upath = str(short_tmp / "http.sock")
    listen = [
        f"127.0.0.1:{p4}",
        # An AF_INET6 socket on the IPv4 loopback address (v4-mapped): exercises the IPv6 path
        # while binding nothing but 127.0.0.1.
        f"[::ffff:127.0.0.1]:{p6}",
        upath,
    ]
    proc, unused = activate(procs, chartroom_bin, tmp_path, listen, ["v4", "v6", "unix"], notify)
    wait_listening(proc, 3)
    status, body = unix_get(upath, "/index.yaml")  # activates through the Unix socket
    assert status == 200 and b"alpha" in body, proc.log()
    notify.wait_ready()
    for port in (p4, p6):
        r = requests.get(f"http://127.0.0.1:{port}/api/charts/alpha", timeout=10)
        assert r.status_code == 200, (port, r.text)
    assert listening_sockets(proc.pid) == sorted(
        [f"tcp:127.0.0.1:{p4}", f"tcp6:[::ffff:127.0.0.1]:{p6}", f"unix:{upath}"]
    )
    log = proc.log()
    assert f"tcp:127.0.0.1:{p4}" in log and f"unix:{upath}" in log
    assert proc.stop() == 0


def test_unix_socket_upload(procs, chartroom_bin, tmp_path, notify, short_tmp):
    upath = str(short_tmp / "only.sock")
    proc, unused = activate(procs, chartroom_bin, tmp_path, [upath], ["api"], notify)
    wait_listening(proc, 1)
    body = make_chart("gamma", "2.0.0")
    c = UnixHTTPConnection(upath)
    c.request("POST", "/api/charts", body=body, headers={"Content-Type": "application/gzip"})
    r = c.getresponse()
    assert r.status == 201, (r.status, r.read(), proc.log())
    r.read()
    c.close()
    assert (tmp_path / "storage" / "gamma-2.0.0.tgz").read_bytes() == body
    status, index = unix_get(upath, "/index.yaml")
    assert status == 200 and b"gamma" in index
    assert listening_sockets(proc.pid) == [f"unix:{upath}"]
    assert proc.stop() == 0


def start_with_fd(procs, chartroom_bin, tmp_path, fd: int, listen_pid: str | None = "$$"):
    """Starts chartroom with ``fd`` as its fd 3 and LISTEN_FDS=1, LISTEN_FDNAMES=x and
    LISTEN_PID = its own PID unless told otherwise (None: no LISTEN_PID), the way the service
    manager passes sockets. (The fd goes in as stdin; the shell moves it to 3 and execs,
    keeping its PID.)"""
    storage = tmp_path / "storage"
    config = write_config(tmp_path / "chartroom.yaml", storage)
    port = free_port()
    pid_var = "" if listen_pid is None else f"LISTEN_PID={listen_pid} "
    script = (f'exec 3<&0 0</dev/null; unset LISTEN_PID; {pid_var}LISTEN_FDS=1 LISTEN_FDNAMES=x '
              'exec "$0" "$@"')
    argv = ["sh", "-c", script, str(chartroom_bin), "--config", str(config), "--port", str(port)]
    return procs.start(argv, name="fd", stdin=fd), port


def expect_startup_error(proc, words: list[str]) -> None:
    rc = proc.wait(10)
    log = proc.log()
    assert rc != 0, log
    assert "inherited fd 3 (x)" in log, log
    for w in words:
        assert w in log, log


def test_refuses_datagram_socket(procs, chartroom_bin, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        proc, _ = start_with_fd(procs, chartroom_bin, tmp_path, udp.fileno())
        expect_startup_error(proc, ["not a stream socket"])


def test_refuses_socket_that_does_not_listen(procs, chartroom_bin, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))  # bound, never listen()ed
        proc, _ = start_with_fd(procs, chartroom_bin, tmp_path, s.fileno())
        expect_startup_error(proc, ["not listening"])


def test_refuses_non_socket(procs, chartroom_bin, tmp_path):
    f = tmp_path / "plain"
    f.write_text("x")
    fd = os.open(f, os.O_RDONLY)
    try:
        proc, _ = start_with_fd(procs, chartroom_bin, tmp_path, fd)
        expect_startup_error(proc, ["not a socket"])
    finally:
        os.close(fd)


def test_refuses_seqpacket_socket(procs, chartroom_bin, tmp_path, short_tmp):
    # A listening Unix socket of the wrong type (what ListenSequentialPacket= would pass).
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
        s.bind(str(short_tmp / "seq.sock"))
        s.listen()
        proc, _ = start_with_fd(procs, chartroom_bin, tmp_path, s.fileno())
        expect_startup_error(proc, ["not a stream socket"])


@pytest.mark.parametrize("listen_pid", ["1", None], ids=["other-pid", "no-pid"])
def test_ignores_fds_meant_for_another_process(procs, chartroom_bin, tmp_path, listen_pid):
    # LISTEN_PID names another process, or is missing: the fds are not ours (sd_listen_fds
    # semantics), so chartroom binds its configured address instead.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        proc, port = start_with_fd(procs, chartroom_bin, tmp_path, s.fileno(),
                                   listen_pid=listen_pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok:
                    break
            except requests.RequestException:
                time.sleep(0.05)
        assert f"tcp:127.0.0.1:{port}" in listening_sockets(proc.pid), proc.log()
        assert proc.stop() == 0
