"""chartroom against real Helm clients.

Charts are packaged by Helm (helm-python-sdk, Helm v4.2), uploaded over the
ChartMuseum API, then read back with Helm: `repo add` / `repo update` /
`repo list` / `show chart` through helm-sdkpy (Helm v4.3), `pull` and
`repo index` through helm-python-sdk. Each Helm call runs in a process of its
own with fresh HELM_* directories.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from e2e_lib import (
    SIGNING_KEY_NAME,
    basic_auth_header,
    compare_indexes,
    copy_charts,
    fetch_index,
    helm_ok,
    run_helm,
    upload,
    wait_for_index,
    write_keyrings,
)

USER, PASSWORD = "helmuser", "s3cret:with-colon"


def upload_all(server, charts, *, repo="", auth=None):
    """Upload every chart, alternating raw body and multipart; return the expected index."""
    for i, chart in enumerate(charts.charts):
        mode = "raw" if i % 2 == 0 else "multipart"
        resp = upload(server, chart.data, repo=repo, mode=mode, filename=chart.filename, auth=auth)
        assert resp.status_code == 201, (
            f"{mode} upload of {chart.filename}: {resp.status_code} {resp.text[:300]}")
        assert resp.json() == {"saved": True}, resp.text
    return wait_for_index(server, charts.versions(), repo=repo, auth=auth)


@pytest.fixture(scope="module")
def repo(module_chartroom, charts):
    """A depth-0 server without auth holding every test chart."""
    server = module_chartroom()
    upload_all(server, charts)
    return server


def pull_ops(server_url, dest_base, cases, **creds):
    ops = []
    for i, (chart, version, _expected) in enumerate(cases):
        op = {"op": "pull", "chart": chart, "repo_url": server_url,
              "destination": str(dest_base / f"pull-{i}")}
        if version is not None:
            op["version"] = version
        op.update(creds)
        (dest_base / f"pull-{i}").mkdir(parents=True)
        ops.append(op)
    return ops


def check_pulls(results, cases, charts, dest_base):
    problems = []
    for i, ((chart, version, expected), res) in enumerate(zip(cases, results)):
        label = f"pull {chart} version={version!r}"
        if not res.ok:
            problems.append(f"{label}: {res.type}: {res.error}")
            continue
        files = sorted(p.name for p in (dest_base / f"pull-{i}").iterdir())
        want = charts.get(chart, expected)
        if files != [want.filename]:
            problems.append(f"{label}: got files {files}, want [{want.filename}]")
            continue
        data = (dest_base / f"pull-{i}" / want.filename).read_bytes()
        if data != want.data:
            problems.append(f"{label}: pulled bytes differ from the uploaded {want.filename} "
                            f"(sha256 {hashlib.sha256(data).hexdigest()} vs "
                            f"{hashlib.sha256(want.data).hexdigest()})")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# basics
# ---------------------------------------------------------------------------


def test_health_and_empty_index(start_chartroom, helm_home):
    server = start_chartroom()
    resp = server.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"healthy": True}

    index = fetch_index(server)
    assert index.get("apiVersion") == "v1"
    assert not index.get("entries"), index
    # ChartMuseum always writes serverInfo (helm-push reads serverInfo.contextPath).
    assert "serverInfo" in index, index

    # Helm itself accepts the empty index.
    home = helm_home()
    [res] = run_helm("helm_python", [{"op": "repo_index", "url": server.url}], home)
    parsed = helm_ok(res, "helm repo index download")
    assert parsed.get("apiVersion") == "v1"
    assert not parsed.get("entries")


def test_upload_raw_and_multipart_store_helm_packages(start_chartroom, charts):
    server = start_chartroom()
    upload_all(server, charts)
    # Stored as <name>-<version>.tgz in the storage root, byte for byte.
    stored = sorted(p.name for p in server.storage_dir.glob("*.tgz"))
    assert stored == sorted(c.filename for c in charts.charts)
    for chart in charts.charts:
        assert (server.storage_dir / chart.filename).read_bytes() == chart.data, chart.filename
        resp = server.get(f"/charts/{chart.filename}")
        assert resp.status_code == 200, (chart.filename, resp.status_code, resp.text[:200])
        assert resp.content == chart.data, chart.filename

    # The same version again is refused, in both upload styles.
    alpha = charts.get("alpha", "1.0.0")
    for mode in ("raw", "multipart"):
        resp = upload(server, alpha.data, mode=mode, filename=alpha.filename)
        assert resp.status_code == 409, (mode, resp.status_code, resp.text)


# ---------------------------------------------------------------------------
# index.yaml against Helm's own `helm repo index`
# ---------------------------------------------------------------------------


def test_index_matches_helm_repo_index(repo, charts, helm_home, tmp_path):
    reference_dir = copy_charts(charts, tmp_path / "reference")
    home = helm_home()
    [gen] = run_helm("helm_python", [{"op": "repo_index_generate",
                                     "directory": str(reference_dir)}], home)
    helm_ok(gen, "helm repo index")
    # Compare the YAML documents as written (YAML 1.1 types, like Helm's parser).
    reference = yaml.safe_load((reference_dir / "index.yaml").read_text())
    actual = fetch_index(repo)
    problems = compare_indexes(actual, reference)
    assert not problems, ("chartroom /index.yaml differs from `helm repo index`:\n"
                          + "\n".join(problems))

    # digest is the SHA-256 of the uploaded bytes.
    for chart in charts.charts:
        entry = next(e for e in actual["entries"][chart.name] if e["version"] == chart.version)
        assert entry["digest"] == hashlib.sha256(chart.data).hexdigest(), chart.filename


def test_helm_reads_index_like_its_own(repo, charts, helm_home, tmp_path):
    """Helm's parser (repo_index download) sees the same entries as in its own index."""
    reference_dir = copy_charts(charts, tmp_path / "reference")
    home = helm_home()
    gen, dl = run_helm("helm_python", [
        {"op": "repo_index_generate", "directory": str(reference_dir)},
        {"op": "repo_index", "url": repo.url},
    ], home)
    reference = helm_ok(gen, "helm repo index")
    actual = helm_ok(dl, "download index.yaml with Helm")
    problems = compare_indexes(actual, reference)
    assert not problems, ("index.yaml as parsed by Helm differs from Helm's own index:\n"
                          + "\n".join(problems))


