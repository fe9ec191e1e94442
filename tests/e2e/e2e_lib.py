"""Helpers for the end-to-end tests: starting and stopping the chartroom
binary, HTTP helpers, real Helm clients run in their own processes, the test
charts, and the index.yaml comparison.

Everything binds to 127.0.0.1. Every process started here is stopped by its
PID (SIGTERM, then SIGKILL after a timeout) and waited for.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pytest
import requests
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORKER = HERE / "helm_worker.py"

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
INDEX_TIMEOUT = 10.0
HELM_TIMEOUT = 90.0

# Environment variables ChartMuseum reads (see spec §4.2). They are removed
# from the environment the server inherits, so only what a test sets applies.
CHARTMUSEUM_ENV_VARS = {
    "CONFIG", "GEN_INDEX", "DEBUG", "LOG_JSON", "LOG_HEALTH", "LOG_LATENCY_INTEGER",
    "DISABLE_METRICS", "ENABLE_METRICS", "DISABLE_API", "DISABLE_DELETE",
    "DISABLE_STATEFILES", "JSON_INDEX", "ALLOW_OVERWRITE", "DISABLE_FORCE_OVERWRITE",
    "PORT", "READ_TIMEOUT", "WRITE_TIMEOUT", "CHART_URL", "BASIC_AUTH_USER",
    "BASIC_AUTH_PASS", "AUTH_ANONYMOUS_GET", "TLS_CERT", "TLS_KEY", "TLS_CA_CERT",
    "CACHE", "CACHE_REDIS_ADDR", "CACHE_REDIS_PASSWORD", "CACHE_REDIS_DB", "STORAGE",
    "STORAGE_TIMESTAMP_TOLERANCE", "STORAGE_LOCAL_ROOTDIR", "CHART_POST_FORM_FIELD_NAME",
    "PROV_POST_FORM_FIELD_NAME", "MAX_STORAGE_OBJECTS", "MAX_UPLOAD_SIZE", "INDEX_LIMIT",
    "CONTEXT_PATH", "DEPTH", "BEARER_AUTH", "AUTH_REALM", "AUTH_SERVICE", "AUTH_CERT_PATH",
    "AUTH_ACTIONS_SEARCH_PATH", "DEPTH_DYNAMIC", "CORS_ALLOW_ORIGIN", "ENFORCE_SEMVER2",
    "CACHE_INTERVAL", "LISTEN_HOST", "PER_CHART_LIMIT", "WEB_TEMPLATE_PATH",
    "ARTIFACT_HUB_REPO_ID", "ALWAYS_REGENERATE_CHART_INDEX",
}


# --------------------------------------------------------------------------
# The chartroom binary and its processes
# --------------------------------------------------------------------------


def find_binary() -> Path | None:
    explicit = os.environ.get("CHARTROOM_BIN")
    if explicit:
        return Path(explicit).absolute()  # the server runs with another cwd
    for profile in ("release", "debug"):
        candidate = ROOT / "target" / profile / "chartroom"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (sockets held open until all are chosen)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CHARTMUSEUM_ENV_VARS}
    env.setdefault("RUST_BACKTRACE", "1")
    if extra:
        env.update(extra)
    return env


@dataclass
class Chartroom:
    """One running chartroom process."""

    proc: subprocess.Popen
    port: int
    storage_dir: Path | None
    log_path: Path
    cmd: list[str]
    auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def repo_url(self, repo: str = "") -> str:
        return f"{self.url}/{repo}" if repo else self.url

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 10)
        return requests.post(self.url + path, **kwargs)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class ChartroomPool:
    """Starts chartroom processes and stops every one of them at the end."""

    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = workdir
        self.servers: list[Chartroom] = []
        self._count = 0

    def start(
        self,
        args: Iterable[str] = (),
        *,
        env: dict[str, str] | None = None,
        config: dict[str, Any] | str | None = None,
        standard_flags: bool = True,
        port: int | None = None,
        storage_dir: Path | None = None,
        auth: tuple[str, str] | None = None,
        wait: bool = True,
    ) -> Chartroom:
        """Start chartroom on 127.0.0.1.

        standard_flags adds ``--port P --storage local --storage-local-rootdir D``;
        turn it off to configure those through ``config`` or ``env`` instead
        (then pass the ``port`` and ``storage_dir`` used there). ``--listen-host
        127.0.0.1`` is always on the command line. ``config`` (a dict dumped as
        YAML, or YAML text) is written to ``chartmuseum.yaml`` and passed with
        ``--config``. ``auth`` is only used for the health check.
        """
        self._count += 1
        run_dir = self.workdir / f"chartroom-{self._count}"
        run_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        if storage_dir is None and standard_flags:
            storage_dir = run_dir / "storage"
        if storage_dir is not None:
            storage_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), "--listen-host", HOST]
        if standard_flags:
            cmd += ["--port", str(port), "--storage", "local",
                    "--storage-local-rootdir", str(storage_dir)]
        if config is not None:
            config_path = run_dir / "chartmuseum.yaml"
            text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
            config_path.write_text(text)
            cmd += ["--config", str(config_path)]
        cmd += list(args)
        log_path = run_dir / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_env(env),
                cwd=run_dir,
            )
        server = Chartroom(proc, port, storage_dir, log_path, cmd, auth)
        self.servers.append(server)
        if wait:
            wait_healthy(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture(scope="module")
def binary() -> Path:
    """The chartroom binary (for suites outside tests/e2e: import it from here)."""
    b = find_binary()
    if b is None:
        pytest.fail("chartroom binary not found: cargo build, or set CHARTROOM_BIN")
    return b


@pytest.fixture
def pool(binary, tmp_path):
    """Chartroom processes of one test, all stopped at its end."""
    p = ChartroomPool(binary, tmp_path)
    yield p
    p.stop_all()


def wait_healthy(server: Chartroom, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"chartroom exited with {server.proc.returncode} before becoming healthy\n"
                f"cmd: {server.cmd}\nlog:\n{server.log()}"
            )
        try:
            resp = requests.get(server.url + "/health", timeout=2)
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}: {resp.text[:200]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.1)
    raise AssertionError(
        f"chartroom not healthy after {timeout}s ({last})\ncmd: {server.cmd}\nlog:\n{server.log()}"
    )


# --------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------


def api_prefix(repo: str = "") -> str:
    return f"/api/{repo}/charts" if repo else "/api/charts"


def upload(
    server: Chartroom,
    data: bytes,
    *,
    repo: str = "",
    mode: str = "raw",
    filename: str = "chart.tgz",
    auth: tuple[str, str] | None = None,
) -> requests.Response:
    """POST a chart package to /api[/<repo>]/charts, as a raw body or multipart."""
    path = api_prefix(repo)
    if mode == "raw":
        return server.post(path, data=data, auth=auth,
                           headers={"Content-Type": "application/octet-stream"})
    if mode == "multipart":
        return server.post(path, files={"chart": (filename, data, "application/gzip")}, auth=auth)
    raise ValueError(mode)


def fetch_index(server: Chartroom, repo: str = "", auth=None) -> dict[str, Any]:
    path = f"/{repo}/index.yaml" if repo else "/index.yaml"
    resp = server.get(path, auth=auth)
    assert resp.status_code == 200, f"GET {path}: {resp.status_code} {resp.text[:300]}"
    parsed = yaml.safe_load(resp.text)
    assert isinstance(parsed, dict), f"GET {path} is not a YAML mapping: {resp.text[:300]}"
    return parsed


def index_versions(index: dict[str, Any]) -> dict[str, list[str]]:
    entries = index.get("entries") or {}
    return {name: [str(e.get("version")) for e in versions or []]
            for name, versions in entries.items()}


def wait_for_index(
    server: Chartroom,
    expected: dict[str, Iterable[str]],
    *,
    repo: str = "",
    auth=None,
    timeout: float = INDEX_TIMEOUT,
) -> dict[str, Any]:
    """Poll index.yaml until it lists exactly the expected versions (as sets).

    The upload API may answer before the index is updated (ChartMuseum applies
    upload events asynchronously), hence the polling.
    """
    want = {name: sorted(set(versions)) for name, versions in expected.items()}
    deadline = time.monotonic() + timeout
    while True:
        index = fetch_index(server, repo, auth)
        have = {name: sorted(set(v)) for name, v in index_versions(index).items()}
        if have == want:
            return index
        if time.monotonic() > deadline:
            raise AssertionError(
                f"index.yaml of {server.repo_url(repo)} did not converge in {timeout}s\n"
                f"expected: {json.dumps(want, indent=1)}\nactual: {json.dumps(have, indent=1)}"
            )
        time.sleep(0.2)


def basic_auth_header(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# --------------------------------------------------------------------------
# Real Helm clients, each run in its own process
# --------------------------------------------------------------------------


class HelmHome:
    """Fresh HELM_CONFIG_HOME / HELM_CACHE_HOME / HELM_DATA_HOME for one client."""

    def __init__(self, base: Path):
        self.base = base
        self.config = base / "config"
        self.cache = base / "cache"
        self.data = base / "data"
        for d in (self.config, self.cache, self.data):
            d.mkdir(parents=True, exist_ok=True)
        # helm-sdkpy's repo add needs repositories.yaml to exist.
        self.repositories = self.config / "repositories.yaml"
        self.repositories.write_text("apiVersion: v1\nrepositories: []\n")
        self.repository_cache = self.cache / "repository"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HELM_CONFIG_HOME=str(self.config),
            HELM_CACHE_HOME=str(self.cache),
            HELM_DATA_HOME=str(self.data),
            HELM_REPOSITORY_CONFIG=str(self.repositories),
            HELM_REPOSITORY_CACHE=str(self.repository_cache),
            HOME=str(self.base),
        )
        return env

    def cached_index(self, repo_name: str) -> dict[str, Any]:
        """The index.yaml Helm stored for ``repo_name`` at repo add / update."""
        return yaml.safe_load((self.repository_cache / f"{repo_name}-index.yaml").read_text())

    def content_files(self) -> list[Path]:
        """Charts Helm 4 downloaded into its content cache (named by digest)."""
        return sorted((self.cache / "content").rglob("*.chart"))


@dataclass
class HelmResult:
    ok: bool
    result: Any = None
    error: str = ""
    type: str = ""
    traceback: str = ""


def run_helm(lib: str, ops: list[dict[str, Any]], home: HelmHome,
             timeout: float = HELM_TIMEOUT) -> list[HelmResult]:
    """Run ``ops`` with ``lib`` ("helm_python" or "helm_sdkpy") in a new process."""
    assert lib in ("helm_python", "helm_sdkpy")
    home.base.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    ops_file = home.base / f"ops-{stamp}.json"
    result_file = home.base / f"result-{stamp}.json"
    out_file = home.base / f"worker-{stamp}.log"
    ops_file.write_text(json.dumps(ops))
    with open(out_file, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), lib, str(ops_file), str(result_file)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=home.env(), cwd=home.base,
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
    raw = json.loads(result_file.read_text()) if result_file.exists() else []
    results = [HelmResult(**r) for r in raw]
    if len(results) < len(ops):
        log = out_file.read_text(errors="replace")[-3000:]
        for _ in range(len(ops) - len(results)):
            results.append(HelmResult(False, error=f"helm worker died (rc={rc}); output:\n{log}",
                                      type="WorkerDied"))
    return results


def helm_ok(result: HelmResult, what: str) -> Any:
    assert result.ok, f"{what} failed: {result.type}: {result.error}"
    return result.result


# --------------------------------------------------------------------------
# Charts packaged by Helm
# --------------------------------------------------------------------------


@dataclass
class PackagedChart:
    name: str
    version: str
    path: Path
    data: bytes = field(repr=False)

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass
class ChartSet:
    charts: list[PackagedChart]
    directory: Path  # holds exactly the .tgz files of ``charts``

    def get(self, name: str, version: str) -> PackagedChart:
        for chart in self.charts:
            if chart.name == name and chart.version == version:
                return chart
        raise KeyError((name, version))

    def versions(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for chart in self.charts:
            out.setdefault(chart.name, []).append(chart.version)
        return out


_TEMPLATE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-{{ .Chart.Name }}
data:
  replicas: {{ .Values.replicaCount | quote }}
"""

