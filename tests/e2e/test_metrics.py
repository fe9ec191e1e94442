"""GET /metrics (--enable-metrics) after real Helm pulls, parsed by the Prometheus
Python client's parsers (text format and OpenMetrics).

The server runs at depth 1 (tenant "team"); charts are uploaded over the API and
pulled with Helm (helm-python-sdk). The series must carry ChartMuseum's names,
types and label names, with route templates as `url` and no per-request label
values (paths, Host headers).
"""

from __future__ import annotations

import pytest

from e2e_lib import helm_ok, run_helm, upload, wait_for_index

parser = pytest.importorskip(
    "prometheus_client.parser", reason="pip install -r tests/e2e/requirements.txt")
openmetrics_parser = pytest.importorskip("prometheus_client.openmetrics.parser")

TENANT = "team"


def families(text: str) -> dict:
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def samples(fams: dict, family: str, sample: str | None = None) -> list:
    fam = fams[family]
    name = sample or family
    return [s for s in fam.samples if s.name == name]


@pytest.fixture(scope="module")
def served(module_chartroom, charts, tmp_path_factory):
    server = module_chartroom(["--enable-metrics", "--depth", "1"])
    for chart in charts.charts:
        resp = upload(server, chart.data, repo=TENANT, filename=chart.filename)
        assert resp.status_code == 201, resp.text
    wait_for_index(server, charts.versions(), repo=TENANT)
    return server


def test_series_after_helm_pulls(served, charts, helm_home, tmp_path):
    names = sorted({c.name for c in charts.charts})[:2]
    ops = []
    for i, name in enumerate(names):
        dest = tmp_path / f"pull-{i}"
        dest.mkdir()
        ops.append({"op": "pull", "chart": name, "repo_url": served.repo_url(TENANT),
                    "destination": str(dest)})
    for res in run_helm("helm_python", ops, helm_home()):
        helm_ok(res, "helm pull")

    resp = served.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    fams = families(resp.text)

    assert fams["chartmuseum_requests"].type == "counter"
    assert fams["chartmuseum_request_duration_seconds"].type == "histogram"
    assert fams["chartmuseum_charts_served_total"].type == "gauge"
    assert fams["chartmuseum_chart_versions_served_total"].type == "gauge"
    for fam in ("chartmuseum_request_size_bytes", "chartmuseum_response_size_bytes"):
        assert samples(fams, fam, fam + "_count"), fam

    reqs = samples(fams, "chartmuseum_requests", "chartmuseum_requests_total")
    for s in reqs:
        assert set(s.labels) == {"code", "method", "handler", "host", "url"}, s
        assert s.labels["host"] == f"127.0.0.1:{served.port}", s
    by_url = {}
    for s in reqs:
        if s.labels["code"] == "200" and s.labels["method"] == "GET":
            by_url[s.labels["url"]] = by_url.get(s.labels["url"], 0) + s.value
    # Helm read the tenant's index and downloaded one package per pull.
    assert by_url.get("/:repo/index.yaml", 0) >= 1, by_url
    assert by_url.get("/:repo/charts/:filename", 0) >= len(names), by_url
    urls = {s.labels["url"] for s in reqs}
    for url in urls:
        assert url.startswith("/") and TENANT not in url, url
        assert not any(c.name in url for c in charts.charts), url

    versions = {s.labels["repo"]: s.value
                for s in samples(fams, "chartmuseum_chart_versions_served_total")}
    assert versions[TENANT] == len(charts.charts), versions
    charts_served = {s.labels["repo"]: s.value
                     for s in samples(fams, "chartmuseum_charts_served_total")}
    assert charts_served[TENANT] == len({c.name for c in charts.charts})

    calls = samples(fams, "chartroom_storage_call_duration_seconds",
                    "chartroom_storage_call_duration_seconds_count")
    assert any(s.labels["backend"] == "local" and s.labels["operation"] == "get_stream"
               for s in calls), calls
    age = {s.labels["repo"]: s.value for s in samples(fams, "chartroom_index_age_seconds")}
    assert TENANT in age and age[TENANT] >= 0
    assert samples(fams, "chartroom_build_info")[0].labels["version"]
    assert samples(fams, "process_resident_memory_bytes")[0].value > 0


def test_hostile_requests_add_no_series(served):
    before = families(served.get("/metrics").text)
    n_before = len(samples(before, "chartmuseum_requests", "chartmuseum_requests_total"))
    for i in range(50):
        served.get(f"/{TENANT}/index.yaml", headers={"Host": f"evil-{i}.example"})
        served.get(f"/no/such/path/{i}")
        served.get(f"/tenant{i}/charts/x-{i}.tgz")
    after = families(served.get("/metrics").text)
    reqs = samples(after, "chartmuseum_requests", "chartmuseum_requests_total")
    assert len(reqs) == n_before, [s.labels for s in reqs]
    assert {s.labels["host"] for s in reqs} == {f"127.0.0.1:{served.port}"}


def test_openmetrics_when_asked(served):
    resp = served.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/openmetrics-text")
    assert resp.text.endswith("# EOF\n")
    fams = {f.name: f for f in openmetrics_parser.text_string_to_metric_families(resp.text)}
    assert fams["chartmuseum_requests"].type == "counter"
    assert fams["chartroom_build"].type == "info"


def test_off_by_default_is_404(start_chartroom):
    server = start_chartroom()
    resp = server.get("/metrics")
    assert resp.status_code == 404
    assert resp.json() == {"error": "not found"}