# ---------------------------------------------------------------------------
# pull
# ---------------------------------------------------------------------------

# (chart, version or constraint passed to helm pull, version expected)
PULL_CASES = [
    ("alpha", None, "1.1.0"),            # latest: newest non-prerelease
    ("alpha", "1.0.0", "1.0.0"),
    ("alpha", "1.0.0-rc.1", "1.0.0-rc.1"),
    ("alpha", "0.1.0", "0.1.0"),
    ("alpha", "^1.0.0", "1.1.0"),
    ("alpha", "~0.2", "0.2.1"),
    ("alpha", ">=0.2.0 <1.0.0", "0.2.1"),
    ("gamma", None, "v2.0.0"),
    ("gamma", "v1.5.0", "v1.5.0"),
    ("gamma", "~1.5", "v1.5.0"),
    ("gamma", "2.1.0-beta.1", "2.1.0-beta.1"),
    ("legacy", None, "0.3.0"),
    ("my-web-app", None, "0.1.0"),
    ("my-web-app", "0.1.1-SNAPSHOT-1", "0.1.1-SNAPSHOT-1"),
    ("libby", "0.0.1", "0.0.1"),
]


def test_pull_by_name_version_and_constraint(repo, charts, helm_home, tmp_path):
    home = helm_home()
    results = run_helm("helm_python", pull_ops(repo.url, tmp_path, PULL_CASES), home)
    check_pulls(results, PULL_CASES, charts, tmp_path)


