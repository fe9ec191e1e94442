"""SIGHUP reloads the storage settings: switching the storage under load loses no request,
a broken config or an unusable storage keeps the old settings serving and says why in STATUS=,
restart-only settings stay, and file-based secrets are re-read."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import requests

from conftest import (
    free_port,
    index_versions,
    make_chart,
    monotonic_usec,
    seed,
    listening_sockets,
    write_config,
)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: relative path -> (size, mtime_ns)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = Path(dirpath) / f
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def start(procs, chartroom_bin, tmp_path, notify, rootdir: Path, args=(), **cfg):
    config = write_config(tmp_path / "chartroom.yaml", rootdir, **cfg)
    port = free_port()
    proc = procs.start([str(chartroom_bin), "--config", str(config), "--port", str(port), *args],
                       {"NOTIFY_SOCKET": notify.path}, name="reload")
    notify.wait_ready()
    return proc, config, f"http://127.0.0.1:{port}"


def reload(proc, notify) -> tuple[int, int, str]:
    """SIGHUP; waits for RELOADING=1 then READY=1. Returns (when RELOADING was sent,
    when READY was received, STATUS of the READY message)."""
    after = len(notify.snapshot())
    proc.signal(signal.SIGHUP)
    i, rel = notify.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=after)
    _, ready = notify.wait_ready(after=i + 1)
    # The daemon's own MONOTONIC_USEC, not the time this process got around to reading the
    # datagram: with client threads holding the GIL the receive time can lag by milliseconds,
    # and a request that ended in that gap was already answered from the new storage.
    return int(rel.fields["MONOTONIC_USEC"]), ready.at, ready.fields["STATUS"]


class Client(threading.Thread):
    """Loops one kind of request until stopped, recording (start, end, outcome, detail)."""

    def __init__(self, base: str, kind: str, chart: str = "up"):
        super().__init__(daemon=True)
        self.base, self.kind, self.chart = base, kind, chart
        self.stop = threading.Event()
        self.log: list[tuple[int, int, object, str]] = []

    def run(self) -> None:
        s = requests.Session()
        i = 0
        while not self.stop.is_set():
            i += 1
            t0 = monotonic_usec()
            try:
                if self.kind == "index":
                    r = s.get(self.base + "/index.yaml", timeout=10)
                    detail = r.text
                else:
                    version = f"0.{i}.0"
                    r = s.post(self.base + "/api/charts", data=make_chart(self.chart, version),
                               headers={"Content-Type": "application/gzip"}, timeout=10)
                    detail = f"{self.chart}-{version}.tgz"
                outcome: object = r.status_code
            except requests.RequestException as e:
                outcome, detail = e, ""
            self.log.append((t0, monotonic_usec(), outcome, detail))


def test_switch_storage_under_load(procs, chartroom_bin, tmp_path, notify):
    a, b = tmp_path / "A", tmp_path / "B"
    seed(a, [("aonly", "1.0.0")])
    seed(b, [("bonly", "2.0.0"), ("bonly", "2.1.0")])
    proc, config, base = start(procs, chartroom_bin, tmp_path, notify, a)
    clients = [Client(base, "index"), Client(base, "upload", "up1"), Client(base, "upload", "up2")]
    for c in clients:
        c.start()
    time.sleep(1.0)
    write_config(config, b)
    rel_at, ready_at, status = reload(proc, notify)
    assert status.startswith("serving "), status
    # Once every request that started before READY has ended, A must not change any more.
    deadline = time.monotonic() + 10
    while any(not [e for e in c.log if e[0] > ready_at] for c in clients):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    a_after_swap = tree(a)
    time.sleep(1.2)  # more traffic, and a state-file save cycle (every second)
    for c in clients:
        c.stop.set()
    for c in clients:
        c.join(15)
    assert proc.stop() == 0, proc.log()  # writes the state file: into B

    reader, *uploaders = clients
    failures = [e for c in clients for e in c.log if e[2] not in (200, 201)]
    assert failures == [], failures[:5]
    assert len(reader.log) > 20 and all(len(u.log) > 10 for u in uploaders)

    # Reads: A's charts before the reload, B's after.
    for t0, t1, _, text in reader.log:
        names = set(index_versions(text))
        if t1 < rel_at:
            assert "aonly" in names and "bonly" not in names
        elif t0 > ready_at:
            assert "bonly" in names and "aonly" not in names
            assert index_versions(text)["bonly"] == ["2.1.0", "2.0.0"]

    # Uploads: those that ended before the reload are in A; those that started after are in
    # B and not in A; one in flight at the swap may be in either (it finishes on A).
    in_a = {p.name for p in a.glob("up*.tgz")}
    in_b = {p.name for p in b.glob("up*.tgz")}
    assert not in_a & in_b
    before = {e[3] for u in uploaders for e in u.log if e[1] < rel_at}
    after = {e[3] for u in uploaders for e in u.log if e[0] > ready_at}
    assert before and after
    assert before <= in_a
    assert after <= in_b
    assert tree(a) == a_after_swap, "nothing was written to A after the swap"
    assert (b / "chartroom-state.json").is_file()
    log = proc.log()
    assert "reload complete" in log


def test_reload_same_storage_keeps_uploads_in_index(procs, chartroom_bin, tmp_path, notify):
    # Uploads racing a reload that keeps the storage: every upload that succeeded is in the
    # index afterwards (cache refresh off, so nothing else would repair a missed entry).
    a = tmp_path / "A"
    seed(a, [("aonly", "1.0.0")])
    proc, config, base = start(procs, chartroom_bin, tmp_path, notify, a, cacheinterval="0")
    uploaders = [Client(base, "upload", "up1"), Client(base, "upload", "up2")]
    for u in uploaders:
        u.start()
    time.sleep(0.5)
    for _ in range(3):
        reload(proc, notify)
        time.sleep(0.2)
    for u in uploaders:
        u.stop.set()
    for u in uploaders:
        u.join(15)
    ok = {e[3] for u in uploaders for e in u.log if e[2] == 201}
    assert ok and all(e[2] == 201 for u in uploaders for e in u.log)
    index = index_versions(requests.get(base + "/index.yaml", timeout=5).text)
    served = {f"{name}-{v}.tgz" for name in ("up1", "up2") for v in index.get(name, [])}
    assert ok - served == set(), "uploads missing from the index after a reload"
    assert proc.stop() == 0


def test_broken_reloads_keep_serving(procs, chartroom_bin, tmp_path, notify):
    a, b = tmp_path / "A", tmp_path / "B"
    seed(a, [("aonly", "1.0.0")])
    seed(b, [("bonly", "2.0.0")])
    plain = tmp_path / "plain-file"
    plain.write_text("not a directory")
    proc, config, base = start(procs, chartroom_bin, tmp_path, notify, a)

    # 1. Syntactically broken configuration.
    config.write_text("storage:\n  local: [unclosed\n")
    _, _, status = reload(proc, notify)
    assert status.startswith(f"reload failed: {config}: invalid YAML"), status
    assert status.endswith("serving 1 chart versions of 1 charts in 1 repositories"), status
    assert "aonly" in requests.get(base + "/index.yaml", timeout=5).text

    # 2. Unusable storage: a rootdir below a regular file (root can write anywhere else).
    write_config(config, plain / "charts")
    _, _, status = reload(proc, notify)
    assert status.startswith(f"reload failed: storage local:{plain}/charts:"), status
    assert "Not a directory" in status, status
    r = requests.post(base + "/api/charts", data=make_chart("still", "1.0.0"), timeout=5)
    assert r.status_code == 201
    assert (a / "still-1.0.0.tgz").is_file(), "the old storage keeps serving uploads"
    index = index_versions(requests.get(base + "/index.yaml", timeout=5).text)
    assert set(index) == {"aonly", "still"}

    # 2b. A storage directory that does not exist (a typo): refused, and not created, where a
    # start would create it.
    typo = tmp_path / "charts-typo"
    write_config(config, typo)
    _, _, status = reload(proc, notify)
    assert status.startswith(f"reload failed: storage local:{typo}: "), status
    assert "does not exist" in status, status
    assert not typo.exists()
    assert "still" in requests.get(base + "/index.yaml", timeout=5).text

    # 3. Unknown key: refused as a whole, nothing half-applied.
    write_config(config, b, nosuchkey="1")
    _, _, status = reload(proc, notify)
    assert status.startswith("reload failed: ") and "nosuchkey" in status, status
    assert "aonly" in requests.get(base + "/index.yaml", timeout=5).text

    # 4. Fixed: B is served.
    write_config(config, b)
    _, _, status = reload(proc, notify)
    assert status == "serving 1 chart versions of 1 charts in 1 repositories", status
    assert set(index_versions(requests.get(base + "/index.yaml", timeout=5).text)) == {"bonly"}

    assert proc.stop() == 0
    log = proc.log()
    assert log.count("reload failed; keeping the previous configuration") == 4, log


def test_restart_only_settings_stay(procs, chartroom_bin, tmp_path, notify):
    a = tmp_path / "A"
    seed(a, [("aonly", "1.0.0")])
    port, other = free_port(), free_port()
    config = write_config(tmp_path / "chartroom.yaml", a, port=port)
    proc = procs.start([str(chartroom_bin), "--config", str(config)],
                       {"NOTIFY_SOCKET": notify.path}, name="restart-only")
    notify.wait_ready()
    base = f"http://127.0.0.1:{port}"
    write_config(config, a, port=other, workers=3, contextpath="/charts")
    _, _, status = reload(proc, notify)
    assert status.startswith("serving "), status
    assert listening_sockets(proc.pid) == [f"tcp:127.0.0.1:{port}"]
    # Live settings did change.
    assert requests.get(base + "/charts/index.yaml", timeout=5).status_code == 200
    assert requests.get(base + "/index.yaml", timeout=5).status_code == 404
    assert proc.stop() == 0
    log = proc.log()
    assert "needs a restart" in log and "key=port" in log and "key=workers" in log, log
    assert f"running={port} configured={other}" in log


def test_secret_file_reread_on_reload(procs, chartroom_bin, tmp_path, notify):
    a = tmp_path / "A"
    seed(a, [("aonly", "1.0.0")])
    secret = tmp_path / "pass"
    secret.write_text("first-secret\n")
    proc, config, base = start(
        procs, chartroom_bin, tmp_path, notify, a,
        args=["--basic-auth-pass-file", str(secret)],
        **{"basicauth.user": "admin"},
    )
    url = base + "/api/charts"
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, auth=("admin", "first-secret"), timeout=5).status_code == 200
    secret.write_text("second-secret\n")
    # Until the reload the running credentials stay.
    assert requests.get(url, auth=("admin", "first-secret"), timeout=5).status_code == 200
    _, _, status = reload(proc, notify)
    assert status.startswith("serving "), status
    assert requests.get(url, auth=("admin", "first-secret"), timeout=5).status_code == 401
    assert requests.get(url, auth=("admin", "second-secret"), timeout=5).status_code == 200
    # An unreadable secret file is a failed reload: the old credentials stay.
    secret.unlink()
    _, _, status = reload(proc, notify)
    assert status.startswith("reload failed: ") and str(secret) in status, status
    assert requests.get(url, auth=("admin", "second-secret"), timeout=5).status_code == 200
    assert proc.stop() == 0


def test_hung_reload_does_not_stall_serving_or_stop(procs, chartroom_bin, tmp_path, notify):
    # A secret "file" that blocks when read (a FIFO nobody writes to) stands in for a hung
    # network mount: the reload waits, but requests, watchdog pets and a stop do not.
    a = tmp_path / "A"
    seed(a, [("aonly", "1.0.0")])
    secret = tmp_path / "pass"
    secret.write_text("first\n")
    config = write_config(tmp_path / "chartroom.yaml", a, **{"basicauth.user": "u",
                                                            "basicauth.passfile": secret})
    port = free_port()
    proc = procs.start(
        ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"', str(chartroom_bin), "--config",
         str(config), "--port", str(port)],
        {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}, name="hung")
    i, _ = notify.wait_ready()
    secret.unlink()
    os.mkfifo(secret)
    proc.signal(signal.SIGHUP)
    j, _ = notify.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=i + 1)
    base = f"http://127.0.0.1:{port}"
    for _ in range(5):
        r = requests.get(base + "/api/charts", auth=("u", "first"), timeout=2)
        assert r.status_code == 200
        time.sleep(0.2)
    pets = [m for m in notify.snapshot()[j + 1:] if m.raw == "WATCHDOG=1"]
    assert len(pets) >= 3, "the watchdog is still petted while the reload hangs"
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(5) == 0, proc.log()
    assert time.monotonic() - t0 < 2
    msgs = [m for m in notify.snapshot()[j + 1:] if m.raw != "WATCHDOG=1"]
    assert [m.fields.get("STOPPING") for m in msgs] == ["1"], msgs
    assert "reload is abandoned" in proc.log()
