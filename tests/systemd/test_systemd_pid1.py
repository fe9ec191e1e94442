"""The units under a real systemd (252, Debian 12) as PID 1, in a systemd-nspawn container.

Opt-in: set CHARTROOM_NSPAWN_ROOT to a Debian 12 root made with

    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,procps,curl,ca-certificates bookworm ROOT

The root is never modified: the container runs with --volatile=overlay (writes go to a tmpfs)
and gets the built binary, debian/chartroom.{service,socket} and a test configuration through
read-only bind mounts (at the packaged paths /usr/bin/chartroom, /lib/systemd/system/ and
/etc/chartroom/). It has its own network namespace, so its 127.0.0.1:8080 is private. Takes
about 20 s.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, make_chart

NSPAWN_ROOT = os.environ.get("CHARTROOM_NSPAWN_ROOT")
pytestmark = pytest.mark.skipif(
    not NSPAWN_ROOT or not shutil.which("systemd-nspawn"),
    reason="set CHARTROOM_NSPAWN_ROOT to a Debian 12 root (see the module docstring)",
)

CONFIG = "storage:\n  backend: local\n  local:\n    rootdir: /var/lib/chartroom\n"


class Container:
    def __init__(self, root: str, binary: Path, work: Path):
        self.work = work
        self.etc = work / "etc"
        self.data = work / "data"
        self.etc.mkdir()
        self.data.mkdir()
        (self.etc / "chartroom.yaml").write_text(CONFIG)
        (self.data / "small.tgz").write_bytes(make_chart("small", "1.0.0"))
        (self.data / "big.tgz").write_bytes(make_chart("big", "1.0.0", padding=48 * 1024))
        argv = [
            "systemd-nspawn", "-q", "-D", root, "--register=no", "--keep-unit", "--boot",
            "--private-network", "--volatile=overlay",
            f"--bind-ro={binary}:/usr/bin/chartroom",
            f"--bind-ro={ROOT / 'debian/chartroom.service'}:/lib/systemd/system/chartroom.service",
            f"--bind-ro={ROOT / 'debian/chartroom.socket'}:/lib/systemd/system/chartroom.socket",
            f"--bind={self.etc}:/etc/chartroom",
            f"--bind-ro={self.data}:/srv/data",
        ]
        self.console = open(work / "console.log", "wb")
        self.nspawn = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.console,
                                       stderr=subprocess.STDOUT)

    def boot(self) -> None:
        self.pid1 = self._find_pid1()
        deadline = time.monotonic() + 90  # 2 shared cores can be slow
        while True:
            state = self.run("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                break
            assert time.monotonic() < deadline, (
                f"container did not boot: {state}\n{(self.work / 'console.log').read_text()}")
            time.sleep(0.2)
        # What the package's sysusers.d file does at installation.
        self.run("useradd", "--system", "--home-dir", "/var/lib/chartroom", "--no-create-home",
                 "--shell", "/usr/sbin/nologin", "chartroom")
        self.run("systemctl", "daemon-reload")

    def _find_pid1(self) -> int:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.nspawn.poll() is None, (self.work / "console.log").read_text()
            # nspawn forks helpers on its way; the container's PID 1 is the child that
            # runs systemd.
            for task in Path(f"/proc/{self.nspawn.pid}/task").iterdir():
                for kid in (task / "children").read_text().split():
                    try:
                        comm = Path(f"/proc/{kid}/comm").read_text().strip()
                    except OSError:
                        continue
                    if comm == "systemd":
                        return int(kid)
            time.sleep(0.05)
        raise AssertionError("no container PID 1")

    def cmd(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid1), "-a", *argv]

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        r = subprocess.run(self.cmd(*argv), capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{argv} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *[f"-p{p}" for p in props]).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def curl(self, *args: str) -> tuple[int, str]:
        r = self.run("curl", "-s", "-m", "30", "-o", "/dev/stderr", "-w", "%{http_code}", *args,
                     check=False)
        return int(r.stdout or 0), r.stderr

    def journal(self, *args: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", "chartroom.service",
                        *args).stdout

    def stop(self) -> None:
        if self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # clean halt of the container
            try:
                self.nspawn.wait(60)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(10)
        self.console.close()


@pytest.fixture(scope="module")
def ct(chartroom_bin, tmp_path_factory):
    c = Container(NSPAWN_ROOT, chartroom_bin, tmp_path_factory.mktemp("nspawn"))
    try:
        c.boot()
        yield c
    finally:
        c.stop()


def reset(ct: Container) -> None:
    ct.run("systemctl", "stop", "chartroom.service", "chartroom.socket")
    ct.run("systemctl", "reset-failed", check=False)
    (ct.etc / "chartroom.yaml").write_text(CONFIG)


def test_socket_activation_reload_and_stop(ct):
    reset(ct)
    ct.run("systemctl", "start", "chartroom.socket")
    assert ct.show("chartroom.service", "ActiveState")["ActiveState"] == "inactive"
    code, body = ct.curl("http://127.0.0.1:8080/index.yaml")  # starts the service
    assert code == 200, body
    svc = ct.show("chartroom.service", "ActiveState", "StatusText", "MainPID", "User")
    assert svc["ActiveState"] == "active"
    assert svc["StatusText"] == "serving 0 chart versions of 0 charts in 1 repositories"
    pid = svc["MainPID"]
    status = ct.run("cat", f"/proc/{pid}/status").stdout
    uid = ct.run("id", "-u", "chartroom").stdout.strip()
    assert re.search(rf"^Uid:\s+{uid}\s", status, re.M), status
    assert re.search(r"^NoNewPrivs:\s+1", status, re.M) and re.search(r"^Seccomp:\s+2", status, re.M)
    assert "listening on=\"tcp:127.0.0.1:8080 (http)\"" in ct.journal()

    # Upload into the StateDirectory through ProtectSystem=strict.
    code, body = ct.curl("--data-binary", "@/srv/data/small.tgz", "http://127.0.0.1:8080/api/charts")
    assert code == 201, body
    assert "chartroom chartroom" in ct.run("ls", "-l", "/var/lib/chartroom/small-1.0.0.tgz").stdout

    # systemctl reload: good, then broken (the service stays up and says why).
    ct.run("systemctl", "reload", "chartroom.service")
    assert ct.show("chartroom.service", "StatusText")["StatusText"].startswith("serving 1 chart")
    (ct.etc / "chartroom.yaml").write_text("storage: [broken\n")
    # ExecReload runs check-config first: the reload fails, names the problem, sends no SIGHUP.
    r = ct.run("systemctl", "reload", "chartroom.service", check=False)
    assert r.returncode != 0, r
    deadline = time.monotonic() + 5
    while "check-config: /etc/chartroom/chartroom.yaml: invalid YAML" not in ct.journal():
        assert time.monotonic() < deadline, ct.journal()
        time.sleep(0.1)
    svc = ct.show("chartroom.service", "ActiveState", "MainPID", "StatusText")
    assert svc["ActiveState"] == "active" and svc["MainPID"] == pid, svc
    assert svc["StatusText"].startswith("serving 1 chart"), svc
    # A SIGHUP that bypasses ExecReload meets the daemon's own guard.
    ct.run("systemctl", "kill", "-s", "HUP", "--kill-whom=main", "chartroom.service")
    deadline = time.monotonic() + 5
    while not ct.show("chartroom.service", "StatusText")["StatusText"].startswith("reload failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    svc = ct.show("chartroom.service", "ActiveState", "MainPID", "StatusText")
    assert svc["ActiveState"] == "active" and svc["MainPID"] == pid, svc
    assert "/etc/chartroom/chartroom.yaml: invalid YAML" in svc["StatusText"]
    assert ct.curl("http://127.0.0.1:8080/index.yaml")[0] == 200
    # Priorities reach the journal: journalctl -p err shows the failure and nothing routine.
    errors = ct.journal("-p", "err")
    assert "reload failed" in errors and "ready" not in errors and "status=200" not in errors
    assert "reload complete" in ct.journal("-p", "info")
    (ct.etc / "chartroom.yaml").write_text(CONFIG)

    # systemctl stop during a slow upload: the upload completes, the service exits cleanly.
    upload = subprocess.Popen(
        ct.cmd("curl", "-s", "-m", "30", "-o", "/dev/null", "-w", "%{http_code}", "--limit-rate",
               "16k", "--data-binary", "@/srv/data/big.tgz", "http://127.0.0.1:8080/api/charts"),
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        ct.run("systemctl", "stop", "chartroom.service")
        out, _ = upload.communicate(timeout=30)
    finally:
        if upload.poll() is None:
            upload.kill()
            upload.wait()
    assert out == "201"
    svc = ct.show("chartroom.service", "ActiveState", "Result", "ExecMainStatus")
    assert svc == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}, svc
    assert ct.run("test", "-s", "/var/lib/chartroom/big-1.0.0.tgz", check=False).returncode == 0
    assert "chartroom-state.json" in ct.run("ls", "/var/lib/chartroom").stdout

    # The socket stayed: the next connection starts the service again, with the upload.
    code, body = ct.curl("http://127.0.0.1:8080/index.yaml")
    assert code == 200 and "big" in body and "small" in body


def test_watchdog(ct):
    reset(ct)
    ct.run("mkdir", "-p", "/run/systemd/system/chartroom.service.d")
    ct.run("sh", "-c", "printf '[Service]\\nWatchdogSec=2s\\nRestartSec=1h\\n' > "
                       "/run/systemd/system/chartroom.service.d/watchdog.conf")
    ct.run("systemctl", "daemon-reload")
    try:
        ct.run("systemctl", "start", "chartroom.service")
        pid = ct.show("chartroom.service", "MainPID")["MainPID"]
        time.sleep(3.5)  # longer than WatchdogSec: pets must have arrived
        svc = ct.show("chartroom.service", "ActiveState", "MainPID", "NRestarts")
        assert svc == {"ActiveState": "active", "MainPID": pid, "NRestarts": "0"}, svc
        # A server that stops serving stops petting, and systemd acts on it.
        ct.run("kill", "-STOP", pid)
        deadline = time.monotonic() + 10
        while ct.show("chartroom.service", "Result")["Result"] != "watchdog":
            assert time.monotonic() < deadline, ct.show("chartroom.service", "Result", "ActiveState")
            time.sleep(0.2)
    finally:
        ct.run("rm", "-rf", "/run/systemd/system/chartroom.service.d")
        ct.run("systemctl", "daemon-reload")
        ct.run("systemctl", "stop", "chartroom.service", check=False)


def test_service_started_on_its_own(ct):
    reset(ct)
    # Without the socket unit (masked), the service binds 127.0.0.1:8080 from its config.
    ct.run("systemctl", "mask", "--runtime", "chartroom.socket")
    try:
        since = ct.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
        ct.run("systemctl", "start", "chartroom.service")
        assert ct.curl("http://127.0.0.1:8080/health")[0] == 200
        assert "listening on=tcp:127.0.0.1:8080 scheme=http storage" in ct.journal("--since", since)
        ct.run("systemctl", "stop", "chartroom.service")
    finally:
        ct.run("systemctl", "unmask", "--runtime", "chartroom.socket")
    # Started directly while the socket unit exists: the socket comes up first and is passed.
    since = ct.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
    ct.run("systemctl", "start", "chartroom.service")
    assert ct.show("chartroom.socket", "ActiveState")["ActiveState"] == "active"
    assert ct.curl("http://127.0.0.1:8080/health")[0] == 200
    assert "(http)" in ct.journal("--since", since)
    svc = ct.show("chartroom.service", "StatusText", "Result")
    assert svc["StatusText"].startswith("serving "), svc
    reset(ct)


def test_https_with_key_files_readable_by_the_group_only(ct):
    """TLS key material as README.Debian says to install it (root:chartroom, mode 0640) is
    readable by the sandboxed service (User=chartroom, PrivateUsers=yes), over the socket
    systemd passes in."""
    reset(ct)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-keyout", str(ct.etc / "server.key"), "-out", str(ct.etc / "server.pem"),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    ct.run("chown", "root:chartroom", "/etc/chartroom/server.key", "/etc/chartroom/server.pem")
    ct.run("chmod", "0640", "/etc/chartroom/server.key", "/etc/chartroom/server.pem")
    (ct.etc / "chartroom.yaml").write_text(
        CONFIG + "tls:\n  cert: /etc/chartroom/server.pem\n  key: /etc/chartroom/server.key\n")
    try:
        since = ct.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()
        ct.run("systemctl", "start", "chartroom.socket")
        code, body = ct.curl("--cacert", "/etc/chartroom/server.pem", "https://127.0.0.1:8080/health")
        assert code == 200, (body, ct.journal("--since", since))
        assert ct.curl("http://127.0.0.1:8080/health")[0] == 400  # plain HTTP to the TLS port
        svc = ct.show("chartroom.service", "ActiveState", "User")
        assert svc == {"ActiveState": "active", "User": "chartroom"}, svc
    finally:
        reset(ct)
        for name in ("server.key", "server.pem"):
            (ct.etc / name).unlink(missing_ok=True)


def test_security_of_the_running_unit(ct):
    out = ct.run("systemd-analyze", "security", "--no-pager", "chartroom.service").stdout
    m = re.search(r"Overall exposure level for chartroom\.service: (\d+\.\d+) (\S+)", out)
    assert m and float(m.group(1)) < 3.0 and m.group(2) == "OK", out
    print(f"\nsystemd-analyze security (online, in the container): {m.group(1)} {m.group(2)}")