def test_pull_unknown_version_or_chart_fails(repo, helm_home, tmp_path):
    cases = [("alpha", "9.9.9"), ("alpha", "^3.0.0"), ("nosuchchart", None)]
    ops = pull_ops(repo.url, tmp_path, [(c, v, None) for c, v in cases])
    results = run_helm("helm_python", ops, helm_home())
    for (chart, version), res in zip(cases, results):
        assert not res.ok, f"pull {chart} {version} should fail, got {res.result}"
        assert "not found" in res.error, res.error
    for op in ops:
        assert not any(Path(op["destination"]).iterdir()), op


# ---------------------------------------------------------------------------
# repo add / update / list (helm-sdkpy, Helm v4.3)
# ---------------------------------------------------------------------------


def test_repo_add_list_update_show(repo, charts, helm_home):
    home = helm_home()
    add, listed, update, show = run_helm("helm_sdkpy", [
        {"op": "repo_add", "name": "cr", "url": repo.url},
        {"op": "repo_list"},
        {"op": "repo_update", "name": "cr"},
        {"op": "show_chart", "ref": "cr/alpha"},
    ], home)
    helm_ok(add, "helm repo add")
    repos = helm_ok(listed, "helm repo list")
    assert [(r["name"], r["url"]) for r in repos] == [("cr", repo.url)]
    helm_ok(update, "helm repo update")

    # The index Helm cached lists every uploaded version.
    cached = home.cached_index("cr")
    have = {n: sorted(e["version"] for e in v) for n, v in cached["entries"].items()}
    assert have == {n: sorted(v) for n, v in charts.versions().items()}

    # `helm show chart cr/alpha` resolved the newest stable version and downloaded it.
    shown = yaml.safe_load(helm_ok(show, "helm show chart cr/alpha"))
    assert shown["name"] == "alpha" and shown["version"] == "1.1.0", shown
    downloaded = [p.read_bytes() for p in home.content_files()]
    assert charts.get("alpha", "1.1.0").data in downloaded, (
        f"Helm's content cache does not hold the uploaded alpha-1.1.0.tgz: "
        f"{[p.name for p in home.content_files()]}")


def test_repo_update_sees_new_upload(start_chartroom, charts, helm_home, tmp_path):
    server = start_chartroom()
    first, second = charts.get("alpha", "0.1.0"), charts.get("alpha", "0.2.0")
    assert upload(server, first.data).status_code == 201
    wait_for_index(server, {"alpha": ["0.1.0"]})

    home = helm_home()
    [add] = run_helm("helm_sdkpy", [{"op": "repo_add", "name": "cr", "url": server.url}], home)
    helm_ok(add, "helm repo add")
    assert [e["version"] for e in home.cached_index("cr")["entries"]["alpha"]] == ["0.1.0"]

    assert upload(server, second.data, mode="multipart").status_code == 201
    wait_for_index(server, {"alpha": ["0.1.0", "0.2.0"]})
    [update] = run_helm("helm_sdkpy", [{"op": "repo_update"}], home)
    helm_ok(update, "helm repo update")
    assert [e["version"] for e in home.cached_index("cr")["entries"]["alpha"]] == \
        ["0.2.0", "0.1.0"]

    cases = [("alpha", None, "0.2.0")]
    results = run_helm("helm_python", pull_ops(server.url, tmp_path, cases), helm_home())
    check_pulls(results, cases, charts, tmp_path)


# ---------------------------------------------------------------------------
# basic auth
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_repo(module_chartroom, charts):
    server = module_chartroom(["--basic-auth-user", USER, "--basic-auth-pass", PASSWORD])
    upload_all(server, charts, auth=(USER, PASSWORD))
    return server


def test_basic_auth_http(auth_repo, charts):
    server = auth_repo
    assert server.get("/health").status_code == 200
    for path in ("/index.yaml", "/charts/alpha-1.0.0.tgz", "/api/charts"):
        resp = server.get(path)
        assert resp.status_code == 401, (path, resp.status_code)
        assert "WWW-Authenticate" in resp.headers, (path, dict(resp.headers))
        resp = server.get(path, auth=(USER, "wrong"))
        assert resp.status_code == 401, (path, "wrong password", resp.status_code)
        resp = server.get(path, headers=basic_auth_header(USER, PASSWORD))
        assert resp.status_code == 200, (path, resp.status_code, resp.text[:200])
    extra = charts.get("alpha", "0.1.0").data
    assert upload(server, extra).status_code == 401
    assert upload(server, extra, auth=(USER, "wrong"), mode="multipart").status_code == 401


