"""Fixtures for the systemd behaviour tests (see README.md in this directory).

Everything listens on 127.0.0.1 or on Unix sockets in a private temporary directory. Every
process a test starts is registered with the ``procs`` fixture, which stops it by its PID
(SIGTERM, then SIGKILL) and waits for it at teardown: PID 1 on the test machines does not reap
orphans.
"""

from __future__ import annotations

import http.client
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 15.0


def find_binary() -> Path:
    env = os.environ.get("CHARTROOM_BIN")
    if env:
        return Path(env).resolve()
    for profile in ("release", "debug"):
        p = ROOT / "target" / profile / "chartroom"
        if p.is_file():
            return p
    return ROOT / "target" / "debug" / "chartroom"


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A clean environment: nothing systemd-related leaks in from the caller."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
    }
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------------------------
# Charts and configuration


def make_chart(name: str, version: str, padding: int = 0) -> bytes:
    """A valid Helm chart package; ``padding`` bytes of incompressible data make it bigger."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        files = [
            ("Chart.yaml", f"apiVersion: v2\nname: {name}\nversion: {version}\n".encode()),
            ("values.yaml", b"replicas: 1\n"),
        ]
        if padding:
            files.append(("files/pad.bin", os.urandom(padding)))
        for rel, data in files:
            info = tarfile.TarInfo(f"{name}/{rel}")
            info.size = len(data)
            info.mtime = 1_700_000_000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def seed(directory: Path, charts: Iterable[tuple[str, str]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, version in charts:
        (directory / f"{name}-{version}.tgz").write_bytes(make_chart(name, version))


def write_config(path: Path, rootdir: Path | str, **extra: object) -> Path:
    lines = [
        "storage:",
        "  backend: local",
        "  local:",
        f"    rootdir: {rootdir}",
    ]
    for key, value in extra.items():
        lines.append(f"{key}: {value}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)  # atomic, as a configuration manager would write it
    return path


def index_versions(text: str) -> dict[str, list[str]]:
    """Chart name -> versions from an index.yaml (a small reader: no YAML module needed)."""
    import json
    import re

    if text.lstrip().startswith("{"):
        doc = json.loads(text)
        return {k: [v["version"] for v in vs] for k, vs in doc.get("entries", {}).items()}
    out: dict[str, list[str]] = {}
    current = None
    in_entries = False
    for line in text.splitlines():
        if line.startswith("entries:"):
            in_entries = True
            continue
        if in_entries and re.match(r"^\S", line):
            in_entries = False
        if not in_entries:
            continue
        m = re.match(r"^  ([^ :][^:]*):\s*$", line)
        if m:
            current = m.group(1).strip("\"'")
            out[current] = []
            continue
        m = re.match(r"^\s+version:\s*(\S+)\s*$", line)
        if m and current is not None:
            out[current].append(m.group(1).strip("\"'"))
    return out


# --------------------------------------------------------------------------------------------
# sd_notify capture


@dataclass
class NotifyMessage:
    at: int  # CLOCK_MONOTONIC, microseconds, when received
    pid: int  # sender, from SCM_CREDENTIALS
    raw: str
    fields: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<notify pid={self.pid} {self.raw!r}>"


class NotifySocket:
    """A Unix datagram socket standing in for systemd's notification socket."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.messages: list[NotifyMessage] = []
        self.cond = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        cred_size = struct.calcsize("3i")
        while not self.stopped:
            try:
                data, anc, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(cred_size))
            except socket.timeout:
                continue
            except OSError:
                return
            at = monotonic_usec()
            pid = -1
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid, _uid, _gid = struct.unpack("3i", payload[:cred_size])
            raw = data.decode("utf-8", "replace")
            fields = {}
            for line in raw.split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    fields[k] = v
            with self.cond:
                self.messages.append(NotifyMessage(at, pid, raw, fields))
                self.cond.notify_all()

    def snapshot(self) -> list[NotifyMessage]:
        with self.cond:
            return list(self.messages)

    def wait_for(
        self, pred: Callable[[NotifyMessage], bool], after: int = 0, timeout: float = 10.0
    ) -> tuple[int, NotifyMessage]:
        """Waits for the first message at index >= ``after`` matching ``pred``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.messages)):
                    if pred(self.messages[i]):
                        return i, self.messages[i]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"no matching notification within {timeout}s; got {self.messages[after:]}"
                    )
                self.cond.wait(left)

    def wait_ready(self, after: int = 0, timeout: float = START_TIMEOUT) -> tuple[int, NotifyMessage]:
        return self.wait_for(lambda m: m.fields.get("READY") == "1", after, timeout)

    def close(self) -> None:
        self.stopped = True
        self.thread.join(2)
        self.sock.close()


# --------------------------------------------------------------------------------------------
# Processes


class Proc:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path,
                 stdin: int = subprocess.DEVNULL):
        self.argv = argv
        self.log_path = log
        with open(log, "wb") as out:  # the child keeps its own copy of the fd
            self.popen = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=stdin,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.pid = self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; always waits for the process."""
        if self.running():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        return self.popen.returncode


