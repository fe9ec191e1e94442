"""A real Keystone (Debian 12's python3-keystone, sqlite, fernet tokens) on 127.0.0.1, and a second
Swift proxy that accepts its tokens, next to a Swift started by swift-harness.sh.

    python3 keystone_helper.py serve CONF PORT     (run by Debian's /usr/bin/python3: the server)

The rest is imported by the tests (any Python with `requests`): `Keystone.start(...)` writes the
config, runs `keystone-manage` (db_sync, fernet_setup, credential_setup, bootstrap), starts the
server and the Keystone-aware Swift proxy as child processes, and creates what chartroom needs:
project `charts`, user `chartroom` (role member), the object-store service and its endpoints in
RegionOne, container `charts`, and an application credential. `stop()` ends both children by PID.

Install: apt-get install --no-install-recommends python3-keystone python3-keystonemiddleware
(about 120 packages, ~75 s here; no service is started by the packages).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DEBIAN_PY = "/usr/bin/python3"
ADMIN_PASSWORD = "admin-secret"
USER = "chartroom"
USER_PASSWORD = "chartroom-secret"
PROJECT = "charts"
REGION = "RegionOne"


def installed():
    return (shutil.which("keystone-manage") is not None
            and subprocess.run([DEBIAN_PY, "-c", "import keystone, keystonemiddleware"],
                               capture_output=True).returncode == 0)


def serve(conf, port):
    """Keystone under wsgiref, one request at a time (sqlite allows one writer; threads ran into
    "database is locked")."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    os.environ["OS_KEYSTONE_CONFIG_FILES"] = conf
    sys.argv[1:] = []  # keystone parses the command line itself
    from keystone.server.wsgi import initialize_public_application

    class Quiet(WSGIRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("keystone: " + (fmt % args) + "\n")

    app = initialize_public_application()
    make_server("127.0.0.1", int(port), app, handler_class=Quiet).serve_forever()


def setup(conf, proxy_port, out):
    """Creates project, user, role assignment, the object-store service and its endpoints
    through Keystone's own provider APIs (run before the server starts: through the HTTP API on
    sqlite, the second catalog write of a server process failed with "database is locked")."""
    import json
    import uuid

    sys.argv[1:] = []
    import keystone.conf
    from keystone.common import driver_hints, provider_api, sql
    from keystone.server import backends

    CONF = keystone.conf.CONF
    keystone.conf.configure()
    sql.initialize()
    CONF(args=[], project="keystone", default_config_files=[conf])
    backends.load_backends()
    p = provider_api.ProviderAPIs

    project_id = uuid.uuid4().hex
    p.resource_api.create_project(project_id, {
        "id": project_id, "name": PROJECT, "domain_id": "default", "enabled": True,
        "description": "chartroom tests"})
    user = p.identity_api.create_user(user_ref={
        "name": USER, "domain_id": "default", "enabled": True, "password": USER_PASSWORD})
    hints = driver_hints.Hints()
    hints.add_filter("name", "member")
    member = p.role_api.list_roles(hints)[0]
    p.assignment_api.add_role_to_user_and_project(
        user_id=user["id"], project_id=project_id, role_id=member["id"])
    service_id = uuid.uuid4().hex
    p.catalog_api.create_service(service_id, {
        "id": service_id, "type": "object-store", "name": "swift", "enabled": True})
    url = "http://127.0.0.1:%s/v1/KEY_$(project_id)s" % proxy_port
    for iface in ("public", "internal"):
        eid = uuid.uuid4().hex
        p.catalog_api.create_endpoint(eid, {
            "id": eid, "service_id": service_id, "interface": iface, "region_id": REGION,
            "url": url, "enabled": True})
    with open(out, "w") as f:
        json.dump({"project_id": project_id, "user_id": user["id"]}, f)


class Keystone:
    def __init__(self, d: Path, port: int, proxy_port: int):
        self.dir = d
        self.port = port
        self.proxy_port = proxy_port
        self.url = "http://127.0.0.1:%d" % port
        self.procs: dict[str, subprocess.Popen] = {}
        self.project_id = ""
        self.app_cred_id = ""
        self.app_cred_secret = ""
        self.storage_url = ""
        self._ids: dict[str, str] = {}

    # -- start -------------------------------------------------------------------------------
    @classmethod
    def start(cls, d: Path, port: int, swift_dir: Path, proxy_port: int, memcached_port: int,
              token_life: int = 3600) -> "Keystone":
        import requests

        k = cls(d, port, proxy_port)
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "keystone.conf"
        conf.write_text(f"""[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///{d}/keystone.db
[token]
provider = fernet
expiration = {token_life}
[fernet_tokens]
key_repository = {d}/fernet-keys
[fernet_receipts]
key_repository = {d}/fernet-receipts
[credential]
key_repository = {d}/credential-keys
[cache]
enabled = false
""")
        user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        group = subprocess.run(["id", "-gn"], capture_output=True, text=True).stdout.strip()
        manage = ["keystone-manage", "--config-file", str(conf)]
        steps = [
            ["db_sync"],
            ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
            ["credential_setup", "--keystone-user", user, "--keystone-group", group],
            ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
             "--bootstrap-admin-url", k.url + "/v3", "--bootstrap-public-url", k.url + "/v3",
             "--bootstrap-internal-url", k.url + "/v3", "--bootstrap-region-id", REGION],
        ]
        for step in steps:
            r = subprocess.run(manage + step, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise RuntimeError("keystone-manage %s failed:\n%s" % (step[0], r.stderr[-3000:]))
        ids = d / "ids.json"
        r = subprocess.run([DEBIAN_PY, str(Path(__file__).resolve()), "setup", str(conf),
                            str(proxy_port), str(ids)], capture_output=True, text=True,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError("keystone setup failed:\n%s" % r.stderr[-3000:])
        import json
        k._ids = json.loads(ids.read_text())
        k._spawn("keystone", [DEBIAN_PY, str(Path(__file__).resolve()), "serve", str(conf),
                              str(port)])
        k._wait_http(k.url + "/v3", "keystone")
        k._setup_identity(requests)
        k._start_proxy(swift_dir, memcached_port)
        k._setup_storage(requests)
        return k

    def _spawn(self, name, argv):
        log = open(self.dir / ("%s.log" % name), "ab")
        self.procs[name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        log.close()

    def _wait_http(self, url, name, timeout=90):
        import requests

        deadline = time.monotonic() + timeout
        while True:
            p = self.procs[name]
            if p.poll() is not None:
                raise RuntimeError("%s exited with %s:\n%s" % (
                    name, p.returncode, (self.dir / ("%s.log" % name)).read_text()[-3000:]))
            try:
                if requests.get(url, timeout=2).status_code < 500:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("%s did not answer within %ss" % (name, timeout))
            time.sleep(0.2)

    def token(self, requests, user, password, project, domain="Default"):
        body = {"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": domain}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"name": domain}}}}}
        r = requests.post(self.url + "/v3/auth/tokens", json=body, timeout=30)
        assert r.status_code == 201, r.text
        return r.headers["X-Subject-Token"], r.json()

    def _setup_identity(self, requests):
        user_id = self._ids["user_id"]
        self.project_id = self._ids["project_id"]
        # An application credential, created by the user itself.
        user_token, _ = self.token(requests, USER, USER_PASSWORD, PROJECT)
        r = requests.post("%s/v3/users/%s/application_credentials" % (self.url, user_id),
                          json={"application_credential": {"name": "chartroom-ac"}},
                          headers={"X-Auth-Token": user_token}, timeout=30)
        assert r.status_code == 201, r.text
        ac = r.json()["application_credential"]
        self.app_cred_id, self.app_cred_secret = ac["id"], ac["secret"]

    def _start_proxy(self, swift_dir: Path, memcached_port: int):
        etc = swift_dir / "etc"
        base = (etc / "proxy-server.conf").read_text()
        conf = etc / "proxy-keystone.conf"
        text = base.replace("bind_port = ", "bind_port = %d\n# was: " % self.proxy_port, 1)
        text = text.replace(
            "pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
            "bulk tempurl tempauth copy slo dlo versioned_writes proxy-logging proxy-server",
            "pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
            "authtoken keystoneauth copy slo dlo proxy-logging proxy-server")
        assert "authtoken keystoneauth" in text, "unexpected proxy-server.conf"
        text += f"""
[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {self.url}/v3
auth_url = {self.url}/v3
auth_type = password
project_domain_id = default
user_domain_id = default
project_name = admin
username = admin
password = {ADMIN_PASSWORD}
delay_auth_decision = True
memcached_servers = 127.0.0.1:{memcached_port}

[filter:keystoneauth]
use = egg:swift#keystoneauth
operator_roles = admin, member
reseller_prefix = KEY
"""
        conf.write_text(text)
        self._spawn("proxy-keystone", [DEBIAN_PY, str(etc / "swift_helper.py"), "serve", "proxy",
                                       str(conf)])
        self._wait_http("http://127.0.0.1:%d/healthcheck" % self.proxy_port, "proxy-keystone")

    def _setup_storage(self, requests):
        token, doc = self.token(requests, USER, USER_PASSWORD, PROJECT)
        urls = [e["url"] for s in doc["token"]["catalog"] if s["type"] == "object-store"
                for e in s["endpoints"] if e["interface"] == "public"]
        assert urls, doc
        self.storage_url = urls[0]
        r = requests.put(self.storage_url + "/charts", headers={"X-Auth-Token": token}, timeout=30)
        assert r.status_code in (201, 202), (r.status_code, r.text)

    def env_password(self):
        return {"OS_AUTH_URL": self.url + "/v3", "OS_USERNAME": USER,
                "OS_PASSWORD": USER_PASSWORD, "OS_PROJECT_NAME": PROJECT,
                "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                "OS_REGION_NAME": REGION}

    def env_app_credential(self):
        return {"OS_AUTH_URL": self.url, "OS_APPLICATION_CREDENTIAL_ID": self.app_cred_id,
                "OS_APPLICATION_CREDENTIAL_SECRET": self.app_cred_secret,
                "OS_REGION_NAME": REGION}

    # -- stop --------------------------------------------------------------------------------
    def stop(self):
        for name, p in self.procs.items():
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "setup":
        setup(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: keystone_helper.py serve CONF PORT | setup CONF PROXY_PORT OUT")
