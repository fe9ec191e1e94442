"""HTTPS and client certificates with real Helm clients (issue 9).

A throw-away PKI is made with the openssl command: a CA, a server certificate for
127.0.0.1, a client certificate from the CA and one from another CA. Helm adds the
repository with ``--ca-file`` (and ``--cert-file``/``--key-file`` for mTLS) through
helm-sdkpy, downloads a chart through the stored repository settings, and pulls with
helm-python-sdk trusting the CA through SSL_CERT_FILE (Go reads it for its roots).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from e2e_lib import HOST, HelmHome, build_package, helm_ok, run_helm

PKI_SCRIPT = r"""
set -e
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
         -out "$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null; }
ca ca
ca other-ca
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
sign() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "$3" -days 2 \
     -extfile "$4" -out "$1.pem" 2>/dev/null
}
sign server ca 11 server.ext
sign client ca 12 client.ext
sign rogue other-ca 13 client.ext
"""


@pytest.fixture
def pki(tmp_path) -> Path:
    d = tmp_path / "pki"
    d.mkdir()
    subprocess.run(["sh", "-c", PKI_SCRIPT], cwd=d, check=True)
    return d


class TrustingHome(HelmHome):
    """A Helm home whose Go TLS stack trusts only the test CA (SSL_CERT_FILE)."""

    def __init__(self, base: Path, ca: Path):
        super().__init__(base)
        self.ca = ca

    def env(self) -> dict[str, str]:
        env = super().env()
        env["SSL_CERT_FILE"] = str(self.ca)
        env.pop("SSL_CERT_DIR", None)
        return env


def chart_package(name: str, version: str) -> bytes:
    return build_package({
        f"{name}/Chart.yaml": f"apiVersion: v2\nname: {name}\nversion: {version}\n",
        f"{name}/values.yaml": "replicas: 1\n",
    })


def start_https(start_chartroom, pki: Path, mtls: bool):
    args = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    if mtls:
        args += ["--tls-ca-cert", str(pki / "ca.pem")]
    server = start_chartroom(args, wait=False)
    url = f"https://{HOST}:{server.port}"
    cert = (str(pki / "client.pem"), str(pki / "client.key")) if mtls else None
    deadline = time.monotonic() + 20
    while True:
        assert server.proc.poll() is None, server.log()
        try:
            if requests.get(url + "/health", verify=str(pki / "ca.pem"), cert=cert,
                            timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    resp = requests.post(url + "/api/charts", data=chart_package("tlschart", "1.2.3"),
                         verify=str(pki / "ca.pem"), cert=cert, timeout=10)
    assert resp.status_code == 201, resp.text
    return server, url


def test_helm_over_https_with_ca_file(start_chartroom, helm_home, pki, tmp_path):
    server, url = start_https(start_chartroom, pki, mtls=False)
    ca = str(pki / "ca.pem")
    # repo add without the CA fails (certificate signed by an unknown authority).
    home = helm_home("noca")
    [r] = run_helm("helm_sdkpy", [{"op": "repo_add", "name": "tls", "url": url}], home)
    assert not r.ok and "certificate" in r.error, r.error
    # With --ca-file: repo add, then a chart downloaded through the stored settings.
    home = helm_home("ca")
    results = run_helm("helm_sdkpy", [
        {"op": "repo_add", "name": "tls", "url": url, "ca_file": ca},
        {"op": "show_chart", "ref": "tls/tlschart"},
    ], home)
    helm_ok(results[0], "repo add --ca-file")
    assert "tlschart" in helm_ok(results[1], "show chart")
    assert "tlschart" in home.cached_index("tls")["entries"]
    # helm pull, trusting the CA.
    trusting = TrustingHome(tmp_path / "trusting", pki / "ca.pem")
    dest = tmp_path / "pulled"
    dest.mkdir()
    [r] = run_helm("helm_python", [{"op": "pull", "chart": "tlschart", "repo_url": url,
                                    "version": "1.2.3", "destination": str(dest)}], trusting)
    helm_ok(r, "helm pull over https")
    assert (dest / "tlschart-1.2.3.tgz").is_file()
    # Plain HTTP to the HTTPS port gets a 400 saying so (as from Go's servers), never a 200.
    try:
        resp = requests.get(f"http://{HOST}:{server.port}/health", timeout=5)
        assert resp.status_code == 400 and "HTTPS server" in resp.text, resp.text
    except requests.ConnectionError:
        pass


def test_helm_with_client_certificate(start_chartroom, helm_home, pki):
    server, url = start_https(start_chartroom, pki, mtls=True)
    ca = str(pki / "ca.pem")
    good = {"cert_file": str(pki / "client.pem"), "key_file": str(pki / "client.key")}
    rogue = {"cert_file": str(pki / "rogue.pem"), "key_file": str(pki / "rogue.key")}
    home = helm_home("mtls")
    results = run_helm("helm_sdkpy", [
        {"op": "repo_add", "name": "tls", "url": url, "ca_file": ca, **good},
        {"op": "show_chart", "ref": "tls/tlschart"},
    ], home)
    helm_ok(results[0], "repo add with a client certificate")
    assert "tlschart" in helm_ok(results[1], "show chart with a client certificate")
    for what, extra in (("no client certificate", {}),
                        ("a certificate from another CA", rogue)):
        home = helm_home("refused")
        [r] = run_helm("helm_sdkpy", [
            {"op": "repo_add", "name": "tls", "url": url, "ca_file": ca, **extra}], home)
        assert not r.ok, f"repo add with {what} succeeded"
    # requests likewise.
    with pytest.raises(requests.RequestException):
        requests.get(url + "/index.yaml", verify=ca, timeout=5)
    assert requests.get(url + "/index.yaml", verify=ca, timeout=5,
                        cert=(good["cert_file"], good["key_file"])).status_code == 200