def test_basic_auth_helm_repo_add(auth_repo, charts, helm_home):
    home = helm_home()
    good, wrong, anonymous, listed, update, show = run_helm("helm_sdkpy", [
        {"op": "repo_add", "name": "good", "url": auth_repo.url,
         "username": USER, "password": PASSWORD},
        {"op": "repo_add", "name": "wrong", "url": auth_repo.url,
         "username": USER, "password": "not-the-password"},
        {"op": "repo_add", "name": "anonymous", "url": auth_repo.url},
        {"op": "repo_list"},
        {"op": "repo_update"},
        {"op": "show_chart", "ref": "good/gamma"},
    ], home)
    helm_ok(good, "helm repo add with the right password")
    assert not wrong.ok, "helm repo add with a wrong password succeeded"
    assert "401" in wrong.error, wrong.error
    assert not anonymous.ok, "helm repo add without credentials succeeded"
    assert "401" in anonymous.error, anonymous.error
    repos = helm_ok(listed, "helm repo list")
    assert [(r["name"], r["url"], r["username"]) for r in repos] == \
        [("good", auth_repo.url, USER)]
    helm_ok(update, "helm repo update with credentials")
    cached = home.cached_index("good")
    assert sorted(cached["entries"]) == sorted(charts.versions())

    shown = yaml.safe_load(helm_ok(show, "helm show chart good/gamma"))
    assert shown["version"] == "v2.0.0", shown
    assert charts.get("gamma", "v2.0.0").data in [p.read_bytes() for p in home.content_files()]


def test_basic_auth_helm_pull(auth_repo, charts, helm_home, tmp_path):
    cases = [("alpha", "~0.2", "0.2.1"), ("gamma", None, "v2.0.0")]
    ok_dir, bad_dir = tmp_path / "ok", tmp_path / "bad"
    results = run_helm("helm_python", pull_ops(auth_repo.url, ok_dir, cases,
                                               username=USER, password=PASSWORD), helm_home())
    check_pulls(results, cases, charts, ok_dir)

    bad = pull_ops(auth_repo.url, bad_dir, cases[:1], username=USER, password="nope")
    bad += pull_ops(auth_repo.url, bad_dir / "anon", cases[:1])
    results = run_helm("helm_python", bad, helm_home())
    for op, res in zip(bad, results):
        assert not res.ok, f"pull with {op.get('password')!r} succeeded"
        assert "401" in res.error, res.error


# ---------------------------------------------------------------------------
# depth 1: one repository per first path segment
# ---------------------------------------------------------------------------


def test_depth1_helm_client(start_chartroom, charts, helm_home, tmp_path):
    server = start_chartroom(["--depth", "1"])
    upload_all(server, charts, repo="myrepo")
    stored = sorted(p.name for p in (server.storage_dir / "myrepo").glob("*.tgz"))
    assert stored == sorted(c.filename for c in charts.charts)

    index = fetch_index(server, "myrepo")
    alpha = {e["version"]: e for e in index["entries"]["alpha"]}
    assert alpha["1.1.0"]["urls"] == ["charts/alpha-1.1.0.tgz"]
    resp = server.get("/myrepo/charts/alpha-1.1.0.tgz")
    assert resp.status_code == 200 and resp.content == charts.get("alpha", "1.1.0").data
    # another tenant is empty
    assert not fetch_index(server, "otherrepo").get("entries")

    repo_url = server.repo_url("myrepo")
    home = helm_home()
    add, update = run_helm("helm_sdkpy", [
        {"op": "repo_add", "name": "mine", "url": repo_url},
        {"op": "repo_update", "name": "mine"},
    ], home)
    helm_ok(add, f"helm repo add {repo_url}")
    helm_ok(update, "helm repo update")
    cached = home.cached_index("mine")
    assert {n: sorted(e["version"] for e in v) for n, v in cached["entries"].items()} == \
        {n: sorted(v) for n, v in charts.versions().items()}

    cases = [("alpha", "^1.0.0", "1.1.0"), ("gamma", None, "v2.0.0"),
             ("my-web-app", "0.1.1-SNAPSHOT-1", "0.1.1-SNAPSHOT-1")]
    results = run_helm("helm_python", pull_ops(repo_url, tmp_path / "pulls", cases), helm_home())
    check_pulls(results, cases, charts, tmp_path / "pulls")

    # The tenant index matches Helm's own `repo index` too.
    reference_dir = copy_charts(charts, tmp_path / "reference")
    [gen] = run_helm("helm_python", [{"op": "repo_index_generate",
                                     "directory": str(reference_dir)}], helm_home())
    helm_ok(gen, "helm repo index")
    reference = yaml.safe_load((reference_dir / "index.yaml").read_text())
    problems = compare_indexes(index, reference)
    assert not problems, json.dumps(problems, indent=1)


