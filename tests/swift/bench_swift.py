#!/usr/bin/env python3
"""Benchmark: chartroom (release binary) on a real one-node Swift holding N charts. Prints figures;
asserts only the request counts the design promises.

    python3 tests/swift/bench_swift.py [N]        (default 10000)

Steps: start Swift (swift-harness.sh, port SWIFT_BENCH_PORT, default 18560); PUT N synthetic
charts straight into container `charts` (16 threads); then, with the binary ($CHARTROOM_BIN or
target/release/chartroom):
  1. cold start without a state file: time until /health answers (the index is loaded by then:
     one listing per 10,000 names plus N downloads);
  2. cold start with the state file the first run wrote: one state-file GET plus the listing;
  3. refresh with nothing changed, and refresh after one new chart: timed as the latency of
     GET /index.yaml with --always-regenerate-chart-index (each request reconciles first) minus
     the same request without it; requests counted in Swift's proxy log (by transaction id).
"""
from __future__ import annotations

import ctypes
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
BIN = os.environ.get("CHARTROOM_BIN", str(ROOT / "target/release/chartroom"))
PORT = int(os.environ.get("SWIFT_BENCH_PORT", "18560"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_chart(name, version):
    chart_yaml = (f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: '{version}'\n"
                  f"description: Synthetic chart {name} for benchmarks\n"
                  f"keywords: [bench, synthetic]\nhome: https://example.org/{name}\n").encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path, data in ((f"{name}/Chart.yaml", chart_yaml),
                           (f"{name}/values.yaml", b"replicaCount: 1\nimage: nginx\n"),
                           (f"{name}/templates/deployment.yaml", b"kind: Deployment\n" * 20)):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def harness(*args, env=None):
    r = subprocess.run(["bash", str(HERE / "swift-harness.sh"), *args], capture_output=True,
                       text=True, env=env, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        sys.exit("swift-harness.sh %s failed:\n%s" % (args[0], r.stderr))
    return r.stdout


class Chartroom:
    def __init__(self, workdir, env, *args):
        self.port = free_port()
        self.log_path = Path(workdir) / ("chartroom-%d.log" % self.port)
        cmd = [BIN, "--listen-host", "127.0.0.1", "--port", str(self.port), "--storage",
               "openstack", "--storage-openstack-auth", "v1", "--storage-openstack-container",
               "charts", "--storage-openstack-prefix", "bench", *args]
        self.t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=dict(os.environ, **env))
        self.url = "http://127.0.0.1:%d" % self.port

    def wait_healthy(self, timeout=900):
        while time.monotonic() - self.t0 < timeout:
            if self.proc.poll() is not None:
                sys.exit("chartroom exited:\n" + self.log_path.read_text()[-3000:])
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return time.monotonic() - self.t0
            except requests.RequestException:
                pass
            time.sleep(0.02)
        sys.exit("chartroom not healthy in time")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class ProxyLog:
    """Client requests in Swift's proxy access log, counted by transaction id."""

    LINE = re.compile(r" (GET|HEAD|PUT|DELETE) (\S+) HTTP/\S+ \d+ .* (tx[0-9a-f-]+) ")

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def mark(self):
        self.offset = os.path.getsize(self.path)

    def since_mark(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
        seen = {}
        for line in text.splitlines():
            if "chartroom/" not in line:
                continue
            m = self.LINE.search(line)
            if m:
                seen[m.group(3)] = (m.group(1), m.group(2))
        out = {"listings": 0, "gets": 0, "heads": 0, "puts": 0}
        for method, path in seen.values():
            if "/charts" not in path:
                continue  # logins
            if method == "GET" and "%3F" in path.split("/charts", 1)[1][:3]:
                out["listings"] += 1
            elif method == "GET":
                out["gets"] += 1
            elif method == "HEAD":
                out["heads"] += 1
            elif method == "PUT":
                out["puts"] += 1
        return out


def median_latency(url, n=15):
    times = []
    for _ in range(n):
        t = time.monotonic()
        r = requests.get(url, timeout=600)
        times.append(time.monotonic() - t)
        assert r.status_code == 200, r.text[:300]
    times.sort()
    return times[len(times) // 2]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    if not os.access(BIN, os.X_OK):
        sys.exit("no chartroom binary at %s (cargo build --release, or set CHARTROOM_BIN)" % BIN)
    try:
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: reap Swift afterwards
    except Exception:
        pass
    work = Path(tempfile.mkdtemp(prefix="chartroom-swift-bench-", dir="/tmp"))
    servers = []
    try:
        t = time.monotonic()
        out = harness("start", str(work / "swift"), str(PORT))
        env = dict(re.findall(r"^export (\w+)=(\S*)$", out, re.M))
        print("swift started in %.1f s" % (time.monotonic() - t))
        login = requests.get(env["ST_AUTH"], headers={"X-Auth-User": env["ST_USER"],
                                                      "X-Auth-Key": env["ST_KEY"]}, timeout=30)
        token, storage = login.headers["X-Auth-Token"], login.headers["X-Storage-Url"]
        local = threading.local()

        def put(i):
            s = getattr(local, "s", None)
            if s is None:
                s = local.s = requests.Session()
            name = "chart%05d" % i
            r = s.put("%s/charts/bench/%s-1.0.0.tgz" % (storage, name),
                      data=make_chart(name, "1.0.0"), headers={"X-Auth-Token": token},
                      timeout=60)
            assert r.status_code == 201, r.text

        t = time.monotonic()
        with ThreadPoolExecutor(16) as ex:
            list(ex.map(put, range(n)))
        took = time.monotonic() - t
        print("stored %d charts in Swift in %.1f s (%.0f/s, 16 threads)" % (n, took, n / took))

        plog = ProxyLog(work / "swift/log/proxy.log")
        cr_env = {k: env[k] for k in ("ST_AUTH", "ST_USER", "ST_KEY")}

        # 1. Cold start, no state file.
        plog.mark()
        a = Chartroom(work, cr_env, "--cache-interval", "0")
        servers.append(a)
        cold = a.wait_healthy()
        idx = requests.get(a.url + "/index.yaml", timeout=600).text
        assert idx.count("chart%05d-1.0.0.tgz" % (n - 1)) == 1
        # The state file is written within a second or two of loading.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = requests.head("%s/charts/bench/chartroom-state.json" % storage,
                              headers={"X-Auth-Token": token}, timeout=30)
            if r.status_code == 200:
                break
            time.sleep(0.2)
        time.sleep(1)
        counts = plog.since_mark()
        print("cold start without state file: %.2f s to healthy; requests: %s" % (cold, counts))
        assert counts["listings"] == n // 10000 + 1, counts
        assert counts["gets"] == n + 1, counts  # every chart, and the missing state file
        a.stop()

        # 2. Cold start with the state file.
        plog.mark()
        b = Chartroom(work, cr_env, "--cache-interval", "0")
        servers.append(b)
        warm = b.wait_healthy()
        counts = plog.since_mark()
        print("cold start with state file: %.2f s to healthy; requests: %s" % (warm, counts))
        assert counts["gets"] == 1 and counts["listings"] == (n + 1) // 10000 + 1, counts

        # 3. Refresh cost and time.
        c = Chartroom(work, cr_env, "--cache-interval", "0", "--always-regenerate-chart-index")
        servers.append(c)
        c.wait_healthy()
        base = median_latency(b.url + "/index.yaml")
        plog.mark()
        regen = median_latency(c.url + "/index.yaml")
        counts = plog.since_mark()
        per = {k: v / 15 for k, v in counts.items()}
        print("GET /index.yaml: %.1f ms served from memory; %.1f ms with a refresh first "
              "=> unchanged refresh %.1f ms; requests per refresh: %s"
              % (base * 1e3, regen * 1e3, (regen - base) * 1e3, per))
        assert counts["gets"] == 0 and counts["listings"] == 15 * ((n + 1) // 10000 + 1), counts
        put(n)  # one new chart, written by someone else
        plog.mark()
        t = time.monotonic()
        r = requests.get(c.url + "/index.yaml", timeout=600)
        one = time.monotonic() - t
        counts = plog.since_mark()
        assert "chart%05d" % n in r.text
        print("refresh after one new chart: %.1f ms (with serving the index); requests: %s"
              % (one * 1e3, counts))
        assert counts["gets"] == 1, counts
        rss = int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/%d/status" % c.proc.pid).read_text())
                  .group(1))
        print("peak RSS of the always-regenerate instance: %.0f MiB" % (rss / 1024))
    finally:
        for s in servers:
            s.stop()
        harness("stop", str(work / "swift"))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
