"""SIGTERM/SIGINT: stop accepting, let requests in flight (a slow upload) finish within the
grace period, write the state file, send STOPPING=1, exit 0; a second signal exits at once."""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest
import requests

from conftest import SlowUpload, free_port, make_chart, seed, write_config


def start(procs, chartroom_bin, tmp_path, notify, grace: str):
    storage = tmp_path / "storage"
    seed(storage, [("aonly", "1.0.0")])
    config = write_config(tmp_path / "chartroom.yaml", storage)
    port = free_port()
    proc = procs.start([str(chartroom_bin), "--config", str(config), "--port", str(port),
                        "--shutdown-grace", grace], {"NOTIFY_SOCKET": notify.path}, name="stop")
    notify.wait_ready()
    return proc, port, storage


def refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_slow_upload_completes(procs, chartroom_bin, tmp_path, notify, sig):
    proc, port, storage = start(procs, chartroom_bin, tmp_path, notify, grace="10s")
    body = make_chart("slow", "1.0.0", padding=64 * 1024)
    up = SlowUpload(port, body, chunks=12, pause=0.15)  # ~1.7 s on the wire
    up.start()
    time.sleep(0.2)  # the request is being read
    t0 = time.monotonic()
    proc.signal(sig)
    notify.wait_for(lambda m: m.fields.get("STOPPING") == "1", timeout=5)
    time.sleep(0.1)
    assert refused(port), "no new connections once stopping"
    status, resp = up.finish()
    assert status == 201, (status, resp, proc.log())
    rc = proc.wait(10)
    elapsed = time.monotonic() - t0
    assert rc == 0, proc.log()
    assert elapsed < 10, elapsed
    assert (storage / "slow-1.0.0.tgz").read_bytes() == body
    # The state file written on exit knows the upload.
    state = json.loads((storage / "chartroom-state.json").read_text())
    assert "slow-1.0.0.tgz" in json.dumps(state)
    last = [m for m in notify.snapshot() if m.raw != "WATCHDOG=1"][-1]
    assert last.fields.get("STOPPING") == "1" and last.pid == proc.pid


def test_second_signal_exits_at_once(procs, chartroom_bin, tmp_path, notify):
    proc, port, storage = start(procs, chartroom_bin, tmp_path, notify, grace="30s")
    up = SlowUpload(port, make_chart("slow", "1.0.0", padding=16 * 1024), chunks=20, pause=0.5)
    up.start()
    time.sleep(0.2)
    proc.signal(signal.SIGTERM)
    notify.wait_for(lambda m: m.fields.get("STOPPING") == "1", timeout=5)
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    rc = proc.wait(5)
    assert time.monotonic() - t0 < 1.0
    assert rc != 0, "an interrupted shutdown is not a clean exit"
    assert "second signal" in proc.log()
    up.sock.close()
    assert not (storage / "slow-1.0.0.tgz").exists()


def test_grace_period_bounds_the_wait(procs, chartroom_bin, tmp_path, notify):
    proc, port, storage = start(procs, chartroom_bin, tmp_path, notify, grace="1s")
    up = SlowUpload(port, make_chart("slow", "1.0.0", padding=16 * 1024), chunks=20, pause=0.5)
    up.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    rc = proc.wait(10)
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 2.0, elapsed
    assert rc == 0, proc.log()
    assert "grace period over" in proc.log()
    up.sock.close()


def test_idle_keepalive_connections_do_not_delay_exit(procs, chartroom_bin, tmp_path, notify):
    proc, port, storage = start(procs, chartroom_bin, tmp_path, notify, grace="30s")
    sessions = [requests.Session() for _ in range(3)]
    for s in sessions:
        assert s.get(f"http://127.0.0.1:{port}/index.yaml", timeout=5).status_code == 200
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    assert proc.wait(5) == 0
    assert time.monotonic() - t0 < 1.0
    for s in sessions:
        s.close()
