"""`chartroom publish walk` end to end, as the site's timer runs it: a local bare git
repository stands in for the charts repository, a checkout of it is walked against a running
chartroom with basic auth on, real Helm (helm-sdkpy, helm-python-sdk) loads and pulls every
chart; a new version committed and pulled is uploaded on the next run, a chart that fails to
package is reported while the others still go.

The charts are copies of ../shared/testdata/wikimedia-deployment-charts/charts (ten charts
of the site's repository, four of them with subcharts as directories, which the walk
publishes as charts of their own).
"""

from __future__ import annotations

import os
import re
import time
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from e2e_lib import ROOT, run_helm, helm_ok, wait_for_index

WIKIMEDIA = ROOT.parent / "shared/testdata/wikimedia-deployment-charts/charts"
USER, PASSWORD = "publisher", "pub-secret"
SUMMARY = re.compile(r"^(\d+) charts found, (\d+) already present, (\d+) uploaded, (\d+) errors$")


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="test", GIT_AUTHOR_EMAIL="test@example.invalid",
               GIT_COMMITTER_NAME="test", GIT_COMMITTER_EMAIL="test@example.invalid",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd))
    r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, f"git {args}: {r.stdout}{r.stderr}"
    return r.stdout


def publish(binary: Path, url: str, *args: str) -> tuple[int, str, str, tuple[int, ...]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_REPO_")}
    env.update(HELM_REPO_USERNAME=USER, HELM_REPO_PASSWORD=PASSWORD)
    r = subprocess.run([str(binary), "publish", "--cm-url", url, *args], env=env,
                       capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    m = SUMMARY.match(last)
    assert m, f"no summary line: {r.stdout!r} {r.stderr!r}"
    return r.returncode, r.stdout, r.stderr, tuple(int(g) for g in m.groups())


def chart_versions(charts: Path) -> dict[str, list[str]]:
    """name -> versions of every Chart.yaml below ``charts`` (the test charts' versions are
    plain strings YAML leaves alone)."""
    out: dict[str, list[str]] = {}
    for chart_yaml in sorted(charts.rglob("Chart.yaml")):
        meta = yaml.safe_load(chart_yaml.read_text())
        out.setdefault(meta["name"], []).append(str(meta["version"]))
    return out


def get_count(server, path: str) -> int:
    """GETs of ``path`` in the server's request log. Request lines are written in batches, in
    order: a marker request is sent first and waited for, so every earlier line is there."""
    marker = "/test-marker-%d" % time.monotonic_ns()
    server.get(marker)
    deadline = time.monotonic() + 10
    while f"path={marker} " not in (text := server.log_path.read_text()):
        assert time.monotonic() < deadline, "marker request not logged within 10 s"
        time.sleep(0.02)
    return len(re.findall(rf"request method=GET path={re.escape(path)} ", text))


@pytest.fixture
def charts_repo(tmp_path):
    """(bare repository, work tree that pushes to it, checkout the publisher walks)."""
    if not WIKIMEDIA.is_dir():
        pytest.fail(f"test charts missing: {WIKIMEDIA}")
    bare = tmp_path / "deployment-charts.git"
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(work))
    shutil.copytree(WIKIMEDIA, work / "charts")
    for p in (work / "charts").rglob("*"):
        p.chmod(p.stat().st_mode | 0o200)  # the source is read-only
    # The shared copy stores the repository's one symlink as a file holding its target.
    link = work / "charts/mediawiki-common/values.yaml"
    target = link.read_text().strip()
    if target.startswith("../") and (link.parent / target).is_file():
        link.unlink()
        link.symlink_to(target)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "charts")
    git(work, "push", "-q", "origin", "HEAD:main")
    checkout = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", "-b", "main", str(bare), str(checkout))
    return bare, work, checkout


