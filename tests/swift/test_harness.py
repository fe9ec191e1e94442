"""Checks a real one-node OpenStack Swift started by swift-harness.sh, with plain `requests`.

Run:  python3 -m pytest -q tests/swift
Needs root for the first `install` (apt), `pytest` and `requests` in the Python that runs it.
Ports: SWIFT_TEST_PORT (default 18500) .. +4 for the main instance, +10 .. +14 for the one with a
short token_life.
"""
import contextlib
import ctypes
import datetime
import email.utils
import hashlib
import math
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "swift-harness.sh"
BASE_PORT = int(os.environ.get("SWIFT_TEST_PORT", "18500"))
SHORT_PORT = BASE_PORT + 10
SHORT_TOKEN_LIFE = 4

LISTING_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def run_harness(*args, env=None, timeout=300):
    return subprocess.run(
        ["bash", str(HARNESS), *args], stdin=subprocess.DEVNULL, capture_output=True,
        text=True, env=env, timeout=timeout)


def alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def recorded_pids(d):
    pids = {}
    for f in (d / "run").glob("*.pid"):
        text = f.read_text().strip()
        if text.isdigit():
            pids[f.stem] = int(text)
    return pids


def processes_mentioning(text):
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and alive(int(p.name)):
            found.append((int(p.name), cmd))
    return found


