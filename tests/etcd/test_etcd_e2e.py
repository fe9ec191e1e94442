"""chartroom (the binary) on etcd (Debian's `etcd`, started on loopback), end to end:

- a real Helm client indexes and pulls charts uploaded to chartroom on etcd, byte for byte
  (and the values read straight from etcd's gateway are those bytes); a restart comes back
  with the same charts;
- two chartroom instances on one prefix: an upload to one shows up on the other, an object
  deleted directly in etcd (its two keys, through the gateway; deletes through the API
  disabled) leaves both;
- etcd frozen (SIGSTOP): the index and a recently read package are still served, an upload is
  answered 503 within storage.requesttimeout, the next at once, and uploads work again once it
  wakes, without a restart;
- a package above storage.etcd.maxrequestbytes: 413 with a message naming the limit.

Run:  CHARTROOM_BIN=target/release/chartroom python3 -m pytest -q tests/etcd
Needs `etcd` on PATH (Debian's etcd-server; scripts/install-test-deps) and the e2e Python
packages (tests/e2e/requirements*.txt). Ports: ETCD_E2E_PORT (default 20100) upwards.
"""
from __future__ import annotations

import base64
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

BASE_PORT = int(os.environ.get("ETCD_E2E_PORT", "20100"))


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


_next_port = [BASE_PORT]