# name -> (Chart.yaml mapping, versions to package with `helm package --version`)
CHART_SOURCES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "alpha": (
        {
            "apiVersion": "v2",
            "name": "alpha",
            "description": "Alpha: a chart with every common Chart.yaml field",
            "type": "application",
            "version": "0.0.0",
            "appVersion": "2.3.4",
            "home": "https://example.invalid/alpha",
            "icon": "https://example.invalid/alpha.png",
            "sources": ["https://example.invalid/alpha/src"],
            "keywords": ["alpha", "test", "web"],
            "kubeVersion": ">=1.20.0-0",
            "maintainers": [
                {"name": "Jane Doe", "email": "jane@example.invalid",
                 "url": "https://example.invalid/jane"},
                {"name": "Build Bot", "email": "bot@example.invalid"},
            ],
            "annotations": {
                "category": "Testing",
                "example.invalid/flag": "true",
                "artifacthub.io/license": "Apache-2.0",
            },
            "dependencies": [
                {"name": "beta", "version": ">=0.1.0",
                 "repository": "https://example.invalid/charts",
                 "condition": "beta.enabled", "tags": ["backend"]},
            ],
        },
        ["0.1.0", "0.2.0", "0.2.1", "1.0.0-rc.1", "1.0.0", "1.1.0"],
    ),
    # `v`-prefixed versions (Helm packages them as given).
    "gamma": (
        {
            "apiVersion": "v2",
            "name": "gamma",
            "description": "Gamma: v-prefixed versions",
            "version": "0.0.0",
            "appVersion": "v9.0",
            "maintainers": [{"name": "Gamma Team"}],
        },
        ["v1.5.0", "v2.0.0", "2.1.0-beta.1"],
    ),
    # apiVersion v1 chart, deprecated, strings a YAML parser must not retype
    "legacy": (
        {
            "apiVersion": "v1",
            "name": "legacy",
            "description": "Legacy apiVersion v1 chart",
            "version": "0.3.0",
            "appVersion": "1.10",
            "keywords": ["legacy", "0755", "true", "null", "1.5"],
            "deprecated": True,
            "annotations": {"enabled": "false", "count": "10"},
        },
        ["0.3.0"],
    ),
    # hyphenated name and a hyphenated prerelease
    "my-web-app": (
        {
            "apiVersion": "v2",
            "name": "my-web-app",
            "description": "Hyphenated chart name",
            "version": "0.0.0",
            "appVersion": "0.1.0-SNAPSHOT",
        },
        ["0.1.0", "0.1.1-SNAPSHOT-1"],
    ),
    "libby": (
        {
            "apiVersion": "v2",
            "name": "libby",
            "description": "A library chart",
            "type": "library",
            "version": "0.0.1",
        },
        ["0.0.1"],
    ),
}


