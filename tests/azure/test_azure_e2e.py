"""chartroom (the binary) on Azure Blob storage emulated by Azurite, end to end:

- a real Helm client indexes and pulls charts uploaded to chartroom on Azure, byte for byte
  (and the blobs read straight from Azurite are those bytes); a restart comes back from the
  state file in the container;
- two chartroom instances on one container and prefix: an upload to one shows up on the other,
  a blob deleted directly in the container (deletes through the API disabled) leaves both;
- Azurite frozen (SIGSTOP): the index is still served, an upload is answered 503 within
  storage.requesttimeout, the next at once, and uploads work again once it wakes, without a
  restart;
- a wrong account key: chartroom refuses to start and says why (403 and the service's
  error code, the account); a key rotated at the service: /health names the rejection, and a reload
  after the new key was written to storage.microsoft.accesskeyfile brings the server back.

Run:  CHARTROOM_BIN=target/release/chartroom python3 -m pytest -q tests/azure
Needs `azurite-blob` on PATH (npm install -g azurite@3.35.0; scripts/install-test-deps) and the
e2e Python packages (tests/e2e/requirements*.txt). Ports: AZURE_E2E_PORT (default 19800)
upwards.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from email.utils import formatdate
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
    wait_healthy,
)

BASE_PORT = int(os.environ.get("AZURE_E2E_PORT", "19800"))
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
           "K1SZFPTOtr/KBHBeksoGMGw==")
CONTAINER = "charts"
VERSION = "2021-08-06"


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


class Azurite:
    """`azurite-blob` on one loopback port, data in `workdir`; stopped by PID. `accounts`
    (AZURITE_ACCOUNTS, `name:key`) replaces the development account."""

    def __init__(self, workdir: Path, account: str = DEV_ACCOUNT, key: str = DEV_KEY,
                 accounts: str | None = None):
        self.dir = workdir
        self.port = pick_port()
        self.account = account
        self.key = key
        self.accounts = accounts
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return "http://127.0.0.1:%d/%s" % (self.port, self.account)

    def start(self) -> None:
        (self.dir / "data").mkdir(exist_ok=True)
        env = dict(os.environ)
        env.pop("AZURITE_ACCOUNTS", None)
        if self.accounts:
            env["AZURITE_ACCOUNTS"] = self.accounts
        log = open(self.dir / "azurite.log", "ab")
        self.proc = subprocess.Popen(
            ["azurite-blob", "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", str(self.dir / "data"), "--silent", "--disableTelemetry",
             "--skipApiVersionCheck"],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "azurite-blob exited:\n" + self.log()
            try:
                r = self.request("PUT", "", query={"restype": "container"})
                if r.status_code in (201, 409):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("Azurite not ready in 60 s:\n" + self.log())

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        try:
            return (self.dir / "azurite.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def request(self, method: str, blob: str, query: dict[str, str] | None = None,
                data: bytes = b"") -> requests.Response:
        """A request of our own, signed with Shared Key (an operator's tool, not chartroom)."""
        query = query or {}
        path = "/%s/%s" % (self.account, CONTAINER)
        if blob:
            path += "/" + "/".join(quote(seg, safe="") for seg in blob.split("/"))
        headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": VERSION}
        if method == "PUT" and blob:
            headers["x-ms-blob-type"] = "BlockBlob"
        length = str(len(data)) if data else ""
        ms = "".join("%s:%s\n" % (k, v) for k, v in sorted(headers.items()))
        resource = "/%s%s" % (self.account, path) + "".join(
            "\n%s:%s" % (k, v) for k, v in sorted(query.items()))
        to_sign = "%s\n\n\n%s\n\n\n\n\n\n\n\n\n%s%s" % (method, length, ms, resource)
        sig = base64.b64encode(hmac.new(base64.b64decode(self.key), to_sign.encode(),
                                        hashlib.sha256).digest()).decode()
        headers["Authorization"] = "SharedKey %s:%s" % (self.account, sig)
        url = "http://127.0.0.1:%d%s" % (self.port, path)
        return requests.request(method, url, params=query, headers=headers, data=data,
                                timeout=10)


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    if shutil.which("azurite-blob") is None:
        pytest.fail("`azurite-blob` not found: npm install -g azurite@3.35.0 "
                    "(scripts/install-test-deps)")
    a = Azurite(tmp_path_factory.mktemp("azurite"))
    try:
        a.start()
        yield a
    finally:
        a.stop()


def on_azure(pool, az, prefix, *args, env=None, wait=True):
    port = free_port()
    environ = {"AZURE_STORAGE_ACCOUNT": az.account, "AZURE_STORAGE_ACCESS_KEY": az.key}
    environ.update(env or {})
    return pool.start(
        ["--port", str(port), "--storage", "microsoft", "--storage-microsoft-container",
         CONTAINER, "--storage-microsoft-prefix", prefix, "--storage-microsoft-endpoint",
         az.endpoint, *args],
        env=environ, standard_flags=False, port=port, wait=wait)


def rejected(text):
    """A 403 for the signature: AuthenticationFailed on Azure, AuthorizationFailure on
    Azurite."""
    return "403" in text and ("AuthenticationFailed" in text or "AuthorizationFailure" in text)


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def wait_until(what, pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "not within %.0fs: %s" % (timeout, what)
        time.sleep(0.2)


def test_helm_pulls_from_chartroom_on_azure(azurite, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("helm")
    server = on_azure(pool, azurite, prefix)
    for i, chart in enumerate(charts.charts):
        r = upload(server, chart.data, mode="raw" if i % 2 == 0 else "multipart",
                   filename=chart.filename)
        assert r.status_code == 201, r.text
    wait_for_index(server, charts.versions())
    # The packages are in the container, whole (read straight from Azurite).
    for chart in charts.charts:
        r = azurite.request("GET", prefix + "/" + chart.filename)
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
    # A restart comes back from the state file in the container.
    server.stop()
    again = on_azure(pool, azurite, prefix)
    wait_for_index(again, charts.versions())
    r = azurite.request("GET", prefix + "/chartroom-state.json")
    assert r.status_code == 200 and json.loads(r.content)["format"] == "chartroom-state/3"


def test_two_instances_share_a_container(azurite, pool, tmp_path):
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    prefix = unique("two")
    flags = ("--cache-interval", "1s", "--disable-delete")
    a = on_azure(pool, azurite, prefix, *flags)
    b = on_azure(pool, azurite, prefix, *flags)
    first, second = charts.charts[0], charts.charts[1]
    assert upload(a, first.data).status_code == 201
    assert upload(b, second.data).status_code == 201
    both = {first.name: [first.version], second.name: [second.version]}
    if first.name == second.name:
        both = {first.name: [first.version, second.version]}
    wait_for_index(a, both, timeout=10)
    wait_for_index(b, both, timeout=10)
    # Deletes through the API are off; the operator deletes in the container itself.
    r = requests.delete(a.url + "/api/charts/%s/%s" % (first.name, first.version), timeout=10)
    assert r.status_code == 404
    r = azurite.request("DELETE", prefix + "/" + first.filename)
    assert r.status_code == 202, r.text

    def gone(server):
        entries = fetch_index(server).get("entries") or {}
        return first.version not in [v["version"] for v in entries.get(first.name, [])]
    wait_until("A drops the deleted chart", lambda: gone(a), timeout=10)
    wait_until("B drops the deleted chart", lambda: gone(b), timeout=10)
    assert a.get("/charts/" + first.filename).status_code == 404


def test_upload_to_a_frozen_azurite_is_answered_within_the_deadline(azurite, pool, tmp_path):
    """Azurite frozen (SIGSTOP: it accepts connections and never answers): the index and a
    recently read package are still served, an upload is answered 503 within
    storage.requesttimeout (10 s here, across all tries), the next one at once, /health says
    what is wrong; once it wakes, uploads work again without a restart."""
    charts = package_charts(CHART_SOURCES, tmp_path / "charts")
    first, second = charts.charts[0], charts.charts[1]
    prefix = unique("frozen")
    server = on_azure(pool, azurite, prefix, "--cache-interval", "0",
                      "--storage-request-timeout", "10s")
    assert upload(server, first.data).status_code == 201

    def post(data):
        t = time.monotonic()
        r = server.post("/api/charts", data=data, timeout=120,
                        headers={"Content-Type": "application/octet-stream"})
        return r, time.monotonic() - t

    azurite.proc.send_signal(signal.SIGSTOP)
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
        assert h.json()["storage"].startswith("microsoft:charts/"), h.text
        idx = server.get("/index.yaml")
        assert idx.status_code == 200 and first.version in idx.text
        r = server.get("/charts/" + first.filename)
        assert r.status_code == 200 and r.content == first.data
    finally:
        azurite.proc.send_signal(signal.SIGCONT)

    answers = []

    def uploaded():
        r, _ = post(second.data)
        answers.append(r.status_code)
        # 409: a PUT that waited in the frozen server's socket may have been carried out.
        return r.status_code in (201, 409)
    wait_until("uploads work again", uploaded, timeout=30)
    assert server.get("/health").status_code == 200
    if answers[-1] == 201:
        wait_for_index(server, {first.name: [first.version], second.name: [second.version]}
                       if first.name != second.name
                       else {first.name: [first.version, second.version]})
    else:
        # The blob came from the PUT that waited in the frozen socket: Azure's create-if-absent
        # answers 409 and, with --cache-interval 0, this instance lists it only after a
        # restart or a refresh (the S3 backend recognises its own bytes on a read-back; the
        # Azure one does not yet).
        assert first.version in server.get("/index.yaml").text


def test_a_wrong_key_is_named_at_start(azurite, pool):
    wrong = base64.b64encode(b"not the account key").decode()
    server = on_azure(pool, azurite, unique("badkey"), env={"AZURE_STORAGE_ACCESS_KEY": wrong},
                      wait=False)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("chartroom started with a wrong key:\n" + server.log())
    assert server.proc.returncode != 0
    log = server.log()
    assert rejected(log), log
    assert DEV_ACCOUNT in log, log


def test_a_rotated_key_is_named_in_health_and_a_reload_takes_the_new_one(pool, tmp_path):
    """The account key rotated at the service (Azurite restarted with another key for the
    account): /health names the rejection; the new key written to the key file and a reload
    (SIGHUP) bring chartroom back, with the charts it had."""
    if shutil.which("azurite-blob") is None:
        pytest.fail("`azurite-blob` not found: npm install -g azurite@3.35.0")
    account = "chartroomrot"
    old_key = base64.b64encode(b"old key for chartroom e2e tests").decode()
    new_key = base64.b64encode(b"new key for chartroom e2e tests").decode()
    work = tmp_path / "azurite"
    work.mkdir()
    az = Azurite(work, account, old_key, accounts="%s:%s" % (account, old_key))
    try:
        az.start()
        key_file = tmp_path / "account.key"
        key_file.write_text(old_key + "\n")
        charts = package_charts(CHART_SOURCES, tmp_path / "charts")
        first, second = charts.charts[0], charts.charts[1]
        prefix = unique("rotate")
        server = on_azure(pool, az, prefix, "--cache-interval", "1s",
                          "--storage-microsoft-accesskeyfile", str(key_file),
                          env={"AZURE_STORAGE_ACCESS_KEY": ""})
        assert upload(server, first.data).status_code == 201
        # The key is rotated at the service: the old one is refused from now on.
        az.stop()
        az.key = new_key
        az.accounts = "%s:%s" % (account, new_key)
        az.start()

        def unhealthy():
            h = server.get("/health")
            return h.status_code == 503 and rejected(h.text)
        wait_until("/health names the rejected key", unhealthy, timeout=15)
        h = server.get("/health").json()
        assert "403" in h["error"] and account in h["error"], h
        r = server.post("/api/charts", data=second.data, timeout=30,
                        headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 503, r.text
        # The operator writes the new key and reloads.
        key_file.write_text(new_key + "\n")
        server.proc.send_signal(signal.SIGHUP)
        wait_until("the reload completes", lambda: "reload complete" in server.log(), timeout=20)
        wait_healthy(server, timeout=15)
        assert upload(server, second.data).status_code == 201
        both = {first.name: [first.version], second.name: [second.version]}
        if first.name == second.name:
            both = {first.name: [first.version, second.version]}
        wait_for_index(server, both, timeout=10)
        r = az.request("GET", prefix + "/" + second.filename)
        assert r.status_code == 200 and r.content == second.data
    finally:
        az.stop()