def test_existing_storage_is_indexed_like_helm(start_chartroom, charts, helm_home, tmp_path):
    """Packages already in the storage directory (as ChartMuseum left them) are served."""
    storage = copy_charts(charts, tmp_path / "storage")
    server = start_chartroom(storage_dir=storage)
    index = wait_for_index(server, charts.versions())

    reference_dir = copy_charts(charts, tmp_path / "reference")
    home = helm_home()
    gen, pull = run_helm("helm_python", [
        {"op": "repo_index_generate", "directory": str(reference_dir)},
        *pull_ops(server.url, tmp_path / "pulls", [("alpha", "~1.0", "1.0.0")]),
    ], home)
    helm_ok(gen, "helm repo index")
    reference = yaml.safe_load((reference_dir / "index.yaml").read_text())
    problems = compare_indexes(index, reference)
    assert not problems, ("index of a pre-filled storage differs from `helm repo index`:\n"
                          + "\n".join(problems))
    check_pulls([pull], [("alpha", "~1.0", "1.0.0")], charts, tmp_path / "pulls")


def test_yaml11_lookalike_strings_survive(start_chartroom, yaml11_charts, helm_home, tmp_path):
    """Strings such as "yes", "on", "1_000" or "1:20" must stay strings for Helm.

    Helm parses index.yaml with sigs.k8s.io/yaml (go-yaml v2, YAML 1.1), so a
    plain `- yes` is a bool and one such value makes Helm reject the whole
    repository. ChartMuseum (go-yaml v2 marshalling) quotes them.
    """
    server = start_chartroom()
    upload_all(server, yaml11_charts)
    actual = fetch_index(server)

    reference_dir = copy_charts(yaml11_charts, tmp_path / "reference")
    home = helm_home()
    gen, parsed, _ = run_helm("helm_python", [
        {"op": "repo_index_generate", "directory": str(reference_dir)},
        {"op": "repo_index", "url": server.url},
        *pull_ops(server.url, tmp_path / "pulls", [("yaml11", None, "0.1.0")]),
    ], home)
    reference = yaml.safe_load((reference_dir / "index.yaml").read_text())
    helm_ok(gen, "helm repo index")
    problems = compare_indexes(actual, reference)
    if not parsed.ok:
        problems.append(f"Helm cannot parse chartroom's index.yaml: {parsed.error}")
    else:
        problems += [f"as parsed by Helm: {p}"
                     for p in compare_indexes(parsed.result, helm_ok(gen, "helm repo index"))]
    assert not problems, "\n".join(problems)