# Strings that a YAML 1.1 parser (Helm's sigs.k8s.io/yaml on go-yaml v2, and
# PyYAML) reads as bools, numbers or timestamps unless index.yaml quotes them.
# Kept out of CHART_SOURCES (one unparsable entry makes Helm reject the whole
# repository, which would hide every other result); used by its own test.
YAML11_SOURCES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "yaml11": ({"apiVersion": "v2", "name": "yaml11", "version": "0.1.0"}, ["0.1.0"]),
}

# Chart.yaml text written verbatim (every tricky value quoted).
RAW_CHART_YAML = {
    "yaml11": """apiVersion: v2
name: yaml11
description: Strings that YAML 1.1 would retype
version: 0.1.0
appVersion: "1.10"
keywords:
  - "yes"
  - "on"
  - "Off"
  - "y"
  - "N"
  - "0755"
  - "1_000"
  - "1e3"
  - "1:20"
  - "2001-12-14"
annotations:
  enabled: "false"
  answer: "no"
  count: "10"
  released: "2001-12-14"
""",
}


def write_chart_dir(parent: Path, meta: dict[str, Any]) -> Path:
    chart_dir = parent / meta["name"]
    (chart_dir / "templates").mkdir(parents=True)
    raw = RAW_CHART_YAML.get(meta["name"])
    (chart_dir / "Chart.yaml").write_text(raw or yaml.safe_dump(meta, sort_keys=False))
    if meta.get("type") == "library":
        (chart_dir / "templates" / "_helpers.tpl").write_text(
            '{{- define "libby.name" -}}libby{{- end -}}\n')
        (chart_dir / "values.yaml").write_text("")
    else:
        (chart_dir / "values.yaml").write_text("replicaCount: 2\nbeta:\n  enabled: false\n")
        (chart_dir / "templates" / "configmap.yaml").write_text(_TEMPLATE)
        (chart_dir / "templates" / "NOTES.txt").write_text("Installed {{ .Chart.Name }}.\n")
    for dep in meta.get("dependencies", []):
        sub = chart_dir / "charts" / dep["name"]
        (sub / "templates").mkdir(parents=True)
        (sub / "Chart.yaml").write_text(
            yaml.safe_dump({"apiVersion": "v2", "name": dep["name"], "version": "0.1.5"}))
        (sub / "values.yaml").write_text("enabled: false\n")
    return chart_dir