@dataclass
class Server:
    proc: Proc
    base: str | None = None  # http://127.0.0.1:PORT when it listens on TCP

    @property
    def pid(self) -> int:
        return self.proc.pid

    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return requests.get(self.base + path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 10)
        return requests.post(self.base + path, **kw)


def wait_http(base: str, proc: Proc, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.running():
            raise AssertionError(f"chartroom exited with {proc.popen.returncode}:\n{proc.log()}")
        try:
            if requests.get(base + "/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"chartroom did not answer within {timeout}s:\n{proc.log()}")


class Procs:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.all: list[Proc] = []
        self.n = 0

    def start(self, argv: list[str], env: dict[str, str] | None = None, name: str = "proc",
              stdin: int = subprocess.DEVNULL, journal: bool = False) -> Proc:
        """``journal``: set JOURNAL_STREAM to the device:inode of the process's stderr, as
        systemd does when it connects stderr to journald."""
        self.n += 1
        log = self.workdir / f"{name}-{self.n}.log"
        env = base_env(env)
        if journal:
            log.touch()
            st = log.stat()
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        p = Proc(argv, env, log, self.workdir, stdin)
        self.all.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.all):
            p.stop()


@pytest.fixture(scope="session")
def chartroom_bin() -> Path:
    b = find_binary()
    if not b.is_file():
        pytest.fail(f"chartroom binary not found at {b}: run cargo build or set CHARTROOM_BIN")
    return b


@pytest.fixture
def short_tmp():
    """A short temporary directory (Unix socket paths are limited to 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="crsd-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def procs(tmp_path):
    ps = Procs(tmp_path)
    yield ps
    ps.stop_all()


@pytest.fixture
def notify(short_tmp):
    n = NotifySocket(short_tmp)
    yield n
    n.close()


@pytest.fixture
def start_server(chartroom_bin, procs, tmp_path):
    """``start_server(config=PATH, args=[...], env={...})`` -> Server, started on a free port
    and answering /health."""

    def start(config: Path, args: list[str] | None = None, env: dict[str, str] | None = None,
              wait: bool = True) -> Server:
        port = free_port()
        argv = [str(chartroom_bin), "--config", str(config), "--port", str(port)] + (args or [])
        p = procs.start(argv, env, name="chartroom")
        s = Server(p, f"http://127.0.0.1:{port}")
        if wait:
            wait_http(s.base, p)
        return s

    return start


# --------------------------------------------------------------------------------------------
# Raw HTTP over Unix sockets and slow uploads


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def unix_get(path: str, url: str) -> tuple[int, bytes]:
    c = UnixHTTPConnection(path)
    try:
        c.request("GET", url)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Reads one HTTP/1.1 response with a Content-Length (chartroom always sends one)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, body


class SlowUpload:
    """POST /api/charts of ``body`` over a raw socket, sent in ``chunks`` pieces with a pause
    after each. ``start()`` sends the headers and the first piece; ``finish()`` sends the rest
    and returns (status, body)."""

    def __init__(self, port: int, body: bytes, chunks: int = 10, pause: float = 0.2):
        self.port = port
        self.body = body
        self.chunks = chunks
        self.pause = pause
        self.sock: socket.socket | None = None
        self.offset = 0

    def start(self) -> None:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        head = (
            "POST /api/charts HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{self.port}\r\n"
            "Content-Type: application/gzip\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "\r\n"
        ).encode()
        s.sendall(head)
        self.sock = s
        self._send_piece()

    def _send_piece(self) -> None:
        step = max(1, -(-len(self.body) // self.chunks))
        piece = self.body[self.offset:self.offset + step]
        self.sock.sendall(piece)
        self.offset += len(piece)

    def finish(self) -> tuple[int, bytes]:
        try:
            while self.offset < len(self.body):
                time.sleep(self.pause)
                self._send_piece()
            return read_response(self.sock)
        finally:
            self.sock.close()


# --------------------------------------------------------------------------------------------
# What a process listens on, from /proc


def listening_sockets(pid: int) -> list[str]:
    """The listening sockets process ``pid`` holds: ``tcp:IP:PORT``, ``tcp6:[IP]:PORT`` or
    ``unix:PATH``, read from /proc (fds -> socket inodes -> /proc/net tables)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, fam in (("tcp", "tcp"), ("tcp6", "tcp6")):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:
                continue
            hexip, hexport = local.split(":")
            port = int(hexport, 16)
            raw = bytes.fromhex(hexip)
            if fam == "tcp":
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
                out.append(f"tcp:{ip}:{port}")
            else:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, words)
                out.append(f"tcp6:[{ip}]:{port}")
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        # Num RefCount Protocol Flags Type St Inode [Path]; Flags 00010000 = __SO_ACCEPTCON
        if cols[6] in inodes and int(cols[3], 16) & 0x10000 and len(cols) > 7:
            out.append(f"unix:{cols[7]}")
    return sorted(out)
