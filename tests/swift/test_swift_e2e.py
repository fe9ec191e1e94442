"""chartroom (the binary) on a real one-node Swift, end to end.

- a real Helm client adds, indexes and pulls from chartroom on Swift;
- two chartroom instances on one container (upload, out-of-band delete, concurrent uploads of
  different charts and of the same version, the shared state file);
- Swift's proxy stopped and started again mid-test (stale index, cached downloads, 503 uploads,
  /health, recovery without restart), and frozen (an upload answered 503 within
  storage.requesttimeout, the next at once, uploads working again once it wakes);
- tempauth tokens of 4 s under steady traffic;
- SIGHUP re-reads the key file; start-up errors.

Run:  CHARTROOM_BIN=target/debug/chartroom python3 -m pytest -q tests/swift/test_swift_e2e.py
Needs Swift installed (`sudo tests/swift/swift-harness.sh install`) and the e2e Python packages
(tests/e2e/requirements*.txt). Ports: SWIFT_E2E_PORT (default 18520) .. +4 for the main Swift,
+10 .. +14 for the one with 4-second tokens; chartroom takes free ports.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

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
from test_harness import installed, running_swift  # noqa: E402,F401  (fixture + helper)

E2E_PORT = int(os.environ.get("SWIFT_E2E_PORT", "18520"))


@pytest.fixture(scope="module")
def swift(installed, tmp_path_factory):  # noqa: F811
    with running_swift(tmp_path_factory, "swift-e2e", E2E_PORT, 86400) as s:
        yield s


@pytest.fixture(scope="module")
def short_swift(installed, tmp_path_factory):  # noqa: F811
    with running_swift(tmp_path_factory, "swift-e2e-short", E2E_PORT + 10, 4) as s:
        yield s


@pytest.fixture(scope="module")
def helm_charts(tmp_path_factory):
    return package_charts(CHART_SOURCES, tmp_path_factory.mktemp("charts"))


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def make_chart(name, version, description="e2e"):
    chart_yaml = ("apiVersion: v2\nname: %s\nversion: %s\ndescription: %s\n"
                  % (name, version, description)).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for path, data in ((name + "/Chart.yaml", chart_yaml),
                           (name + "/values.yaml", b"replicas: 1\n")):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def start_on_swift(pool, swift, prefix, *args, env=None, wait=True):
    """chartroom on Swift container `charts`, objects under `prefix`, v1 auth from ST_*."""
    e = {"ST_AUTH": swift.auth_url, "ST_USER": swift.user, "ST_KEY": swift.key}
    e.update(env or {})
    port = free_port()
    return pool.start(
        ["--port", str(port), "--storage", "openstack", "--storage-openstack-auth", "v1",
         "--storage-openstack-container", swift.container,
         "--storage-openstack-prefix", prefix, *args],
        env=e, standard_flags=False, port=port, wait=wait)


def started(pool, swift, prefix, *args, env=None):
    return start_on_swift(pool, swift, prefix, *args, env=env, wait=True)


def swift_names(swift, prefix):
    r = swift.req("GET", swift.url() + "?format=json&prefix=" + prefix + "/")
    assert r.status_code == 200, r.text
    return {o["name"][len(prefix) + 1:]: o for o in r.json()}


def digests(server):
    out = {}
    for name, versions in (fetch_index(server).get("entries") or {}).items():
        for v in versions:
            out["%s-%s" % (name, v["version"])] = v["digest"]
    return out


def wait_until(what, pred, timeout=15.0, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within %.0fs: %s" % (timeout, what))
        time.sleep(step)


# ---------------------------------------------------------------------------------------------
# Helm
# ---------------------------------------------------------------------------------------------
def test_helm_pulls_from_chartroom_on_swift(swift, pool, helm_charts, tmp_path):
    prefix = unique("helm")
    server = started(pool, swift, prefix)
    for i, chart in enumerate(helm_charts.charts):
        r = upload(server, chart.data, mode="raw" if i % 2 == 0 else "multipart",
                   filename=chart.filename)
        assert r.status_code == 201, r.text
    wait_for_index(server, helm_charts.versions())
    # The packages are in Swift, whole, under the prefix.
    stored = swift_names(swift, prefix)
    for chart in helm_charts.charts:
        obj = stored[chart.filename]
        assert obj["bytes"] == len(chart.data)
        assert obj["hash"] == hashlib.md5(chart.data).hexdigest()
    home = HelmHome(tmp_path / "helm")
    [idx] = run_helm("helm_python", [{"op": "repo_index", "url": server.url}], home)
    helm_ok(idx, "helm repo index download")
    chart = helm_charts.charts[0]
    dest = tmp_path / "pull"
    dest.mkdir()
    [pulled] = run_helm("helm_python", [{"op": "pull", "chart": chart.name, "repo_url": server.url,
                                         "version": chart.version, "destination": str(dest)}],
                        HelmHome(tmp_path / "helm2"))
    helm_ok(pulled, "helm pull")
    assert (dest / chart.filename).read_bytes() == chart.data
    # Direct download, HEAD, and a missing one.
    r = server.get("/charts/" + chart.filename)
    assert r.status_code == 200 and r.content == chart.data
    assert server.get("/charts/nope-1.0.0.tgz").status_code == 404
    # A restart starts from the state file and lists Swift once.
    server.stop()
    again = started(pool, swift, prefix)
    wait_for_index(again, helm_charts.versions())
    state = swift.req("GET", swift.url(prefix + "/chartroom-state.json"))
    assert state.status_code == 200
    assert json.loads(state.content)["format"] == "chartroom-state/3"


# ---------------------------------------------------------------------------------------------
# Two instances on one container
# ---------------------------------------------------------------------------------------------
def test_two_instances_share_a_container(swift, pool):
    prefix = unique("pair")
    a = started(pool, swift, prefix, "--cache-interval", "1s")
    b = started(pool, swift, prefix, "--cache-interval", "1s")
    # Uploaded to A: in B's index within B's cache interval.
    assert upload(a, make_chart("one", "1.0.0")).status_code == 201
    wait_for_index(b, {"one": ["1.0.0"]}, timeout=5)
    # Deleted directly in Swift: leaves both indexes within the interval.
    r = swift.req("DELETE", swift.url(prefix + "/one-1.0.0.tgz"))
    assert r.status_code == 204
    wait_for_index(a, {}, timeout=5)
    wait_for_index(b, {}, timeout=5)
    # Concurrent uploads of different charts to A and B: none lost.
    jobs = [(a if i % 2 == 0 else b, make_chart("c%d" % (i % 4), "1.%d.0" % i)) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        codes = list(ex.map(lambda j: upload(j[0], j[1]).status_code, jobs))
    assert codes == [201] * 16
    want = {}
    for i in range(16):
        want.setdefault("c%d" % (i % 4), []).append("1.%d.0" % i)
    wait_for_index(a, want, timeout=5)
    wait_for_index(b, want, timeout=5)
    # The same version to both at once: one stored whole, both indexes agree on its digest.
    for round_ in range(4):
        version = "9.0.%d" % round_
        pa = make_chart("same", version, "from A")
        pb = make_chart("same", version, "from B")
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            ra, rb = ex.map(lambda j: upload(*j), [(a, pa), (b, pb)])
        assert {ra.status_code, rb.status_code} <= {201, 409}, (ra.text, rb.text)
        assert 201 in (ra.status_code, rb.status_code)
        stored = swift.req("GET", swift.url("%s/same-%s.tgz" % (prefix, version))).content
        assert stored in (pa, pb)
        digest = hashlib.sha256(stored).hexdigest()
        key = "same-" + version
        wait_until("both indexes show the stored bytes of " + key,
                   lambda: digests(a).get(key) == digest and digests(b).get(key) == digest,
                   timeout=5)
    # The state file both write is always one whole JSON document.
    for _ in range(5):
        r = swift.req("GET", swift.url(prefix + "/chartroom-state.json"))
        assert r.status_code == 200
        doc = json.loads(r.content)
        assert doc["format"] == "chartroom-state/3"
        time.sleep(0.3)
    assert digests(a) == digests(b)


# ---------------------------------------------------------------------------------------------
# Swift down, and back
# ---------------------------------------------------------------------------------------------
def test_swift_down_then_back(swift, pool):
    prefix = unique("down")
    server = started(pool, swift, prefix, "--cache-interval", "1s")
    pkg = make_chart("steady", "1.0.0")
    assert upload(server, pkg).status_code == 201
    assert server.get("/charts/steady-1.0.0.tgz").content == pkg
    index_before = server.get("/index.yaml").text
    swift.harness("stop-server", "proxy")
    try:
        # /health says what is wrong (after the next refresh).
        def outage():
            r = server.get("/health")
            return r.json() if r.status_code == 503 else None
        body = wait_until("/health reports the outage", outage, timeout=10)
        assert body["healthy"] is False and "refused" in body["error"], body
        # The last good index and cached downloads still work.
        r = server.get("/index.yaml")
        assert r.status_code == 200
        assert yaml.safe_load(r.text)["entries"] == yaml.safe_load(index_before)["entries"]
        r = server.get("/charts/steady-1.0.0.tgz")
        assert r.status_code == 200 and r.content == pkg
        # Uploads fail with 503 and a JSON error.
        t = time.monotonic()
        r = upload(server, make_chart("during", "1.0.0"))
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "storage unavailable"}
        assert time.monotonic() - t < 10
        # The upload may come before the next refresh (Swift known down: no retries to wait).
        wait_until("a refresh fails and says so",
                   lambda: "serving the last good index" in server.log(), timeout=10)
    finally:
        swift.harness("start-server", "proxy")
    # Back by itself: healthy again, uploads work; the failed upload left nothing behind.
    wait_until("/health is 200 again", lambda: server.get("/health").status_code == 200,
               timeout=15)
    assert "during-1.0.0.tgz" not in swift_names(swift, prefix)
    assert upload(server, make_chart("after", "1.0.0")).status_code == 201
    wait_for_index(server, {"steady": ["1.0.0"], "after": ["1.0.0"]})
    assert server.proc.poll() is None


def test_hung_swift_does_not_hold_up_reads(swift, pool):
    """Swift's proxy frozen (it accepts connections and never answers): a refresh is then stuck
    until its timeouts run out, but index reads are served at once from the index as it
    stands, and once a call has failed, cached downloads too; an upload ends with 503."""
    prefix = unique("hung")
    server = started(pool, swift, prefix, "--cache-interval", "1s",
                     "--storage-openstack-timeout", "4s", "--storage-openstack-retries", "1")
    pkg = make_chart("frozen", "1.0.0")
    assert upload(server, pkg).status_code == 201
    assert server.get("/charts/frozen-1.0.0.tgz").content == pkg
    index_before = server.get("/index.yaml").text
    proxy_pid = int((swift.dir / "run" / "proxy.pid").read_text())
    os.kill(proxy_pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)  # the next refresh has started and hangs (4 s, twice, plus backoff)
        for path in ("/index.yaml", "/api/charts", "/api/charts/frozen/1.0.0", "/health"):
            t = time.monotonic()
            r = server.get(path)
            took = time.monotonic() - t
            # /health may already report the outage (503) if a call has timed out.
            assert r.status_code == 200 or path == "/health", (path, r.status_code, r.text)
            assert took < 2, "%s took %.1fs while a refresh was stuck" % (path, took)
        assert server.get("/index.yaml").text == index_before
        t = time.monotonic()
        late = make_chart("frozen", "2.0.0")
        r = upload(server, late)
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "storage unavailable"}
        assert time.monotonic() - t < 20
        body = wait_until("/health reports the hung proxy",
                          lambda: (lambda r: r.json() if r.status_code == 503 else None)(
                              server.get("/health")), timeout=20)
        assert body["healthy"] is False, body
        t = time.monotonic()
        r = server.get("/charts/frozen-1.0.0.tgz")
        assert r.status_code == 200 and r.content == pkg
        assert time.monotonic() - t < 2, "a cached download waited for the hung proxy"
    finally:
        os.kill(proxy_pid, signal.SIGCONT)
    wait_until("/health is 200 again", lambda: server.get("/health").status_code == 200,
               timeout=30)
    assert upload(server, make_chart("frozen", "3.0.0")).status_code == 201
    # The PUT that timed out sat in the frozen proxy's socket and may have been carried out
    # once it woke: then the object is whole, and the index lists it (as it would any object
    # written to the container), else there is no trace of it.
    names = swift_names(swift, prefix)
    versions = ["3.0.0", "1.0.0"]
    if "frozen-2.0.0.tgz" in names:
        assert swift.req("GET", swift.url(prefix + "/frozen-2.0.0.tgz")).content == late
        versions.append("2.0.0")
    wait_for_index(server, {"frozen": versions})


def test_upload_to_a_frozen_swift_is_answered_within_the_deadline(swift, pool):
    """Swift's proxy frozen: an upload is answered 503 within storage.requesttimeout (default
    30 s, across all tries; before, 3 tries of 20 s and more), the next one at once (Swift is
    known not to answer), /health says so, and after the proxy wakes uploads work again by
    themselves (a call goes out again 5 s after the last silence)."""
    prefix = unique("deadline")
    # No refresh: the upload itself is the first call to meet the frozen proxy.
    server = started(pool, swift, prefix, "--cache-interval", "0")
    pkg = make_chart("dl", "1.0.0")
    assert upload(server, pkg).status_code == 201
    proxy_pid = int((swift.dir / "run" / "proxy.pid").read_text())

    def post(data):
        t = time.monotonic()
        r = server.post("/api/charts", data=data, timeout=120,
                        headers={"Content-Type": "application/octet-stream"})
        return r, time.monotonic() - t

    os.kill(proxy_pid, signal.SIGSTOP)
    try:
        r, took = post(make_chart("dl", "2.0.0"))
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "storage unavailable"}
        assert took < 30 + 5, "the first upload took %.1fs (deadline 30 s)" % took
        assert "storage.requesttimeout" in server.log(), server.log()
        r, took = post(make_chart("dl", "3.0.0"))
        assert r.status_code == 503, r.text
        assert took < 2, "the second upload waited %.1fs for a Swift known to be down" % took
        h = server.get("/health")
        assert h.status_code == 503 and h.json()["healthy"] is False, h.text
        # Reads of what is in memory are not held up either.
        assert server.get("/index.yaml").status_code == 200
        r = server.get("/charts/dl-1.0.0.tgz")
        assert r.status_code == 200 and r.content == pkg
    finally:
        os.kill(proxy_pid, signal.SIGCONT)
    # Back: within the 5 s pause and one call, uploads work again (no restart, no refresh).
    n = [0]

    def uploaded():
        n[0] += 1
        r, _ = post(make_chart("dl", "4.0.%d" % n[0]))
        return r.status_code == 201
    wait_until("uploads work again", uploaded, timeout=30, step=0.5)
    assert server.get("/health").status_code == 200


# ---------------------------------------------------------------------------------------------
# A slow first load reports its progress to systemd
# ---------------------------------------------------------------------------------------------
class NotifySocket:
    """A datagram socket to pass as NOTIFY_SOCKET; collects what the daemon sends."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="chartroom-notify-", dir="/tmp")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.lines = []

    def collect(self, seconds, until=None):
        """Receives for `seconds`, or until a line equal to `until` has come."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and until not in self.lines:
            try:
                self.lines += self.sock.recv(4096).decode().split("\n")
            except socket.timeout:
                pass

    def close(self):
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@contextlib.contextmanager
def first_load_waiting_on_swift(swift, pool, prefix):
    """chartroom started on three charts with no state file while Swift's object server is
    frozen: its first load lists the packages but cannot download them. Yields the server, its
    NOTIFY_SOCKET, and a function that wakes the object server."""
    writer = started(pool, swift, prefix, "--disable-statefiles")
    for i in range(3):
        assert upload(writer, make_chart("slow%d" % i, "1.0.0")).status_code == 201
    writer.stop()
    notify = NotifySocket()
    obj_pid = int((swift.dir / "run" / "object.pid").read_text())
    os.kill(obj_pid, signal.SIGSTOP)
    try:
        server = start_on_swift(pool, swift, prefix, "--disable-statefiles",
                                env={"NOTIFY_SOCKET": notify.path}, wait=False)
        yield server, notify, lambda: os.kill(obj_pid, signal.SIGCONT)
    finally:
        os.kill(obj_pid, signal.SIGCONT)
        notify.close()


def test_slow_first_load_reports_progress(swift, pool):
    """Until the packages can be downloaded, STATUS= says how many of how many the first load
    has read, once a second; READY=1 comes only after the load ends."""
    with first_load_waiting_on_swift(swift, pool, unique("progress")) as (server, notify, thaw):
        notify.collect(3.5)
        thaw()
        notify.collect(30, until="READY=1")
    lines = notify.lines
    progress = [line for line in lines
                if line.startswith("STATUS=loading index from openstack:")
                and line.endswith(" of 3 charts")]
    assert progress, (lines, server.log())
    assert all(": read 0 of 3 charts" in p for p in progress), progress
    assert "READY=1" in lines, (lines, server.log())
    assert all(lines.index(p) < lines.index("READY=1") for p in progress), lines
    assert sorted((fetch_index(server).get("entries") or {})) == ["slow0", "slow1", "slow2"]


def test_stop_during_first_load(swift, pool):
    """SIGTERM while the first load waits on Swift: STOPPING=1, no READY=1, exit 0 at once."""
    with first_load_waiting_on_swift(swift, pool, unique("stopload")) as (server, notify, _):
        notify.collect(10, until="STATUS=loading index from openstack:%s: read 0 of 3 charts"
                       % swift.container)
        t = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=10) == 0, server.log()
        took = time.monotonic() - t
        notify.collect(1)
    assert "STOPPING=1" in notify.lines, (notify.lines, server.log())
    assert "READY=1" not in notify.lines, notify.lines
    assert took < 5, "stopping took %.1fs" % took
    assert "stopped while loading the index" in server.log()


# ---------------------------------------------------------------------------------------------
# Short tokens
# ---------------------------------------------------------------------------------------------
def test_tokens_expiring_under_traffic(short_swift, pool):
    prefix = unique("tokens")
    server = started(pool, short_swift, prefix, "--cache-interval", "1s")
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 12:
        pkg = make_chart("tok", "1.0.%d" % n)
        r = upload(server, pkg)
        assert r.status_code == 201, "after %.1fs: %s" % (time.monotonic() - t0, r.text)
        r = server.get("/charts/tok-1.0.%d.tgz" % n)
        assert r.status_code == 200 and r.content == pkg
        n += 1
        time.sleep(0.4)
    wait_for_index(server, {"tok": ["1.0.%d" % i for i in range(n)]})
    assert server.get("/health").status_code == 200
    assert "ERROR" not in server.log().replace("ERROR request method=POST", "")


# ---------------------------------------------------------------------------------------------
# Key file and SIGHUP; start-up errors
# ---------------------------------------------------------------------------------------------
def test_sighup_rereads_the_key_file(swift, pool, tmp_path):
    keyfile = tmp_path / "st_key"
    keyfile.write_text(swift.key + "\n")
    server = started(pool, swift, unique("hup"), "--storage-openstack-keyfile", str(keyfile),
                     env={"ST_KEY": ""})
    assert upload(server, make_chart("k", "1.0.0")).status_code == 201
    keyfile.write_text("not-the-key\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_until("reload fails on the wrong key", lambda: "reload failed" in server.log())
    assert "credentials rejected" in server.log()
    assert server.get("/index.yaml").status_code == 200
    keyfile.write_text(swift.key + "\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_until("reload succeeds", lambda: "reload complete" in server.log())
    assert upload(server, make_chart("k", "2.0.0")).status_code == 201


@pytest.mark.parametrize("env,args,message", [
    ({"ST_KEY": ""}, [], "missing environment variable ST_KEY"),
    ({}, ["--storage-openstack-container", "no-such-container"], "container no-such-container not found"),
    ({"ST_KEY": "wrong"}, [], "credentials rejected"),
])
def test_startup_errors(swift, pool, env, args, message):
    server = start_on_swift(pool, swift, unique("bad"), *args, env=env, wait=False)
    rc = server.proc.wait(timeout=20)
    assert rc != 0
    assert message in server.log(), server.log()