# --------------------------------------------------------------------------
# index.yaml comparison
# --------------------------------------------------------------------------

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def is_rfc3339(value: Any) -> bool:
    if isinstance(value, dt.datetime):  # an unquoted YAML timestamp
        return True
    return isinstance(value, str) and bool(RFC3339.match(value))


def _dump(value: Any) -> str:
    # Non-JSON types (dates parsed from unquoted YAML timestamps) are shown
    # with their type, so "2001-12-14" (a string) and a date do not look alike.
    return json.dumps(value, sort_keys=True, default=lambda v: f"<{type(v).__name__} {v}>")


def compare_indexes(actual: dict[str, Any], reference: dict[str, Any],
                    url_prefix: str = "charts/") -> list[str]:
    """Differences between chartroom's index and Helm's `repo index` output.

    Compared: chart names; versions and their order per chart; per entry every
    field and value except ``created`` (upload/index time) and ``urls`` (Helm
    writes ``<file>``, ChartMuseum ``charts/<file>``), which are checked
    separately: ``created`` must be an RFC 3339 time, ``urls`` must be
    ``[url_prefix + <Helm's url>]``.
    """
    problems: list[str] = []
    if actual.get("apiVersion") != "v1":
        problems.append(f"apiVersion is {actual.get('apiVersion')!r}, want 'v1'")
    a_entries = actual.get("entries") or {}
    r_entries = reference.get("entries") or {}
    if sorted(a_entries) != sorted(r_entries):
        problems.append(f"chart names differ: chartroom {sorted(a_entries)} "
                        f"vs helm {sorted(r_entries)}")
    for name in sorted(set(a_entries) & set(r_entries)):
        a_list = a_entries[name] or []
        r_list = r_entries[name] or []
        a_versions = [e.get("version") for e in a_list]
        r_versions = [e.get("version") for e in r_list]
        if a_versions != r_versions:
            problems.append(f"{name}: versions/order differ:\n  chartroom {a_versions}\n"
                            f"  helm      {r_versions}")
        r_by_version = {e.get("version"): e for e in r_list}
        for a_entry in a_list:
            version = a_entry.get("version")
            r_entry = r_by_version.get(version)
            if r_entry is None:
                continue
            a_view = {k: v for k, v in a_entry.items() if k not in ("created", "urls")}
            r_view = {k: v for k, v in r_entry.items() if k not in ("created", "urls")}
            if a_view != r_view:
                diff = []
                for key in sorted(set(a_view) | set(r_view)):
                    if a_view.get(key, "<absent>") != r_view.get(key, "<absent>"):
                        diff.append(f"    {key}: chartroom={_dump(a_view.get(key, '<absent>'))}"
                                    f"  helm={_dump(r_view.get(key, '<absent>'))}")
                problems.append(f"{name} {version}: fields differ:\n" + "\n".join(diff))
            want_urls = [url_prefix + u for u in r_entry.get("urls", [])]
            if a_entry.get("urls") != want_urls:
                problems.append(f"{name} {version}: urls {a_entry.get('urls')!r}, want {want_urls!r}")
            if not is_rfc3339(a_entry.get("created")):
                problems.append(f"{name} {version}: created {a_entry.get('created')!r} "
                                "is not an RFC 3339 time")
    return problems


