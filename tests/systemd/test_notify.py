"""sd_notify: the exact messages chartroom sends to NOTIFY_SOCKET for start, reload, failed
reload and stop, MONOTONIC_USEC with RELOADING=1, and WATCHDOG=1 at half of WATCHDOG_USEC."""

from __future__ import annotations

import signal
import statistics
import time

import requests

from conftest import free_port, monotonic_usec, seed, wait_http, write_config

WATCHDOG_USEC = 1_000_000  # pets expected every 0.5 s


def start(procs, chartroom_bin, tmp_path, notify, watchdog_pid: str | None = "$$",
          watchdog_usec: int | None = WATCHDOG_USEC):
    a = tmp_path / "A"
    seed(a, [("alpha", "1.0.0"), ("alpha", "1.1.0"), ("beta", "0.1.0")])
    config = write_config(tmp_path / "chartroom.yaml", a)
    port = free_port()
    # Like systemd: WATCHDOG_PID is the service's own PID (a shell that execs keeps it).
    env = ""
    if watchdog_usec is not None:
        env += f"WATCHDOG_USEC={watchdog_usec} "
    if watchdog_pid is not None:
        env += f"WATCHDOG_PID={watchdog_pid} "
    argv = ["sh", "-c", f'{env}exec "$0" "$@"', str(chartroom_bin), "--config", str(config),
            "--port", str(port)]
    proc = procs.start(argv, {"NOTIFY_SOCKET": notify.path}, name="notify")
    return proc, config, a, f"http://127.0.0.1:{port}"


def keys(m) -> list[str]:
    return [line.split("=", 1)[0] for line in m.raw.split("\n") if line]


def test_message_sequence(procs, chartroom_bin, tmp_path, notify):
    proc, config, a, base = start(procs, chartroom_bin, tmp_path, notify)

    # Start: READY=1 only once the index is loaded and the socket accepts.
    i, ready = notify.wait_ready()
    r = requests.get(base + "/index.yaml", timeout=5)  # no retry: it must answer right away
    assert r.status_code == 200 and "alpha" in r.text

    # Reload.
    before = monotonic_usec()
    proc.signal(signal.SIGHUP)
    j, reloading = notify.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=i + 1)
    k, reloaded = notify.wait_ready(after=j + 1)
    usec = int(reloading.fields["MONOTONIC_USEC"])
    assert before <= usec <= reloading.at, (before, usec, reloading.at)

    # Failed reload: a syntactically broken file.
    config.write_text("storage:\n  local: [unclosed\n")
    before = monotonic_usec()
    proc.signal(signal.SIGHUP)
    m, reloading2 = notify.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=k + 1)
    n, failed = notify.wait_ready(after=m + 1)
    assert before <= int(reloading2.fields["MONOTONIC_USEC"]) <= reloading2.at
    assert requests.get(base + "/index.yaml", timeout=5).status_code == 200

    # Stop.
    proc.signal(signal.SIGTERM)
    assert proc.wait(10) == 0, proc.log()
    time.sleep(0.1)  # let the reader thread take the last datagram

    msgs = notify.snapshot()
    assert {m.pid for m in msgs} == {proc.pid}, "every message comes from the main PID"
    seq = [m for m in msgs if m.raw != "WATCHDOG=1"]
    assert [keys(m) for m in seq] == [
        ["STATUS"],
        ["READY", "STATUS"],
        ["RELOADING", "MONOTONIC_USEC", "STATUS"],
        ["READY", "STATUS"],
        ["RELOADING", "MONOTONIC_USEC", "STATUS"],
        ["READY", "STATUS"],
        ["STOPPING", "STATUS"],
    ], seq
    status = [m.fields["STATUS"] for m in seq]
    assert status[0] == f"loading index from local:{a}"
    assert status[1] == "serving 3 chart versions of 2 charts in 1 repositories"
    assert status[2] == "reloading configuration"
    assert status[3] == "serving 3 chart versions of 2 charts in 1 repositories"
    assert status[5].startswith("reload failed: "), status[5]
    assert str(config) in status[5] and status[5].endswith(
        "; serving 3 chart versions of 2 charts in 1 repositories"), status[5]
    assert status[6] == "stopping"


def test_watchdog_interval(procs, chartroom_bin, tmp_path, notify):
    proc, config, a, base = start(procs, chartroom_bin, tmp_path, notify)
    i, _ = notify.wait_ready()
    t0 = time.monotonic()
    reloaded = False
    # Keep the server busy meanwhile, and reload once: neither may delay the pets.
    while time.monotonic() - t0 < 3.2:
        requests.get(base + "/index.yaml", timeout=5)
        if time.monotonic() - t0 > 1.5 and not reloaded:
            proc.signal(signal.SIGHUP)
            reloaded = True
        time.sleep(0.01)
    assert proc.stop() == 0
    pets = [m.at for m in notify.snapshot() if m.raw == "WATCHDOG=1"]
    gaps = [(b - a) / 1e6 for a, b in zip(pets, pets[1:])]
    assert len(pets) >= 6, pets
    assert 0.45 <= statistics.median(gaps) <= 0.55, gaps
    # Never near the timeout systemd would act on (1 s).
    assert max(gaps) < 0.8, gaps


def test_no_watchdog_unless_asked(procs, chartroom_bin, tmp_path, notify):
    # WATCHDOG_PID names another process: the watchdog is not ours.
    proc, *_ = start(procs, chartroom_bin, tmp_path, notify, watchdog_pid="1", watchdog_usec=200_000)
    notify.wait_ready()
    time.sleep(0.5)
    assert proc.stop() == 0
    assert not [m for m in notify.snapshot() if m.raw == "WATCHDOG=1"]


def test_no_notify_socket_no_messages(procs, chartroom_bin, tmp_path, notify):
    # Without NOTIFY_SOCKET nothing is sent (and nothing fails).
    a = tmp_path / "A"
    config = write_config(tmp_path / "chartroom.yaml", a)
    port = free_port()
    proc = procs.start([str(chartroom_bin), "--config", str(config), "--port", str(port)],
                       {"WATCHDOG_USEC": "200000"}, name="plain")
    wait_http(f"http://127.0.0.1:{port}", proc)
    proc.signal(signal.SIGHUP)
    time.sleep(0.3)
    assert proc.stop() == 0
    assert notify.snapshot() == []
    assert "NOTIFY_SOCKET" not in proc.log()
