"""debian/chartroom-publish.service and .timer (issue 8), checked offline with systemd's own
tools: `systemd-analyze verify` in a root laid out like the installed package, the sandbox
against chartroom.service's, the timer's schedule, and the default file against the
variables the service reads. Running them for real is the nspawn install test's part
(tests/packaging/install-test.sh, "chartroom publish" block).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from test_units import parse_unit

UNITS = ROOT / "debian"
SERVICE = UNITS / "chartroom-publish.service"
TIMER = UNITS / "chartroom-publish.timer"
DEFAULT = UNITS / "chartroom-publish.default"
MAIN_SERVICE = UNITS / "chartroom.service"


@pytest.fixture(scope="module")
def unit_root(tmp_path_factory, chartroom_bin):
    root = tmp_path_factory.mktemp("publishroot")
    system = root / "usr/lib/systemd/system"
    shutil.copytree("/lib/systemd/system", system, symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "bin").mkdir()
    try:
        os.link(chartroom_bin, root / "usr/bin/chartroom")
    except OSError:
        shutil.copy2(chartroom_bin, root / "usr/bin/chartroom")
    shutil.copy2(shutil.which("sh", path="/bin:/usr/bin"), root / "bin/sh")
    shutil.copy2(shutil.which("kill", path="/bin:/usr/bin"), root / "bin/kill")
    for unit in (SERVICE, TIMER, MAIN_SERVICE, UNITS / "chartroom.socket"):
        shutil.copy2(unit, system / unit.name)
    return root


def test_verify(unit_root):
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={unit_root}",
         "chartroom-publish.service", "chartroom-publish.timer"],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.returncode, r.stdout, r.stderr)


def test_verify_catches_a_missing_binary(unit_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(unit_root, root, symlinks=True)
    (root / "usr/bin/chartroom").unlink()
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={root}",
                        "chartroom-publish.service"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "/usr/bin/chartroom" in r.stderr, r.stderr


HARDENING = (
    "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem",
    "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateIPC", "PrivateUsers",
    "ProtectHostname", "ProtectClock", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "ProtectControlGroups", "ProtectProc", "ProcSubset",
    "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
    "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures",
    "SystemCallFilter", "SystemCallErrorNumber", "UMask",
)


def test_service_is_a_hardened_oneshot_as_the_chartroom_user():
    svc = parse_unit(SERVICE)
    main = parse_unit(MAIN_SERVICE)
    one = lambda k: svc[k][-1]  # noqa: E731
    assert one("Service.Type") == "oneshot"
    assert one("Service.User") == "chartroom"
    assert one("Service.EnvironmentFile") == "-/etc/default/chartroom-publish"
    for key in HARDENING:
        assert svc.get(f"Service.{key}") == main.get(f"Service.{key}"), key
    # Write access: its own state directory only (no ReadWritePaths, no other directory).
    assert one("Service.StateDirectory") == "chartroom-publish"
    assert "Service.ReadWritePaths" not in svc
    exec_start = one("Service.ExecStart").split()
    assert exec_start[:2] == ["/usr/bin/chartroom", "publish"]
    assert exec_start[-3:] == ["walk", "${CHARTROOM_PUBLISH_WALK}", "${CHARTROOM_PUBLISH_REPOSITORY}"]
    # git pull only when configured
    pre = one("Service.ExecStartPre")
    assert 'if [ -n "$$CHARTROOM_PUBLISH_GIT_PULL" ]' in pre and "git pull" in pre
    assert "Install.WantedBy" not in svc  # started by the timer only


def test_security_exposure():
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(SERVICE)],
        capture_output=True, text=True, timeout=30,
    )
    m = re.search(r"Overall exposure level for chartroom-publish\.service: (\d+\.\d+) (\S+)",
                  r.stdout)
    assert m, (r.stdout, r.stderr)
    assert float(m.group(1)) < 3.0 and m.group(2) == "OK", r.stdout


def test_timer_schedule():
    t = parse_unit(TIMER)
    assert t["Timer.OnUnitInactiveSec"] == ["120s"]
    assert "Timer.OnCalendar" not in t
    assert t["Timer.OnBootSec"]
    delay = t["Timer.RandomizedDelaySec"][-1]
    assert delay.endswith("s") and 0 < int(delay[:-1]) <= 30
    assert t["Install.WantedBy"] == ["timers.target"]


def test_default_file_names_every_setting_the_service_reads():
    svc = SERVICE.read_text()
    used = set(re.findall(r"\$\$?\{?(CHARTROOM_PUBLISH_[A-Z_]+)", svc))
    documented = set(re.findall(r"^#?(CHARTROOM_PUBLISH_[A-Z_]+|HELM_REPO_[A-Z]+)=",
                                DEFAULT.read_text(), re.M))
    assert used and used <= documented, used - documented
    assert {"HELM_REPO_USERNAME", "HELM_REPO_PASSWORD"} <= documented
    # every line is a comment or empty: nothing is set by the package
    for line in DEFAULT.read_text().splitlines():
        assert line == "" or line.startswith("#"), line


def test_packaging_installs_the_units_without_enabling_them():
    rules = (UNITS / "rules").read_text()
    assert "dh_installsystemd --no-enable chartroom-publish.timer" in rules
    assert "etc/default/chartroom-publish" in rules
    install = (UNITS / "chartroom.install").read_text()
    assert "debian/chartroom-publish.service" in install
    assert "debian/chartroom-publish.timer" in install