def package_charts(sources: dict[str, tuple[dict[str, Any], list[str]]], base: Path) -> ChartSet:
    """Write chart directories for ``sources`` and package them with Helm."""
    src = base / "src"
    dist = base / "dist"
    src.mkdir(parents=True)
    dist.mkdir(parents=True)
    ops = []
    wanted = []
    for name, (meta, versions) in sources.items():
        chart_dir = write_chart_dir(src, meta)
        for version in versions:
            ops.append({"op": "package", "path": str(chart_dir), "destination": str(dist),
                        "version": version})
            wanted.append((name, version))
    results = run_helm("helm_python", ops, HelmHome(base / "helm"))
    packaged = []
    for (name, version), res in zip(wanted, results):
        path = Path(helm_ok(res, f"helm package {name} --version {version}"))
        assert path.name == f"{name}-{version}.tgz", path
        packaged.append(PackagedChart(name, version, path, path.read_bytes()))
    return ChartSet(packaged, dist)


TESTDATA = HERE / "testdata"
# A throwaway OpenPGP key made for these tests only (no passphrase), stored
# ASCII-armored; Helm's keyring loader wants the binary form.
SIGNING_KEY_NAME = "Chartroom Test"


def dearmor(text: str) -> bytes:
    """Binary OpenPGP data from an ASCII-armored block (RFC 4880 §6.2)."""
    lines = text.strip().splitlines()[1:-1]  # drop BEGIN/END lines
    blank = lines.index("") if "" in lines else -1  # armor headers end at a blank line
    body = [line.strip() for line in lines[blank + 1:] if not line.startswith("=")]
    return base64.b64decode("".join(body))


