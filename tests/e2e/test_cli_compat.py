"""ChartMuseum-compatible configuration: command-line flags, a chartmuseum.yaml
passed with --config (nested and dotted keys), and environment variables must
all configure the same server: port, local storage, depth 1 and basic auth.
"""

from __future__ import annotations

import socket

import pytest
import requests
import yaml

from e2e_lib import HOST, free_port, free_ports, upload, wait_for_index

USER, PASSWORD = "admin", "p4ss-word"
REPO = "myrepo"


def settings_for(mode: str, port: int, storage, tmp_path):
    """(args, env, config, standard_flags) for one way of configuring the server."""
    flags = ["--port", str(port), "--storage", "local", "--storage-local-rootdir", str(storage),
             "--depth", "1", "--basic-auth-user", USER, "--basic-auth-pass", PASSWORD]
    nested = {
        "port": port,
        "listen": {"host": HOST},
        "depth": 1,
        "storage": {"backend": "local", "local": {"rootdir": str(storage)}},
        "basicauth": {"user": USER, "pass": PASSWORD},
    }
    dotted = {
        "port": port,
        "listen.host": HOST,
        "depth": 1,
        "storage.backend": "local",
        "storage.local.rootdir": str(storage),
        "basicauth.user": USER,
        "basicauth.pass": PASSWORD,
    }
    env = {
        "PORT": str(port),
        "LISTEN_HOST": HOST,
        "STORAGE": "local",
        "STORAGE_LOCAL_ROOTDIR": str(storage),
        "DEPTH": "1",
        "BASIC_AUTH_USER": USER,
        "BASIC_AUTH_PASS": PASSWORD,
    }
    if mode == "flags":
        return flags, None, None
    if mode == "config-nested":
        return [], None, nested
    if mode == "config-dotted":
        return [], None, dotted
    if mode == "config-short-flag":
        path = tmp_path / "cm-short.yaml"
        path.write_text(yaml.safe_dump(nested))
        return ["-c", str(path)], None, None
    if mode == "config-env":
        path = tmp_path / "cm-env.yml"
        path.write_text(yaml.safe_dump(dotted))
        return [], {"CONFIG": str(path)}, None
    if mode == "env":
        return [], env, None
    raise ValueError(mode)


MODES = ["flags", "config-nested", "config-dotted", "config-short-flag", "config-env", "env"]


def check_depth1_basic_auth(server, storage, charts):
    good, wrong = (USER, PASSWORD), (USER, PASSWORD + "x")
    chart = charts.get("alpha", "1.0.0")

    resp = server.get("/health")
    assert resp.status_code == 200 and resp.json() == {"healthy": True}, resp.text

    # auth required
    for path in (f"/{REPO}/index.yaml", f"/api/{REPO}/charts"):
        assert server.get(path).status_code == 401, path
        assert server.get(path, auth=wrong).status_code == 401, path
    assert upload(server, chart.data, repo=REPO).status_code == 401
    assert upload(server, chart.data, repo=REPO, auth=wrong).status_code == 401

    # upload at depth 1 with credentials
    resp = upload(server, chart.data, repo=REPO, auth=good)
    assert resp.status_code == 201, (resp.status_code, resp.text)
    assert resp.json() == {"saved": True}
    index = wait_for_index(server, {"alpha": ["1.0.0"]}, repo=REPO, auth=good)
    [entry] = index["entries"]["alpha"]
    assert entry["urls"] == ["charts/alpha-1.0.0.tgz"]

    # stored under the tenant's directory, served back byte for byte
    assert (storage / REPO / chart.filename).read_bytes() == chart.data
    resp = server.get(f"/{REPO}/charts/{chart.filename}", auth=good)
    assert resp.status_code == 200 and resp.content == chart.data
    resp = server.get(f"/api/{REPO}/charts", auth=good)
    assert resp.status_code == 200
    assert [v["version"] for v in resp.json()["alpha"]] == ["1.0.0"]

    # depth is 1: the depth-0 paths are not routes
    assert server.get("/index.yaml", auth=good).status_code == 404
    assert upload(server, chart.data, auth=good).status_code == 404


@pytest.mark.parametrize("mode", MODES)
def test_configuration_sources_behave_the_same(mode, start_chartroom, charts, tmp_path):
    port = free_port()
    storage = tmp_path / f"storage-{mode}"
    storage.mkdir()
    args, env, config = settings_for(mode, port, storage, tmp_path)
    server = start_chartroom(args, env=env, config=config, standard_flags=False,
                             port=port, storage_dir=storage)
    check_depth1_basic_auth(server, storage, charts)


def _status(port: int, auth) -> int:
    return requests.get(f"http://{HOST}:{port}/{REPO}/index.yaml", auth=auth, timeout=5).status_code


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def test_precedence_flag_over_env_over_config(start_chartroom, tmp_path):
    """ChartMuseum: command-line flag > environment variable > config file."""
    storage = tmp_path / "storage"
    storage.mkdir()
    file_port, flag_port, env_port = free_ports(3)
    config = {
        "port": file_port,
        "depth": 1,
        "storage": {"backend": "local", "local": {"rootdir": str(storage)}},
        "basicauth": {"user": USER, "pass": "from-file"},
    }

    # flag beats env beats file
    server = start_chartroom(["--port", str(flag_port), "--basic-auth-pass", "from-flag"],
                             env={"PORT": str(env_port), "BASIC_AUTH_PASS": "from-env"},
                             config=config, standard_flags=False, port=flag_port,
                             storage_dir=storage)
    assert _status(flag_port, (USER, "from-flag")) == 200
    assert _status(flag_port, (USER, "from-env")) == 401
    assert _status(flag_port, (USER, "from-file")) == 401
    assert not _listening(env_port) and not _listening(file_port)
    server.stop()

    # env beats file
    server = start_chartroom([], env={"PORT": str(env_port), "BASIC_AUTH_PASS": "from-env"},
                             config=config, standard_flags=False, port=env_port,
                             storage_dir=storage)
    assert _status(env_port, (USER, "from-env")) == 200
    assert _status(env_port, (USER, "from-file")) == 401
    assert not _listening(file_port)
    server.stop()

    # the file alone
    start_chartroom([], config=config, standard_flags=False, port=file_port,
                    storage_dir=storage)
    assert _status(file_port, (USER, "from-file")) == 200
    assert _status(file_port, (USER, "from-env")) == 401