def pick_port() -> int:
    while True:
        p = _next_port[0]
        _next_port[0] += 1
        assert p < BASE_PORT + 200, "no free port from %d" % BASE_PORT
        if port_free(p):
            return p


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Etcd:
    """`etcd` with client and peer URLs on loopback, data in `workdir`; stopped by PID."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.port = pick_port()
        self.peer_port = pick_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def start(self) -> None:
        peer = "http://127.0.0.1:%d" % self.peer_port
        log = open(self.dir / "etcd.log", "ab")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "chartroom-e2e", "--data-dir", str(self.dir / "data"),
             "--listen-client-urls", self.endpoint, "--advertise-client-urls", self.endpoint,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "chartroom-e2e=" + peer, "--log-level", "warn",
             "--logger", "zap"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "etcd exited:\n" + self.log()
            try:
                r = self.call("kv/range", {"key": b64(b"/")})
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("etcd not ready in 60 s:\n" + self.log())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return (self.dir / "etcd.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def call(self, op: str, body: dict) -> requests.Response:
        """A gateway call of our own (an operator's tool, not chartroom)."""
        return requests.post(self.endpoint + "/v3/" + op, json=body, timeout=10)

    def value(self, key: str) -> bytes | None:
        r = self.call("kv/range", {"key": b64(key.encode())})
        assert r.status_code == 200, r.text
        kvs = r.json().get("kvs") or []
        return base64.b64decode(kvs[0].get("value", "")) if kvs else None

    def delete(self, key: str) -> int:
        r = self.call("kv/deleterange", {"key": b64(key.encode())})
        assert r.status_code == 200, r.text
        return int(r.json().get("deleted", "0"))


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    if shutil.which("etcd") is None:
        pytest.fail("`etcd` not found: apt-get install etcd-server (scripts/install-test-deps)")
    e = Etcd(tmp_path_factory.mktemp("etcd"))
    try:
        e.start()
        yield e
    finally:
        e.stop()


def on_etcd(pool, etcd, prefix, *args, wait=True):
    port = free_port()
    return pool.start(
        ["--port", str(port), "--storage", "etcd", "--storage-etcd-endpoint", etcd.endpoint,
         "--storage-etcd-prefix", prefix, *args],
        standard_flags=False, port=port, wait=wait)


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def wait_until(what, pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "not within %.0fs: %s" % (timeout, what)
        time.sleep(0.2)


def test_helm_pulls_from_chartroom_on_etcd(etcd, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("helm")
    server = on_etcd(pool, etcd, prefix)
    for i, chart in enumerate(charts.charts):
        r = upload(server, chart.data, mode="raw" if i % 2 == 0 else "multipart",
                   filename=chart.filename)
        assert r.status_code == 201, r.text
    wait_for_index(server, charts.versions())
    # The packages are in etcd, whole, under /<prefix>/<file> (read straight from etcd).
    for chart in charts.charts:
        assert etcd.value("/%s/%s" % (prefix, chart.filename)) == chart.data, chart.filename
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
    # A restart comes back with the same charts.
    server.stop()
    again = on_etcd(pool, etcd, prefix)
    wait_for_index(again, charts.versions())


def test_two_instances_share_a_prefix(etcd, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("two")
    flags = ("--cache-interval", "1s", "--disable-delete")
    a = on_etcd(pool, etcd, prefix, *flags)
    b = on_etcd(pool, etcd, prefix, *flags)
    first, second = charts.charts[0], charts.charts[1]
    assert upload(a, first.data).status_code == 201
    assert upload(b, second.data).status_code == 201
    both = {first.name: [first.version], second.name: [second.version]}
    if first.name == second.name:
        both = {first.name: [first.version, second.version]}
    wait_for_index(a, both, timeout=10)
    wait_for_index(b, both, timeout=10)
    # Deletes through the API are off; the operator deletes the two keys in etcd itself.
    r = requests.delete(a.url + "/api/charts/%s/%s" % (first.name, first.version), timeout=10)
    assert r.status_code == 404
    assert etcd.delete("/%s/.chartroom-meta/%s" % (prefix, first.filename)) == 1
    assert etcd.delete("/%s/%s" % (prefix, first.filename)) == 1

    def gone(server):
        entries = fetch_index(server).get("entries") or {}
        return first.version not in [v["version"] for v in entries.get(first.name, [])]
    wait_until("A drops the deleted chart", lambda: gone(a), timeout=10)
    wait_until("B drops the deleted chart", lambda: gone(b), timeout=10)
    assert a.get("/charts/" + first.filename).status_code == 404


def test_upload_to_a_frozen_etcd_is_answered_within_the_deadline(etcd, pool, tmp_path):
    """etcd frozen (SIGSTOP: connections are accepted and never answered): the index and a
    recently read package are still served, an upload is answered 503 within
    storage.requesttimeout (10 s here, across all tries), the next one at once, /health says
    what is wrong; once it wakes, uploads work again without a restart."""
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    first, second = charts.charts[0], charts.charts[1]
    prefix = unique("frozen")
    server = on_etcd(pool, etcd, prefix, "--cache-interval", "0",
                     "--storage-request-timeout", "10s")
    assert upload(server, first.data).status_code == 201
    assert server.get("/charts/" + first.filename).content == first.data

    def post(data):
        t = time.monotonic()
        r = server.post("/api/charts", data=data, timeout=120,
                        headers={"Content-Type": "application/octet-stream"})
        return r, time.monotonic() - t

    etcd.proc.send_signal(signal.SIGSTOP)
    try:
        r, took = post(second.data)
        assert r.status_code == 503, r.text
        assert r.json() == {"error": "storage unavailable"}
        assert took < 10 + 5, "the first upload took %.1fs (deadline 10 s)" % took
        r, took = post(second.data)
        assert r.status_code == 503, r.text
        assert took < 2, "the second upload waited %.1fs for a service known to be down" % took
        h = server.get("/health")
        assert h.status_code == 503 and h.json()["healthy"] is False, h.text
        assert h.json()["storage"].startswith("etcd:"), h.text
        idx = server.get("/index.yaml")
        assert idx.status_code == 200 and first.version in idx.text
        r = server.get("/charts/" + first.filename)
        assert r.status_code == 200 and r.content == first.data
    finally:
        etcd.proc.send_signal(signal.SIGCONT)

    answers = []

    def uploaded():
        r, _ = post(second.data)
        answers.append(r.status_code)
        # 409: a write that waited in the frozen server's socket may have been carried out.
        return r.status_code in (201, 409)
    wait_until("uploads work again", uploaded, timeout=30)
    assert server.get("/health").status_code == 200
    if answers[-1] == 201:
        wait_for_index(server, {first.name: [first.version], second.name: [second.version]}
                       if first.name != second.name
                       else {first.name: [first.version, second.version]})
    else:
        # The write that waited in the frozen socket stored it: create-if-absent answers 409
        # and, with --cache-interval 0, this instance lists it only after a refresh.
        assert first.version in server.get("/index.yaml").text


def test_a_package_above_the_request_limit_is_refused_clearly(etcd, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    chart = charts.charts[0]
    limit = len(chart.data) + 4096  # room for the keys and metadata, not for the bytes
    server = on_etcd(pool, etcd, unique("limit"), "--storage-etcd-max-request-bytes",
                     str(limit - 1))
    r = upload(server, chart.data)
    assert r.status_code == 413, r.text
    assert "storage.etcd.maxrequestbytes" in r.json()["error"], r.text
    assert fetch_index(server).get("entries") in (None, {})


def make_pki(d: Path, ca_name: str) -> None:
    """A throw-away CA in `d` with a server certificate for 127.0.0.1 and a client pair."""
    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=" + ca_name)
    # etcd's own gateway dials etcd with the server pair, so it is a client too.
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", who + ".key", "-out", who + ".csr", "-subj", "/CN=" + who)
        ssl("x509", "-req", "-in", who + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", who + ".pem", "-days", "2", "-extfile", who + ".ext")


def test_a_reload_rereads_the_client_certificate_files(pool, tmp_path):
    """storage.etcd.certfile/keyfile are read again at every reload: a rotated pair that etcd
    refuses fails the reload (naming the problem) while the running storage keeps serving, and
    the good pair written back is taken by the next reload."""
    good, other, live = tmp_path / "good", tmp_path / "other", tmp_path / "live"
    for d in (good, other, live):
        d.mkdir()
    make_pki(good, "etcd test CA")
    make_pki(other, "another CA")
    port, peer = pick_port(), pick_port()
    url, peer_url = "https://127.0.0.1:%d" % port, "http://127.0.0.1:%d" % peer
    log = open(tmp_path / "etcd.log", "ab")
    proc = subprocess.Popen(
        ["etcd", "--name", "tls", "--data-dir", str(tmp_path / "data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
         "--initial-cluster", "tls=" + peer_url, "--log-level", "warn", "--logger", "zap",
         "--cert-file", str(good / "server.pem"), "--key-file", str(good / "server.key"),
         "--client-cert-auth", "--trusted-ca-file", str(good / "ca.pem")],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        client = (str(good / "client.pem"), str(good / "client.key"))
        def ready():
            try:
                return requests.post(url + "/v3/kv/range", json={"key": b64(b"/")}, timeout=5,
                                     verify=str(good / "ca.pem"), cert=client).status_code == 200
            except requests.RequestException:
                return False
        wait_until("etcd over TLS answers", ready, timeout=60)
        for name in ("client.pem", "client.key"):
            shutil.copy(good / name, live / name)
        server = on_etcd(pool, type("E", (), {"endpoint": url})(), unique("tls"),
                         "--storage-etcd-cafile", str(good / "ca.pem"),
                         "--storage-etcd-certfile", str(live / "client.pem"),
                         "--storage-etcd-keyfile", str(live / "client.key"))
        charts = package_charts(CHART_SOURCES, tmp_path / "charts")
        first, second = charts.charts[0], charts.charts[1]
        assert upload(server, first.data).status_code == 201, server.log()

        # A pair from another CA: etcd refuses the handshake, the reload fails and says so.
        for name in ("client.pem", "client.key"):
            shutil.copy(other / name, live / name)
        server.proc.send_signal(signal.SIGHUP)
        wait_until("the reload with a refused certificate fails",
                   lambda: "reload failed" in server.log())
        assert server.get("/health").status_code == 200, server.log()
        assert server.get("/charts/" + first.filename).content == first.data

        # The good pair back: the next reload reads it and completes.
        for name in ("client.pem", "client.key"):
            shutil.copy(good / name, live / name)
        server.proc.send_signal(signal.SIGHUP)
        wait_until("the reload with the good certificate completes",
                   lambda: "reload complete" in server.log().split("reload failed")[-1])
        assert upload(server, second.data).status_code == 201, server.log()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
