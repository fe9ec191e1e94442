"""chartroom (the binary) on Swift over HTTPS, trusting a private CA given by
`storage.openstack.cacert` (flag `--storage-openstack-cacert`).

nginx terminates TLS on 127.0.0.1 in front of a Swift started by swift-harness.sh with
SWIFT_STORAGE_URL_SCHEME=https. nginx passes `Host: 127.0.0.1:<nginx port>` on, so tempauth's
login answers with `X-Storage-Url: https://127.0.0.1:<nginx port>/v1/AUTH_test`, and every request
chartroom makes (login and storage) goes through nginx, which listens only with TLS and logs the
TLS protocol of each request. A throw-away CA and a server certificate for IP 127.0.0.1 are made
with the `openssl` CLI for each run.

- with the CA file (flag, or config key): upload, index, download byte-identical, all over TLS;
- without it, or with another CA: start-up fails and says the certificate is not trusted;
- a CA file that is not PEM (or is missing): start-up fails naming the file.

Run:  CHARTROOM_BIN=target/debug/chartroom python3 -m pytest -q tests/swift/test_swift_tls.py
Needs Swift installed (`sudo tests/swift/swift-harness.sh install`), nginx
(scripts/install-test-deps installs nginx-light), openssl and the e2e Python packages.
Ports: SWIFT_TLS_PORT (default 18570) .. +4 for Swift; nginx and chartroom take free ports.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))

from e2e_lib import ChartroomPool, free_port, upload, wait_for_index  # noqa: E402
from test_harness import alive, installed, reap, running_swift  # noqa: E402,F401
from test_swift_e2e import binary, make_chart  # noqa: E402,F401  (fixture + helper)

TLS_PORT = int(os.environ.get("SWIFT_TLS_PORT", "18570"))
HOST = "127.0.0.1"
# Variables that would give chartroom (rustls-native-certs, or the OpenStack fallback) a CA file
# other than the one a test passes.
CA_ENV_VARS = ("OS_CACERT", "STORAGE_OPENSTACK_CACERT", "SSL_CERT_FILE", "SSL_CERT_DIR")


def unique(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


# ---------------------------------------------------------------------------------------------
# A private CA and a certificate for 127.0.0.1
# ---------------------------------------------------------------------------------------------
def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "openssl %s failed:\n%s%s" % (" ".join(args), r.stdout, r.stderr)


class Pki:
    def __init__(self, d: Path):
        self.dir = d
        self.ca = d / "ca.pem"
        self.ca_der = d / "ca.der"
        self.other_ca = d / "other-ca.pem"  # a valid CA that did not sign the server's certificate
        self.cert = d / "server.pem"
        self.key = d / "server.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl not found: apt-get install openssl")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=chartroom test CA %s" % uuid.uuid4().hex[:8],
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "server.ext").write_text(
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "0x%s" % uuid.uuid4().hex[:16], "-days", "2",
            "-extfile", "server.ext", "-out", "server.pem", cwd=d)
    openssl("x509", "-in", "ca.pem", "-outform", "DER", "-out", "ca.der", cwd=d)
    openssl("req", "-x509", *ec, "-keyout", "other-ca.key", "-out", "other-ca.pem", "-days", "2",
            "-subj", "/CN=chartroom other test CA", cwd=d)
    openssl("verify", "-CAfile", "ca.pem", "server.pem", cwd=d)
    return Pki(d)


# ---------------------------------------------------------------------------------------------
# nginx: TLS on 127.0.0.1 only, proxying to Swift's proxy server
# ---------------------------------------------------------------------------------------------
NGINX_CONF = """\
{user}worker_processes 1;
events {{ worker_connections 64; }}
http {{
    log_format tls '$ssl_protocol $status "$request" $request_length $bytes_sent';
    access_log {dir}/access.log tls;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen {host}:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size 0;
        location / {{
            proxy_pass http://{host}:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # tempauth builds X-Storage-Url from the Host header (and its storage_url_scheme).
            proxy_set_header Host {host}:$server_port;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, d: Path, port: int, proc: subprocess.Popen):
        self.dir = d
        self.port = port
        self.proc = proc
        self.access_log = d / "access.log"
        self.error_log = d / "error.log"
        self.auth_url = "https://%s:%d/auth/v1.0" % (HOST, port)

    def mark(self):
        """Where both logs end now; pass it to `lines_since` or `errors`."""
        return tuple(f.stat().st_size if f.exists() else 0
                     for f in (self.access_log, self.error_log))

    def lines_since(self, mark):
        """Access-log lines written after `mark`."""
        return _read_from(self.access_log, mark[0]).splitlines()

    def errors(self, mark=(0, 0)):
        """Error-log text written after `mark` (all of it by default)."""
        return _read_from(self.error_log, mark[1])


def _read_from(path, offset):
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def children_of(pid):
    kids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(p.name))
    return kids


def stop_nginx(proc):
    """TERM (fast shutdown: the master stops its workers); after 10 s KILL both by PID.
    Returns the workers' PIDs."""
    workers = []
    if proc.poll() is None:
        workers = children_of(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            workers = [w for w in workers if alive(w)]
            proc.kill()
            proc.wait()
            for w in workers:  # re-parented to pytest (a child subreaper, see running_swift)
                try:
                    os.kill(w, 9)
                except ProcessLookupError:
                    pass
                reap(w)
    return workers


@pytest.fixture(scope="module")
def swift(installed, tmp_path_factory):  # noqa: F811
    with running_swift(tmp_path_factory, "swift-tls", TLS_PORT, 86400,
                       env={"SWIFT_STORAGE_URL_SCHEME": "https"}) as s:
        yield s


@pytest.fixture(scope="module")
def nginx(swift, pki, tmp_path_factory):
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                    else None)
    if exe is None:
        pytest.fail("nginx not found: scripts/install-test-deps (apt-get install nginx-light)")
    d = tmp_path_factory.mktemp("nginx")
    (d / "tmp").mkdir()
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(
        # As root, nginx's workers would run as nobody and could not reach pytest's 0700 tmp dirs.
        user="user root root;\n" if os.geteuid() == 0 else "",
        dir=d, host=HOST, port=port, upstream=swift.port, cert=pki.cert, key=pki.key))
    err = d / "error.log"
    argv = [exe, "-p", "%s/" % d, "-e", str(err), "-c", str(conf),
            "-g", "daemon off; pid %s/nginx.pid; error_log %s info;" % (d, err)]
    with open(d / "console.log", "wb") as console:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT)
    server = Nginx(d, port, proc)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail("nginx exited with %s:\n%s\n%s" % (
                    proc.returncode, (d / "console.log").read_text(errors="replace"),
                    server.errors()))
            try:
                socket.create_connection((HOST, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("nginx does not listen on %s:%d:\n%s"
                                % (HOST, port, server.errors()))
                time.sleep(0.05)
        yield server
    finally:
        workers = stop_nginx(proc)
        assert proc.returncode is not None
        assert not [w for w in workers if alive(w)], workers


@pytest.fixture
def pool(binary, tmp_path, monkeypatch):
    for var in CA_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    p = ChartroomPool(binary, tmp_path)
    yield p
    p.stop_all()


def start_via_nginx(pool, swift, nginx, prefix, *args, config=None, wait=True):
    """chartroom on Swift through nginx: ST_AUTH is nginx's https URL."""
    port = free_port()
    return pool.start(
        ["--port", str(port), "--storage", "openstack", "--storage-openstack-auth", "v1",
         "--storage-openstack-container", swift.container,
         "--storage-openstack-prefix", prefix, *args],
        env={"ST_AUTH": nginx.auth_url, "ST_USER": swift.user, "ST_KEY": swift.key},
        config=config, standard_flags=False, port=port, wait=wait)


def failed_start(pool, swift, nginx, *args):
    server = start_via_nginx(pool, swift, nginx, unique("bad"), *args, wait=False)
    try:
        rc = server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("chartroom still runs after 30 s:\n" + server.log())
    assert rc != 0, server.log()
    return server.log()


def tls_lines(lines, method, path):
    """Access-log lines of `method path`, as (tls protocol, status)."""
    out = []
    for line in lines:
        m = re.match(r'^(\S+) (\d{3}) "(\S+) (\S+) HTTP/[\d.]+"', line)
        if m and m.group(3) == method and m.group(4).split("?")[0] == path:
            out.append((m.group(1), int(m.group(2))))
    return out


# ---------------------------------------------------------------------------------------------
# The setup itself
# ---------------------------------------------------------------------------------------------
def test_nginx_serves_swift_over_tls_only(swift, nginx, pki):
    http = requests.Session()
    http.trust_env = False
    creds = {"X-Auth-User": swift.user, "X-Auth-Key": swift.key}
    # Through nginx with the private CA: the storage URL points back at nginx, over https.
    r = http.get(nginx.auth_url, headers=creds, verify=str(pki.ca), timeout=10)
    assert r.status_code == 200, r.text
    storage_url = r.headers["X-Storage-Url"]
    assert storage_url == "https://%s:%d/v1/AUTH_test" % (HOST, nginx.port)
    r = http.get(storage_url + "/" + swift.container + "?format=json",
                 headers={"X-Auth-Token": r.headers["X-Auth-Token"]}, verify=str(pki.ca),
                 timeout=10)
    assert r.status_code == 200, r.text
    # The system's trust store does not know the CA.
    with pytest.raises(requests.exceptions.SSLError):
        http.get(nginx.auth_url, headers=creds, timeout=10)
    # Plain HTTP on nginx's port is refused: it speaks only TLS.
    r = http.get("http://%s:%d/auth/v1.0" % (HOST, nginx.port), headers=creds, timeout=10)
    assert r.status_code == 400 and "X-Storage-Url" not in r.headers
    # Swift's own port still answers plain http, with https storage URLs (harness setting).
    r = swift.login()
    assert r.status_code == 200
    assert r.headers["X-Storage-Url"] == "https://%s:%d/v1/AUTH_test" % (HOST, swift.port)
    assert swift.storage_url == "http://%s:%d/v1/AUTH_test" % (HOST, swift.port)


# ---------------------------------------------------------------------------------------------
# chartroom with the CA: everything over TLS
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["flag", "config"])
def test_upload_index_download_over_tls(swift, nginx, pki, pool, how):
    prefix = unique("tls-" + how)
    if how == "flag":
        args, config = ["--storage-openstack-cacert", str(pki.ca)], None
    else:
        args, config = [], {"storage": {"openstack": {"cacert": str(pki.ca)}}}
    mark = nginx.mark()
    server = start_via_nginx(pool, swift, nginx, prefix, *args, config=config)
    pkg = make_chart("tlschart", "1.2.3", "uploaded over TLS via " + how)
    r = upload(server, pkg)
    assert r.status_code == 201, r.text
    assert r.json() == {"saved": True}
    index = wait_for_index(server, {"tlschart": ["1.2.3"]})
    entry = index["entries"]["tlschart"][0]
    assert entry["digest"] == hashlib.sha256(pkg).hexdigest()
    # In Swift (read directly, over plain http), whole.
    obj = swift.req("GET", swift.url(prefix + "/tlschart-1.2.3.tgz"))
    assert obj.status_code == 200 and obj.content == pkg
    # A fresh instance has nothing cached: its download comes from Swift, through nginx.
    server.stop()
    again = start_via_nginx(pool, swift, nginx, prefix, *args, config=config)
    wait_for_index(again, {"tlschart": ["1.2.3"]})
    r = again.get("/charts/tlschart-1.2.3.tgz")
    assert r.status_code == 200
    assert r.content == pkg
    assert yaml.safe_load(again.get("/index.yaml").text)["entries"]["tlschart"][0]["digest"] \
        == entry["digest"]
    # nginx saw every kind of request, each over TLS (it has no plain listener).
    lines = nginx.lines_since(mark)
    obj_path = "/v1/AUTH_test/%s/%s/tlschart-1.2.3.tgz" % (swift.container, prefix)
    logins = tls_lines(lines, "GET", "/auth/v1.0")
    puts = tls_lines(lines, "PUT", obj_path)
    gets = tls_lines(lines, "GET", obj_path)
    listings = tls_lines(lines, "GET", "/v1/AUTH_test/" + swift.container)
    assert len(logins) >= 2 and all(s == 200 for _p, s in logins), lines
    assert (any(s == 201 for _p, s in puts) and any(s == 200 for _p, s in gets)
            and any(s == 200 for _p, s in listings)), "\n".join(lines)
    for proto, _status in logins + puts + gets + listings:
        assert proto.startswith("TLSv1."), "\n".join(lines)
    assert again.get("/health").status_code == 200


# ---------------------------------------------------------------------------------------------
# chartroom without the CA, or with a CA file that is not PEM
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ca", ["none", "other"])
def test_without_the_ca_startup_fails_on_the_certificate(swift, nginx, pki, pool, ca):
    mark = nginx.mark()
    args = ["--storage-openstack-cacert", str(pki.other_ca)] if ca == "other" else []
    log = failed_start(pool, swift, nginx, *args)
    # e.g. "swift login at https://127.0.0.1:P/auth/v1.0: invalid peer certificate: UnknownIssuer"
    assert "swift login at " + nginx.auth_url in log, log
    assert re.search(r"certificate", log, re.I), log
    # It reached nginx, and it (not nginx) gave up during the handshake: no request got through.
    assert nginx.lines_since(mark) == []
    assert "SSL_do_handshake() failed" in nginx.errors(mark), nginx.errors(mark)


@pytest.mark.parametrize("kind", ["text", "der", "broken-pem", "missing"])
def test_ca_file_that_is_not_pem_is_a_startup_error(swift, nginx, pki, pool, tmp_path, kind):
    ca = tmp_path / ("ca-%s.pem" % kind)
    if kind == "text":
        ca.write_text("this is not a certificate\n")
    elif kind == "der":
        ca.write_bytes(pki.ca_der.read_bytes())
    elif kind == "broken-pem":
        ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
                      "-----END CERTIFICATE-----\n")
    mark = nginx.mark()
    log = failed_start(pool, swift, nginx, "--storage-openstack-cacert", str(ca))
    assert str(ca) in log, log
    if kind == "missing":
        assert "cannot read CA bundle" in log, log
    else:
        assert "no certificates in" in log or "cannot parse CA bundle" in log, log
    assert nginx.lines_since(mark) == []  # refused before talking to Swift