def become_subreaper():
    """Make this process adopt orphaned descendants.

    The harness script exits right after `start`, so the supervisor it leaves behind is re-parented.
    As a child subreaper, pytest becomes its parent and can reap it after `stop` (this machine's
    PID 1 reaps orphans only lazily, if at all).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def reap(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return
        except ChildProcessError:  # not our child: someone else reaps it
            if not alive(pid):
                return
        time.sleep(0.05)


class Swift:
    def __init__(self, d, exports, port, token_life, start_seconds):
        self.dir = d
        self.auth_url = exports["ST_AUTH"]
        self.user = exports["ST_USER"]
        self.key = exports["ST_KEY"]
        self.storage_url = exports["SWIFT_STORAGE_URL"]
        self.container = exports["SWIFT_CONTAINER"]
        self.port = port
        self.token_life = token_life
        self.start_seconds = start_seconds
        self.http = requests.Session()
        self.http.trust_env = False  # never go through an HTTP proxy from the environment
        self._token = None

    def login(self, user=None, key=None):
        return self.http.get(self.auth_url, headers={
            "X-Auth-User": user or self.user, "X-Auth-Key": key if key is not None else self.key},
            timeout=10)

    @property
    def token(self):
        if self._token is None:
            r = self.login()
            assert r.status_code == 200, r.text
            self._token = r.headers["X-Auth-Token"]
        return self._token

    def url(self, name="", container=None):
        u = "%s/%s" % (self.storage_url, container or self.container)
        return u + "/" + name if name else u

    def req(self, method, url, token=None, **kw):
        headers = kw.pop("headers", {})
        headers.setdefault("X-Auth-Token", token or self.token)
        kw.setdefault("timeout", 10)
        return self.http.request(method, url, headers=headers, **kw)

    def harness(self, *args):
        r = run_harness(*args[:1], str(self.dir), *args[1:])
        assert r.returncode == 0, "harness %s failed:\n%s\n%s" % (args, r.stdout, r.stderr)
        return r


@pytest.fixture(scope="session")
def installed():
    r = run_harness("install", timeout=900)
    assert r.returncode == 0, "install failed:\n%s\n%s" % (r.stdout, r.stderr)


@contextlib.contextmanager
def running_swift(tmp_path_factory, name, port, token_life, env=None):
    """A Swift from `swift-harness.sh start`; env: more variables for it (SWIFT_*)."""
    become_subreaper()
    d = tmp_path_factory.mktemp(name)
    env = {**os.environ, **(env or {}), "SWIFT_TOKEN_LIFE": str(token_life)}
    t0 = time.monotonic()
    try:
        r = run_harness("start", str(d), str(port), env=env)
        took = time.monotonic() - t0
        if r.returncode != 0:
            pytest.fail("harness start failed (%.1fs):\n%s\n%s" % (took, r.stdout, r.stderr))
        exports = dict(re.findall(r"^export (\w+)=(\S*)$", r.stdout, re.M))
        for var in ("ST_AUTH", "ST_USER", "ST_KEY"):
            assert var in exports, r.stdout
        print("\nswift %s started in %.1fs on port %d" % (name, took, port))
        yield Swift(d, exports, port, token_life, took)
    finally:
        pids = recorded_pids(d)
        t1 = time.monotonic()
        stop = run_harness("stop", str(d))
        for pid in pids.values():
            reap(pid)
        print("swift %s stopped in %.1fs" % (name, time.monotonic() - t1))
        left = {n: p for n, p in pids.items() if alive(p)}
        strays = processes_mentioning(str(d))
        assert stop.returncode == 0, stop.stderr
        assert not left, "processes left after stop: %r" % left
        assert not strays, "processes left after stop: %r" % strays
        assert not list((d / "run").glob("*.pid"))


@pytest.fixture(scope="session")
def swift(installed, tmp_path_factory):
    with running_swift(tmp_path_factory, "swift", BASE_PORT, 86400) as s:
        yield s


@pytest.fixture(scope="session")
def short_swift(installed, tmp_path_factory):
    with running_swift(tmp_path_factory, "swift-short", SHORT_PORT, SHORT_TOKEN_LIFE) as s:
        yield s


def md5(data):
    return hashlib.md5(data).hexdigest()


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


# ---------------------------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------------------------
def test_exports_and_start_time(swift):
    assert swift.auth_url == "http://127.0.0.1:%d/auth/v1.0" % swift.port
    assert (swift.user, swift.key) == ("test:tester", "testing")
    assert swift.storage_url == "http://127.0.0.1:%d/v1/AUTH_test" % swift.port
    assert swift.start_seconds < 30, "start took %.1fs" % swift.start_seconds
    r = swift.http.get("http://127.0.0.1:%d/healthcheck" % swift.port, timeout=5)
    assert (r.status_code, r.text) == (200, "OK")


def test_login_response_headers(swift):
    r = swift.login()
    assert r.status_code == 200
    token = r.headers["X-Auth-Token"]
    assert token.startswith("AUTH_tk")
    assert r.headers["X-Storage-Token"] == token
    assert r.headers["X-Storage-Url"] == swift.storage_url
    expires = int(r.headers["X-Auth-Token-Expires"])  # seconds left, truncated to an integer
    assert 0 < expires <= swift.token_life
    # tempauth hands out the same token again while it is still valid
    assert swift.login().headers["X-Auth-Token"] == token


def test_wrong_key_is_401(swift):
    r = swift.login(key="wrong")
    assert r.status_code == 401
    assert "X-Auth-Token" not in r.headers
    assert swift.login(user="test:nobody", key="testing").status_code == 401


def test_bad_or_missing_token_is_401(swift):
    r = swift.req("GET", swift.url() + "?format=json", token="AUTH_tkbogus")
    assert r.status_code == 401
    assert r.headers.get("Www-Authenticate", "").startswith("Swift realm=")
    r = swift.http.get(swift.url() + "?format=json", timeout=10)
    assert r.status_code == 401


def test_user_without_admin_is_403(swift):
    r = swift.login(user="test:reader", key="reading")
    assert r.status_code == 200
    r = swift.req("GET", swift.url() + "?format=json", token=r.headers["X-Auth-Token"])
    assert r.status_code == 403


# ---------------------------------------------------------------------------------------------
# objects
# ---------------------------------------------------------------------------------------------
def test_put_with_etag_then_get_and_head(swift):
    name = unique("etag") + ".tgz"
    data = os.urandom(3000)
    r = swift.req("PUT", swift.url(name), data=data,
                  headers={"ETag": md5(data), "Content-Type": "application/gzip"})
    assert r.status_code == 201, r.text
    assert r.headers["Etag"] == md5(data)  # bare hex, no quotes
    r = swift.req("GET", swift.url(name))
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Etag"] == md5(data)
    assert r.headers["Content-Type"] == "application/gzip"
    assert int(r.headers["Content-Length"]) == len(data)
    r = swift.req("HEAD", swift.url(name))
    assert r.status_code == 200
    assert r.headers["Etag"] == md5(data)
    assert int(r.headers["Content-Length"]) == len(data)
    # overwrite is a plain PUT again
    r = swift.req("PUT", swift.url(name), data=b"v2", headers={"ETag": md5(b"v2")})
    assert r.status_code == 201
    assert swift.req("GET", swift.url(name)).content == b"v2"


def test_wrong_etag_is_422_and_nothing_is_stored(swift):
    name = unique("bad-etag")
    r = swift.req("PUT", swift.url(name), data=b"payload", headers={"ETag": md5(b"other")})
    assert r.status_code == 422
    assert swift.req("HEAD", swift.url(name)).status_code == 404


def test_missing_object_and_container_are_404(swift):
    missing = unique("missing")
    assert swift.req("GET", swift.url(missing)).status_code == 404
    assert swift.req("HEAD", swift.url(missing)).status_code == 404
    assert swift.req("DELETE", swift.url(missing)).status_code == 404
    assert swift.req("GET", swift.url(container=unique("nocontainer")) + "?format=json"
                     ).status_code == 404


def test_delete_object(swift):
    name = unique("del")
    assert swift.req("PUT", swift.url(name), data=b"x").status_code == 201
    assert swift.req("DELETE", swift.url(name)).status_code == 204
    assert swift.req("GET", swift.url(name)).status_code == 404


# ---------------------------------------------------------------------------------------------
# listings
# ---------------------------------------------------------------------------------------------
def list_json(swift, **params):
    r = swift.req("GET", swift.url(), params=dict(params, format="json"))
    assert r.status_code == 200, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def test_listing_prefix_marker_limit(swift):
    prefix = unique("list") + "/"
    names = ["%schart-%02d-0.1.0.tgz" % (prefix, i) for i in range(7)]
    bodies = {}
    for n in reversed(names):
        bodies[n] = n.encode() * 3
        assert swift.req("PUT", swift.url(n), data=bodies[n]).status_code == 201
    # a neighbour outside the prefix
    assert swift.req("PUT", swift.url(prefix.rstrip("/") + "-other"), data=b"o").status_code == 201

    items = list_json(swift, prefix=prefix)
    assert [i["name"] for i in items] == sorted(names)
    for i in items:
        assert set(i) == {"bytes", "hash", "name", "content_type", "last_modified"}
        assert i["bytes"] == len(bodies[i["name"]])
        assert i["hash"] == md5(bodies[i["name"]])

    # paging: limit + marker (marker = last name of the previous page, exclusive)
    pages, marker = [], ""
    while True:
        page = list_json(swift, prefix=prefix, limit=3, marker=marker)
        if not page:
            break
        pages.append([i["name"] for i in page])
        marker = page[-1]["name"]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sum(pages, []) == sorted(names)

    # an empty JSON page is 200 with [], the plain-text listing of nothing is 204
    assert list_json(swift, prefix=prefix, marker=names[-1]) == []
    r = swift.req("GET", swift.url(), params={"prefix": prefix + "zzz"})
    assert r.status_code == 204
    r = swift.req("GET", swift.url(), params={"prefix": prefix, "limit": 2})
    assert r.status_code == 200
    assert r.text.splitlines() == sorted(names)[:2]

    # delimiter folds deeper names into {"subdir": ...}
    top = prefix.split("/")[0]
    folded = list_json(swift, prefix=top, delimiter="/")
    assert {"subdir": prefix} in folded


def test_plus_sign_in_names(swift):
    # semver build metadata puts '+' in chart file names: literal in a path, but a query string
    # is form-decoded, so a raw '+' in prefix/marker means a space: send it as %2B
    d = unique("plus")
    name = d + "/mychart-1.0.0+build.1.tgz"
    assert swift.req("PUT", swift.url(name), data=b"p").status_code == 201
    assert swift.req("GET", swift.url(name.replace("+", "%2B"))).content == b"p"
    raw = swift.req("GET", swift.url() + "?format=json&prefix=" + d + "/mychart-1.0.0+build")
    assert raw.status_code == 200 and raw.json() == []
    enc = swift.req("GET", swift.url() + "?format=json&prefix=" + d + "/mychart-1.0.0%2Bbuild")
    assert [i["name"] for i in enc.json()] == [name]
    # without a Content-Type the object server guesses from the extension
    r = swift.req("HEAD", swift.url(name))
    assert r.headers["Content-Type"]


def test_last_modified_formats(swift):
    name = unique("ts")
    r = swift.req("PUT", swift.url(name), data=b"time")
    assert r.status_code == 201
    put_last_modified = r.headers["Last-Modified"]
    head = swift.req("HEAD", swift.url(name))
    x_timestamp = head.headers["X-Timestamp"]  # e.g. 1795478355.97871: 5 decimals
    assert re.fullmatch(r"\d{10}\.\d{5}", x_timestamp), x_timestamp
    ts = float(x_timestamp)

    [item] = list_json(swift, prefix=name)
    lm = item["last_modified"]  # e.g. 2026-11-23T23:59:15.978710: microseconds, no timezone
    assert LISTING_TS.match(lm), lm
    listed = datetime.datetime.strptime(lm, "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert abs(listed - ts) < 1e-5

    # the Last-Modified header is an HTTP date of the timestamp rounded UP to the next second
    header = email.utils.parsedate_to_datetime(head.headers["Last-Modified"]).timestamp()
    assert head.headers["Last-Modified"].endswith(" GMT")
    assert header == math.ceil(ts)
    assert put_last_modified == head.headers["Last-Modified"]
    if ts != math.floor(ts):
        assert header > listed  # so a listing's time and the header differ


# ---------------------------------------------------------------------------------------------
# token expiry (separate Swift with a short token_life)
# ---------------------------------------------------------------------------------------------
def test_expired_token_is_401(short_swift):
    s = short_swift
    t0 = time.time()
    r = s.login()
    assert r.status_code == 200
    token = r.headers["X-Auth-Token"]
    assert 0 <= int(r.headers["X-Auth-Token-Expires"]) <= SHORT_TOKEN_LIFE
    assert s.req("GET", s.url() + "?format=json", token=token).status_code == 200
    time.sleep(max(0.0, t0 + SHORT_TOKEN_LIFE + 1.0 - time.time()))
    r = s.req("GET", s.url() + "?format=json", token=token)
    assert r.status_code == 401
    assert r.headers.get("Www-Authenticate", "").startswith("Swift realm=")
    # logging in again gives a fresh token that works
    r = s.login()
    assert r.status_code == 200
    fresh = r.headers["X-Auth-Token"]
    assert fresh != token
    assert s.req("GET", s.url() + "?format=json", token=fresh).status_code == 200


# ---------------------------------------------------------------------------------------------
# proxy down and back
# ---------------------------------------------------------------------------------------------
def test_stop_and_restart_proxy(swift):
    name = unique("restart")
    assert swift.req("PUT", swift.url(name), data=b"survives").status_code == 201
    token = swift.token
    old_pid = recorded_pids(swift.dir)["proxy"]
    swift.harness("stop-server", "proxy")
    try:
        assert not alive(old_pid)
        assert "proxy" not in recorded_pids(swift.dir)
        with pytest.raises(requests.ConnectionError):
            swift.req("GET", swift.url(name), timeout=3)
        with pytest.raises(requests.ConnectionError):
            swift.login()
        # the storage servers are still up
        assert "object" in recorded_pids(swift.dir)
    finally:
        t0 = time.monotonic()
        swift.harness("start-server", "proxy")
        print("\nproxy restarted in %.1fs" % (time.monotonic() - t0))
    new_pid = recorded_pids(swift.dir)["proxy"]
    assert new_pid != old_pid and alive(new_pid)
    # tokens live in memcached, so the old token still works after a proxy restart
    r = swift.req("GET", swift.url(name), token=token)
    assert (r.status_code, r.content) == (200, b"survives")
    # starting it twice is refused
    r = run_harness("start-server", str(swift.dir), "proxy")
    assert r.returncode != 0
