"""Logging under systemd: with JOURNAL_STREAM naming stderr, lines carry syslog priority
prefixes and no timestamps (so `journalctl -p` works); JSON on request."""

from __future__ import annotations

import json
import re
import signal
import time

import requests

from conftest import free_port, seed, wait_http, write_config

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def run(procs, chartroom_bin, tmp_path, journal: bool, extra_env=None, args=()):
    a = tmp_path / "A"
    seed(a, [("aonly", "1.0.0")])
    config = write_config(tmp_path / "chartroom.yaml", a)
    port = free_port()
    proc = procs.start([str(chartroom_bin), "--config", str(config), "--port", str(port), *args],
                       extra_env, name="log", journal=journal)
    base = f"http://127.0.0.1:{port}"
    wait_http(base, proc)
    assert requests.get(base + "/index.yaml", timeout=5).status_code == 200  # <6>
    assert requests.get(base + "/charts/nope-1.0.0.tgz", timeout=5).status_code == 404  # <4>
    config.write_text("storage: [broken\n")
    proc.signal(signal.SIGHUP)  # reload failure: <3>
    deadline = time.monotonic() + 5
    while "reload failed" not in proc.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.stop() == 0
    return [line for line in proc.log().splitlines() if line]


def test_journal_lines(procs, chartroom_bin, tmp_path):
    lines = run(procs, chartroom_bin, tmp_path, journal=True)
    assert lines, "no output"
    for line in lines:
        assert re.match(r"^<[0-7]>\S", line), line
        assert not TIMESTAMP.search(line.split(" ", 1)[0]), line
    prio = {}
    for line in lines:
        prio.setdefault(line[1], []).append(line)
    assert any("ready" in l for l in prio["6"])
    assert any("status=404" in l for l in prio["4"]), lines
    assert any("reload failed" in l for l in prio["3"]), lines


def test_plain_lines_when_stderr_is_not_the_journal(procs, chartroom_bin, tmp_path):
    # JOURNAL_STREAM inherited but stderr redirected elsewhere: ordinary lines.
    lines = run(procs, chartroom_bin, tmp_path, journal=False,
                extra_env={"JOURNAL_STREAM": "8:12345"})
    for line in lines:
        assert TIMESTAMP.match(line) and not line.startswith("<"), line


def test_json_lines(procs, chartroom_bin, tmp_path):
    lines = run(procs, chartroom_bin, tmp_path, journal=False, args=["--log-json"])
    levels = set()
    for line in lines:
        obj = json.loads(line)
        assert {"time", "level", "msg"} <= obj.keys(), obj
        levels.add(obj["level"])
    assert {"info", "warn", "error"} <= levels


def test_json_lines_under_journal(procs, chartroom_bin, tmp_path):
    lines = run(procs, chartroom_bin, tmp_path, journal=True, args=["--log-json"])
    for line in lines:
        m = re.match(r"^<([0-7])>(\{.*\})$", line)
        assert m, line
        obj = json.loads(m.group(2))
        assert {"info": "6", "warn": "4", "error": "3"}[obj["level"]] == m.group(1)