def test_publish_walk_from_a_git_checkout(charts_repo, start_chartroom, chartroom_bin, helm_home):
    bare, work, checkout = charts_repo
    server = start_chartroom(["--depth", "1", "--basic-auth-user", USER,
                              "--basic-auth-pass", PASSWORD], auth=(USER, PASSWORD))
    expected = chart_versions(checkout / "charts")
    n_charts = sum(len(v) for v in expected.values())
    assert n_charts >= 14

    # First run: everything is new.
    code, out, err, counts = publish(chartroom_bin, server.url, "walk",
                                     str(checkout / "charts"), "stable")
    assert code == 0, out + err
    assert counts == (n_charts, 0, n_charts, 0), out
    wait_for_index(server, expected, repo="stable", auth=(USER, PASSWORD))
    assert get_count(server, "/api/stable/charts") == 1

    # Real Helm: load every chart through the repository (helm-sdkpy's show chart downloads
    # it with the stored credentials and loads it) and pull every version (helm-python-sdk).
    repo_url = f"{server.url}/stable"
    home = helm_home("sdkpy")
    ops = [{"op": "repo_add", "name": "wm", "url": repo_url, "username": USER,
            "password": PASSWORD}]
    ops += [{"op": "show_chart", "ref": f"wm/{name}"} for name in sorted(expected)]
    results = run_helm("helm_sdkpy", ops, home)
    helm_ok(results[0], "repo add")
    for name, res in zip(sorted(expected), results[1:]):
        shown = helm_ok(res, f"helm show chart wm/{name}")
        assert f"name: {name}" in str(shown), shown
    dest = home.base / "pulled"
    dest.mkdir()
    pulls = [{"op": "pull", "chart": name, "repo_url": repo_url, "destination": str(dest),
              "version": version, "username": USER, "password": PASSWORD}
             for name, versions in sorted(expected.items()) for version in versions]
    for op, res in zip(pulls, run_helm("helm_python", pulls, helm_home("python"))):
        helm_ok(res, f"helm pull {op['chart']} {op['version']}")
    assert len(list(dest.glob("*.tgz"))) == n_charts

    # Second run, nothing new: one GET, nothing uploaded.
    code, out, err, counts = publish(chartroom_bin, server.url, "walk",
                                     str(checkout / "charts"), "stable")
    assert code == 0, out + err
    assert counts == (n_charts, n_charts, 0, 0), out
    assert get_count(server, "/api/stable/charts") == 2
    assert "uploaded " not in out.replace(" uploaded, ", "")

    # A new version and a chart that cannot be packaged (a dangling symlink), committed and
    # pulled: the new version is uploaded, the broken chart reported, the exit status 2.
    chart_yaml = work / "charts/raw/Chart.yaml"
    text = chart_yaml.read_text()
    old = yaml.safe_load(text)["version"]
    new = "99.0.0"
    chart_yaml.write_text(re.sub(rf"(?m)^version:\s*{re.escape(str(old))}\s*$",
                                 f"version: {new}", text))
    broken = work / "charts/broken"
    shutil.copytree(work / "charts/raw", broken)
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.0.1\n")
    (broken / "values-extra.yaml").symlink_to("/nonexistent/values.yaml")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "raw 99.0.0, broken chart")
    git(work, "push", "-q", "origin", "HEAD:main")
    git(checkout, "pull", "-q", "--ff-only")
    code, out, err, counts = publish(chartroom_bin, server.url, "walk",
                                     str(checkout / "charts"), "stable")
    assert code == 2, out + err
    assert counts == (n_charts + 1, n_charts - 1, 1, 1), out
    assert f"uploaded raw-{new}.tgz" in out, out
    assert "broken: cannot package" in err, err
    expected["raw"].append(new)
    wait_for_index(server, expected, repo="stable", auth=(USER, PASSWORD))
    assert get_count(server, "/api/stable/charts") == 3

    # Helm sees the new version.
    results = run_helm("helm_python", [{"op": "pull", "chart": "raw", "repo_url": repo_url,
                                        "destination": str(dest), "version": new,
                                        "username": USER, "password": PASSWORD}],
                       helm_home("python2"))
    helm_ok(results[0], f"helm pull raw {new}")