def test_provenance_from_helm_sign(start_chartroom, charts, helm_home, tmp_path):
    """Helm-signed .prov files: multipart chart+prov and raw /api/prov uploads."""
    secret, public = write_keyrings(tmp_path / "keys")
    work = tmp_path / "signed"
    work.mkdir()
    first, second = charts.get("alpha", "1.0.0"), charts.get("gamma", "v2.0.0")
    for chart in (first, second):
        (work / chart.filename).write_bytes(chart.data)
    signed = run_helm("helm_python", [
        {"op": "sign", "archive": str(work / c.filename), "key": SIGNING_KEY_NAME,
         "keyring": str(secret)} for c in (first, second)], helm_home())
    provs = [Path(helm_ok(r, "helm package --sign")).read_bytes() for r in signed]

    server = start_chartroom()
    resp = server.post("/api/charts", files={
        "chart": (first.filename, first.data, "application/gzip"),
        "prov": (first.filename + ".prov", provs[0], "application/octet-stream")})
    assert resp.status_code == 201 and resp.json() == {"saved": True}, resp.text
    assert upload(server, second.data).status_code == 201
    resp = server.post("/api/prov", data=provs[1],
                       headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 201 and resp.json() == {"saved": True}, resp.text
    wait_for_index(server, {"alpha": ["1.0.0"], "gamma": ["v2.0.0"]})

    download = tmp_path / "download"
    download.mkdir()
    for chart, prov in ((first, provs[0]), (second, provs[1])):
        assert (server.storage_dir / (chart.filename + ".prov")).read_bytes() == prov
        resp = server.get(f"/charts/{chart.filename}.prov")
        assert resp.status_code == 200, (chart.filename, resp.status_code, resp.text[:200])
        assert resp.content == prov
        assert resp.headers.get("Content-Type") == "application/pgp-signature"
        (download / (chart.filename + ".prov")).write_bytes(resp.content)
        (download / chart.filename).write_bytes(server.get(f"/charts/{chart.filename}").content)

    verified = run_helm("helm_python", [
        {"op": "verify", "path": str(download / c.filename), "keyring": str(public)}
        for c in (first, second)], helm_home())
    for chart, res in zip((first, second), verified):
        out = helm_ok(res, f"helm verify {chart.filename}")
        assert any(SIGNING_KEY_NAME in s for s in out["signed_by"]), out


# ---------------------------------------------------------------------------
# Chart.yaml scalars that YAML 1.1 types (issue 13, item 14)
# ---------------------------------------------------------------------------

# Untyped (plain) scalars Helm reads through sigs.k8s.io/yaml (go-yaml v2):
# where Metadata wants a string it takes Go's text of the bool/int/float.
QUIRK_SCALARS = [
    "1.0", "1.10", "123", "true", "False", "TRUE", "yes", "No", "on", "OFF", "y", "n",
    "1e3", "1.5e10", "1.5E-7", "0x1F", "0X1f", "0o17", "017", "08", "0b101", "1_000",
    "1__0", "+5", "-7", "+0x10", "-0o7", "0x", "0b", "~", "null", "Null", "2024-01-01",
    "2001-12-14t21:59:43.10Z", "2001-12-14 21:59:43.10", "1:20", ".inf", "-.Inf", "+.inf",
    ".nan", ".5", ".5_5", "1_0.5", "+.5", "-.5e-3", "1.", "1.50", "1.23456789",
    "1234567.0", "0.00001", "0.0001", "-0.0", "123456789012", "18446744073709551615",
    "9223372036854775808", "-9223372036854775809", "100000000000000000000", "1e400",
    "'1.0'", '"yes"', "!!str 0x1F", "!!int '0x10'", "!!float 3", "!!bool 'on'",
    "!!binary aGVsbG8=", "yes!", "0x1G", "._5", ".iNf",
]

# Valid chart versions once Helm has read them.
QUIRK_VERSIONS = ["1.0", "1.10", "2", "0x1F", "1e3", "0o17", "1_000", "017", "+6", "1.5e1",
                  "!!float 4", "'5.1.0'", "3.0.0"]


def quirk_chart_yaml(i: int, scalar: str) -> str:
    v = scalar
    version = QUIRK_VERSIONS[i % len(QUIRK_VERSIONS)]
    key = ["1.0", "yes", "0x10", ".inf", "1e3", "on", "2024-01-01", "017"][i % 8]
    return f"""apiVersion: v2
name: quirk{i}
version: {version}
description: {v}
home: {v}
icon: {v}
appVersion: {v}
condition: {v}
tags: {v}
keywords:
  - {v}
  - plain
sources:
  - {v}
maintainers:
  - name: maintainer
    email: {v}
    url: {v}
annotations:
  value: {v}
  {key}: from a typed key
dependencies:
  - name: dep
    version: {v}
    repository: https://example.invalid/charts
    condition: {v}
    tags:
      - {v}
"""


# Field-by-field reading: keys matched case-insensitively (the last in sorted order
# wins), anchors, aliases and merge keys, nulls, typed map keys, tags.
QUIRK_STRUCTURES = [
    """apiVersion: v2
Name: wrong
name: s0
version: 1.0.0
Description: first
description: second
DESCRIPTION: third
VERSION: 2.0.0
""",
    """apiVersion: v2
name: s1
version: &v 1.2.3
appVersion: *v
keywords: &k [a, yes, 1.0]
sources: *k
annotations:
  <<: [{a: 1, b: 2}, {b: 3, c: 4}]
  c: 5
  d: *v
maintainers:
  - &m {name: x, Email: y}
  - *m
""",
    """apiVersion: v2
name: s2
version: 1.0.0
keywords: ~
sources: []
annotations: ~
description: ~
home:
dependencies:
  - name: d
    repository: https://example.invalid/charts
    enabled: yes
    import-values: [child, {child: a, parent: b}, 1, 1.5, true, ~]
    tags: [~, yes]
""",
    """apiVersion: v2
name: s3
version: 1.0.0
description: !custom 1.0
icon: !!str yes
annotations: {1: a, 1.5: b, true: c, 0x10: d, x: ~, .inf: e}
""",
    """apiVersion: v2
name: s4
version: 1.0.0
\u212aeywords: [kelvin]
\u017fources: [long-s]
""",
]


def test_yaml11_scalars_indexed_like_helm(start_chartroom, helm_home, tmp_path):
    """Every string field holding an untyped scalar: chartroom's index equals Helm's.

    The packages are uploaded (chartroom stores each as <name>-<Helm's version>.tgz),
    indexed again by a second chartroom from that storage (a cold start), and
    compared with what `helm repo index` writes for the same files.
    """
    from e2e_lib import build_package

    server = start_chartroom()
    for i, scalar in enumerate(QUIRK_SCALARS):
        data = build_package({f"quirk{i}/Chart.yaml": quirk_chart_yaml(i, scalar)})
        resp = upload(server, data)
        assert resp.status_code == 201, (scalar, resp.status_code, resp.text[:300])
    for i, text in enumerate(QUIRK_STRUCTURES):
        resp = upload(server, build_package({f"s{i}/Chart.yaml": text}))
        assert resp.status_code == 201, (text, resp.status_code, resp.text[:300])
    stored = sorted(server.storage_dir.glob("*.tgz"))
    assert len(stored) == len(QUIRK_SCALARS) + len(QUIRK_STRUCTURES), [p.name for p in stored]

    reference_dir = tmp_path / "reference"
    cold_dir = tmp_path / "cold"
    for d in (reference_dir, cold_dir):
        d.mkdir()
        for p in stored:
            (d / p.name).write_bytes(p.read_bytes())
    [gen] = run_helm("helm_python", [{"op": "repo_index_generate",
                                     "directory": str(reference_dir)}], helm_home())
    helm_ok(gen, "helm repo index")
    reference = yaml.safe_load((reference_dir / "index.yaml").read_text())

    # chartroom named each file as Helm names the version.
    problems = []
    for name, versions in (reference.get("entries") or {}).items():
        for entry in versions:
            if entry["urls"] != [f"{name}-{entry['version']}.tgz"]:
                problems.append(f"{name}: stored as {entry['urls']}, Helm's version is "
                                f"{entry['version']!r}")
    cold = start_chartroom(storage_dir=cold_dir)
    for label, srv in (("upload", server), ("cold start", cold)):
        actual = wait_for_index(srv, {n: [e["version"] for e in v]
                                      for n, v in reference["entries"].items()})
        problems += [f"{label}: {p}" for p in compare_indexes(actual, reference)]
    assert not problems, "\n".join(problems)
