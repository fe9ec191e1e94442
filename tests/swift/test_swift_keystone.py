"""chartroom on Swift with Keystone v3 auth (`storage.openstack.auth: auto`), against a real
Keystone: Debian 12's python3-keystone on 127.0.0.1 with sqlite and fernet tokens, and a second
Swift proxy with keystonemiddleware's authtoken + Swift's keystoneauth (accounts KEY_<project>),
in front of the servers of a Swift started by swift-harness.sh. See keystone_helper.py.

Run:  CHARTROOM_BIN=target/debug/chartroom python3 -m pytest -q tests/swift/test_swift_keystone.py
Needs: sudo apt-get install --no-install-recommends python3-keystone python3-keystonemiddleware
(the test fails with that hint when they are missing, unless CHARTROOM_SKIP_KEYSTONE=1).
Ports: SWIFT_KEYSTONE_PORT (default 18540) .. +4 Swift, +10 Keystone, +11 the Keystone proxy.
Keystone's tokens live KEYSTONE_TOKEN_LIFE seconds (10), so renewal happens during the test.
"""
from __future__ import annotations

import os
import re
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from e2e_lib import ChartroomPool, find_binary, free_port, upload, wait_for_index  # noqa: E402
from test_harness import installed, running_swift  # noqa: E402,F401
from test_swift_e2e import make_chart  # noqa: E402

import keystone_helper  # noqa: E402

BASE = int(os.environ.get("SWIFT_KEYSTONE_PORT", "18540"))
TOKEN_LIFE = 10


@pytest.fixture(scope="module")
def keystone(installed, tmp_path_factory):  # noqa: F811
    if not keystone_helper.installed():
        if os.environ.get("CHARTROOM_SKIP_KEYSTONE") == "1":
            pytest.skip("CHARTROOM_SKIP_KEYSTONE=1 and Keystone is not installed")
        pytest.fail("Keystone is not installed: apt-get install --no-install-recommends "
                    "python3-keystone python3-keystonemiddleware")
    with running_swift(tmp_path_factory, "swift-keystone", BASE, 86400) as swift:
        t0 = time.monotonic()
        k = None
        try:
            k = keystone_helper.Keystone.start(
                tmp_path_factory.mktemp("keystone"), BASE + 10, swift.dir, BASE + 11, BASE + 4,
                token_life=TOKEN_LIFE)
            print("\nkeystone and its swift proxy ready in %.1fs" % (time.monotonic() - t0))
            yield k
        finally:
            if k is not None:
                k.stop()


@pytest.fixture
def pool(tmp_path):
    b = find_binary()
    if b is None:
        pytest.fail("chartroom binary not found: cargo build, or set CHARTROOM_BIN")
    p = ChartroomPool(b, tmp_path)
    yield p
    p.stop_all()


def start(pool, env, *args, wait=True):
    port = free_port()
    return pool.start(
        ["--port", str(port), "--storage", "openstack", "--storage-openstack-container", "charts",
         "--storage-openstack-prefix", "ks-%s" % uuid.uuid4().hex[:8], "--debug", *args],
        env=env, standard_flags=False, port=port, wait=wait)


def round_trip(server, name):
    pkg = make_chart(name, "1.0.0")
    r = upload(server, pkg)
    assert r.status_code == 201, r.text
    wait_for_index(server, {name: ["1.0.0"]})
    r = server.get("/charts/%s-1.0.0.tgz" % name)
    assert r.status_code == 200 and r.content == pkg


def test_password_project_scope(keystone, pool):
    server = start(pool, keystone.env_password())
    round_trip(server, "pw")
    assert "storage_url=%s" % keystone.storage_url in server.log()


def test_application_credential(keystone, pool):
    server = start(pool, keystone.env_app_credential())
    round_trip(server, "appcred")


def test_password_from_file(keystone, pool, tmp_path):
    f = tmp_path / "os_password"
    f.write_text(keystone_helper.USER_PASSWORD + "\n")
    env = dict(keystone.env_password(), OS_PASSWORD="")
    server = start(pool, env, "--storage-openstack-passwordfile", str(f))
    round_trip(server, "pwfile")


def test_token_renewed_under_traffic(keystone, pool):
    server = start(pool, keystone.env_password(), "--cache-interval", "1s")
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 2.5 * TOKEN_LIFE:
        r = upload(server, make_chart("renew", "1.0.%d" % n))
        assert r.status_code == 201, "after %.1fs: %s" % (time.monotonic() - t0, r.text)
        assert server.get("/charts/renew-1.0.%d.tgz" % n).status_code == 200
        n += 1
        time.sleep(0.5)
    logins = len(re.findall(r"swift login endpoint=", server.log_path.read_text()))
    assert logins >= 3, "tokens of %ds over %ds: %d logins" % (TOKEN_LIFE, 2.5 * TOKEN_LIFE, logins)
    assert server.get("/health").status_code == 200


@pytest.mark.parametrize("change,message", [
    ({"OS_PASSWORD": "wrong"}, "credentials rejected (401 Unauthorized)"),
    ({"OS_REGION_NAME": "Elsewhere"}, 'no public object-store endpoint in region "Elsewhere"'),
    ({"OS_PROJECT_NAME": ""}, ""),
])
def test_startup_errors(keystone, pool, change, message):
    env = dict(keystone.env_password(), **change)
    server = start(pool, env, wait=False)
    if not message:
        # Unscoped (no project): Keystone gives a token without a catalog.
        message = "no service catalog"
    rc = server.proc.wait(timeout=30)
    assert rc != 0
    assert message in server.log(), server.log()