def write_keyrings(dest: Path) -> tuple[Path, Path]:
    """(secret keyring, public keyring) files for the test signing key."""
    dest.mkdir(parents=True, exist_ok=True)
    secret, public = dest / "secring.gpg", dest / "pubring.gpg"
    secret.write_bytes(dearmor((TESTDATA / "test-signing-key.secret.asc").read_text()))
    public.write_bytes(dearmor((TESTDATA / "test-signing-key.pub.asc").read_text()))
    return secret, public


def copy_charts(chart_set: ChartSet, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for chart in chart_set.charts:
        shutil.copyfile(chart.path, dest / chart.filename)
    return dest


# --------------------------------------------------------------------------
# Charts built without Helm (Chart.yaml that `helm package` would refuse or rewrite)
# --------------------------------------------------------------------------


def yaml_quoted(text: str) -> str:
    """``text`` as a double-quoted YAML scalar in plain ASCII: every other character escaped."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= code <= 0x7E:
            out.append(ch)
        elif code <= 0xFF:
            out.append(f"\\x{code:02X}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    out.append('"')
    return "".join(out)


def build_package(files: dict[str, str | bytes]) -> bytes:
    """A chart package (.tgz) holding ``files`` ({path inside the archive: contents})."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w") as tar:
            for path, body in files.items():
                data = body.encode() if isinstance(body, str) else body
                info = tarfile.TarInfo(path)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
