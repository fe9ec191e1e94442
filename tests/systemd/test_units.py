"""debian/chartroom.service and debian/chartroom.socket, checked offline with systemd's own
tools (systemd-analyze verify and security), plus a check that the sandbox the service sets up
(SystemCallFilter=, RestrictAddressFamilies=, MemoryDenyWriteExecute=) allows everything
chartroom does: its system calls are traced under a real workload and compared with the
filter systemd-analyze expands.

`systemd-analyze verify` checks that the ExecStart=/ExecReload= binaries exist, and the unit
names /usr/bin/chartroom, which is only there once the package is installed. The test
therefore verifies the units inside a temporary root laid out like the installed package
(--root=ROOT): ROOT/usr/bin/chartroom is the built binary (hard link), ROOT/bin/kill is the
host's, and ROOT/usr/lib/systemd/system holds the host's units (sysinit.target and the others
the units depend on) plus ours.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from functools import lru_cache
from pathlib import Path

import pytest
import requests

from conftest import ROOT, free_port, make_chart, seed, write_config

UNITS = ROOT / "debian"
SERVICE = UNITS / "chartroom.service"
SOCKET = UNITS / "chartroom.socket"


def parse_unit(path: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (systemd keys may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory, chartroom_bin):
    root = tmp_path_factory.mktemp("unitroot")
    system = root / "usr/lib/systemd/system"
    shutil.copytree("/lib/systemd/system", system, symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    try:
        os.link(chartroom_bin, root / "usr/bin/chartroom")
    except OSError:
        shutil.copy2(chartroom_bin, root / "usr/bin/chartroom")
    shutil.copy2(shutil.which("kill", path="/bin:/usr/bin"), root / "bin/kill")
    for unit in (SERVICE, SOCKET):
        shutil.copy2(unit, system / unit.name)
    return root


def test_verify(unit_root):
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={unit_root}",
         "chartroom.service", "chartroom.socket"],
        capture_output=True, text=True, timeout=30,
    )
    # Unknown keys and other problems are only warnings (exit 0): require silence.
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.returncode, r.stdout, r.stderr)


def test_verify_catches_a_missing_binary(unit_root, tmp_path):
    # The check above is meaningful: without the binary in the root, verify fails.
    root = tmp_path / "root"
    shutil.copytree(unit_root, root, symlinks=True)
    (root / "usr/bin/chartroom").unlink()
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                        "chartroom.service"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "/usr/bin/chartroom" in r.stderr, r.stderr


def test_security_exposure():
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(SERVICE)],
        capture_output=True, text=True, timeout=30,
    )
    m = re.search(r"Overall exposure level for chartroom\.service: (\d+\.\d+) (\S+)", r.stdout)
    assert m, (r.stdout, r.stderr)
    score, verdict = float(m.group(1)), m.group(2)
    print(f"\nsystemd-analyze security: exposure {score} {verdict}")
    assert score < 3.0 and verdict == "OK", r.stdout


def test_required_settings():
    svc = parse_unit(SERVICE)
    one = lambda k: svc[k][-1]  # noqa: E731
    assert one("Service.Type") == "notify"
    assert one("Service.User") == "chartroom"
    assert one("Service.ExecStart").split()[0] == "/usr/bin/chartroom"
    assert "/etc/chartroom/chartroom.yaml" in one("Service.ExecStart")
    assert one("Service.ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one("Service.EnvironmentFile") == "-/etc/default/chartroom"
    assert one("Service.Restart") == "on-failure"
    assert one("Service.StateDirectory") == "chartroom"
    assert one("Service.ProtectSystem") == "strict"
    assert one("Service.ProtectHome") == "yes"
    assert one("Service.PrivateTmp") == "yes"
    assert one("Service.NoNewPrivileges") == "yes"
    assert one("Service.CapabilityBoundingSet") == ""
    assert svc["Service.SystemCallFilter"][0] == "@system-service"
    # Swift/S3 stay reachable: IPv4 and IPv6 allowed, no network isolation or IP deny list.
    assert set(one("Service.RestrictAddressFamilies").split()) >= {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "Service.PrivateNetwork" not in svc and "Service.IPAddressDeny" not in svc
    # systemd must not SIGKILL before chartroom's shutdown grace period (30s) is over.
    stop = one("Service.TimeoutStopSec")
    assert stop.endswith("s") and int(stop[:-1]) > 30
    sock = parse_unit(SOCKET)
    assert sock["Socket.ListenStream"] == ["127.0.0.1:8080"]
    assert sock["Install.WantedBy"] == ["sockets.target"]


# --------------------------------------------------------------------------------------------
# The sandbox against what chartroom really does.


@lru_cache(maxsize=None)
def syscall_group(name: str) -> frozenset[str]:
    out = subprocess.run(["systemd-analyze", "syscall-filter", name],
                         capture_output=True, text=True, check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= syscall_group(item) if item.startswith("@") else {item}
    return frozenset(calls)


def allowed_syscalls() -> set[str]:
    """What the service's SystemCallFilter= lines leave allowed: the first (allow) list minus
    every later ~ (deny) list."""
    allowed: set[str] | None = None
    for value in parse_unit(SERVICE)["Service.SystemCallFilter"]:
        deny = value.startswith("~")
        names = set()
        for item in value.lstrip("~").split():
            names |= syscall_group(item) if item.startswith("@") else {item}
        if deny:
            allowed = (allowed or set()) - names
        else:
            allowed = (allowed or set()) | names
    return allowed or set()


def test_sandbox_allows_what_chartroom_does(procs, chartroom_bin, tmp_path, notify):
    if not shutil.which("strace"):
        pytest.skip("strace is not installed")
    storage = tmp_path / "storage"
    seed(storage, [("aonly", "1.0.0")])
    config = write_config(tmp_path / "chartroom.yaml", storage)
    secret = tmp_path / "pass"
    secret.write_text("s3cret\n")
    port = free_port()
    trace = tmp_path / "trace"
    proc = procs.start(
        ["strace", "-f", "-qq", "-o", str(trace),
         str(chartroom_bin), "--config", str(config), "--port", str(port), "--workers", "2",
         "--basic-auth-user", "u", "--basic-auth-pass-file", str(secret)],
        {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000",
         # Swift v1 credentials for the reload below (nothing listens on port 9).
         "ST_AUTH": "http://localhost:9/auth/v1.0", "ST_USER": "test:tester", "ST_KEY": "x"},
        name="strace",
    )
    notify.wait_ready(timeout=30)
    base = f"http://127.0.0.1:{port}"
    auth = ("u", "s3cret")
    assert requests.get(base + "/index.yaml", auth=auth, timeout=10).status_code == 200
    assert requests.post(base + "/api/charts", data=make_chart("new", "1.0.0"), auth=auth,
                         timeout=10).status_code == 201
    assert requests.delete(base + "/api/charts/aonly/1.0.0", auth=auth,
                           timeout=10).status_code == 200
    assert requests.get(base + "/charts/new-1.0.0.tgz", auth=auth, timeout=10).status_code == 200
    chartroom_pid = _main_pid(trace)
    # Reload the way the unit does (ExecReload=/bin/kill -HUP $MAINPID), traced too.
    subprocess.run(["strace", "-f", "-qq", "-o", str(tmp_path / "trace-kill"), "/bin/kill",
                    "-HUP", str(chartroom_pid)], check=True, timeout=10)
    i, _ = notify.wait_for(lambda m: m.fields.get("RELOADING") == "1", timeout=10)
    i, _ = notify.wait_ready(after=i + 1)
    # A reload to Swift storage that cannot be reached: name resolution, TLS/HTTP client set-up
    # and connection attempts happen under the filter too (the reload fails, which is fine).
    config.write_text("storage:\n  backend: openstack\n  openstack:\n    container: charts\n"
                      "    auth: v1\n")
    os.kill(chartroom_pid, signal.SIGHUP)
    i, _ = notify.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=i + 1, timeout=10)
    _, failed = notify.wait_ready(after=i + 1, timeout=30)
    assert failed.fields["STATUS"].startswith("reload failed: "), failed
    time.sleep(1)  # watchdog pets, state-file save
    os.kill(chartroom_pid, signal.SIGTERM)
    assert proc.wait(20) == 0, proc.log()

    used: set[str] = set()
    families: set[str] = set()
    wx = []
    for f in (trace, tmp_path / "trace-kill"):
        for line in f.read_text().splitlines():
            # "PID  name(args..." or "PID  <... name resumed>..."
            m = re.match(r"^\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
            if m:
                used.add(m.group(1))
            fam = re.search(r"\bsocket\((AF_[A-Z0-9]+)", line)
            if fam:
                families.add(fam.group(1))
            if re.search(r"\b(mmap|mprotect|pkey_mprotect)\(.*PROT_WRITE\|PROT_EXEC|PROT_EXEC\|PROT_WRITE", line):
                wx.append(line)
    used -= {"exit", "exit_group", "restart_syscall"}  # always allowed by systemd
    used.discard("execve")  # the exec that starts chartroom happens before the filter applies
    assert used, "nothing traced"
    denied = sorted(used - allowed_syscalls())
    assert denied == [], f"system calls SystemCallFilter= would refuse: {denied}"
    allowed_families = set(parse_unit(SERVICE)["Service.RestrictAddressFamilies"][-1].split())
    assert families <= allowed_families, families
    assert wx == [], "writable+executable mappings break MemoryDenyWriteExecute="


def _main_pid(trace: Path) -> int:
    """The traced chartroom process: the first PID in the strace output."""
    first = trace.read_text().split(None, 1)[0]
    return int(first)
