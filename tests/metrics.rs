//! `GET /metrics` (`--enable-metrics`): ChartMuseum's series and labels, bounded label sets
//! under hostile paths, Host headers and many tenants, chartroom's own series moving as they
//! should, the exposition checked by parsers (our own strict one, Python's prometheus_client
//! and promtool when installed), and the reload counters of the binary.

mod common;

#[path = "s3/harness.rs"]
mod s3_harness;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, chart, prov};
use http::{Method, StatusCode};

/// One sample line: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: samples and the `# TYPE` of each family.
#[derive(Debug, Default)]
struct Exposition {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn of(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.of(name)
            .iter()
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A strict parser of the Prometheus text format 0.0.4 (what we produce of it): panics on
/// any line it does not understand.
fn parse(text: &str) -> Exposition {
    let mut e = Exposition::default();
    assert!(text.ends_with('\n'), "no final newline");
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_name(name), "bad HELP line {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(is_name(name), "bad TYPE line {line:?}");
            assert!(
                [
                    "counter",
                    "gauge",
                    "histogram",
                    "summary",
                    "untyped",
                    "unknown",
                    "info"
                ]
                .contains(&kind),
                "{line:?}"
            );
            assert!(
                e.types.insert(name.to_string(), kind.to_string()).is_none(),
                "family {name} typed twice"
            );
            continue;
        }
        if line.starts_with("# UNIT ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (head, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match head.split_once('{') {
            None => (head, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("unclosed labels");
                (name, parse_labels(body, line))
            }
        };
        assert!(is_name(name), "bad metric name in {line:?}");
        e.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    e
}

fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let eq = body[i..].find('=').map(|p| p + i).expect(line);
        let key = &body[i..eq];
        assert!(is_name(key), "bad label name {key:?} in {line:?}");
        assert_eq!(b[eq + 1], b'"', "{line:?}");
        let mut j = eq + 2;
        let mut val = String::new();
        loop {
            match b[j] {
                b'\\' => {
                    val.push(match b[j + 1] {
                        b'n' => '\n',
                        b'\\' => '\\',
                        b'"' => '"',
                        other => panic!("bad escape {other} in {line:?}"),
                    });
                    j += 2;
                }
                b'"' => break,
                _ => {
                    let c = body[j..].chars().next().unwrap();
                    val.push(c);
                    j += c.len_utf8();
                }
            }
        }
        assert!(
            out.insert(key.to_string(), val).is_none(),
            "duplicate label {key} in {line:?}"
        );
        i = j + 1;
        if i < b.len() {
            assert_eq!(b[i], b',', "{line:?}");
            i += 1;
        }
    }
    out
}

async fn scrape(s: &Server) -> Exposition {
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse(&r.text())
}

/// Distinct label sets of the request series.
fn request_series(e: &Exposition) -> usize {
    e.of("chartmuseum_requests_total").len()
}

/// ChartMuseum's TestMetrics (server_test.go, depth 1), plus the names, types and label names
/// of every chartmuseum_* series.
#[tokio::test]
async fn chartmuseum_series_names_types_and_labels() {
    let s = Server::new(&["--enable-metrics", "--depth", "1"]).await;
    assert_eq!(s.get("/bad-url").await.status, StatusCode::NOT_FOUND);
    for v in ["0.1.0", "0.2.0"] {
        let r = s.post("/api/a/charts", chart("mychart", v)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    assert_eq!(s.get("/a/index.yaml").await.status, StatusCode::OK);
    assert_eq!(s.get("/b/index.yaml").await.status, StatusCode::OK);
    let text = s.get("/metrics").await.text();
    assert!(
        text.contains("chartmuseum_charts_served_total{repo=\"a\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("chartmuseum_chart_versions_served_total{repo=\"a\"} 2\n"));
    assert!(text.contains("# TYPE chartmuseum_charts_served_total gauge\n"));
    assert!(text.contains("# TYPE chartmuseum_chart_versions_served_total gauge\n"));
    // Deliberate difference: an empty tenant ("b") is not kept in memory, so it has no series.
    assert!(!text.contains("repo=\"b\""));
    let e = parse(&text);
    for (family, kind) in [
        ("chartmuseum_requests_total", "counter"),
        ("chartmuseum_request_duration_seconds", "histogram"),
        ("chartmuseum_request_size_bytes", "histogram"),
        ("chartmuseum_response_size_bytes", "histogram"),
        ("chartmuseum_charts_served_total", "gauge"),
        ("chartmuseum_chart_versions_served_total", "gauge"),
    ] {
        assert_eq!(
            e.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    let names = |name: &str| -> BTreeSet<BTreeSet<String>> {
        e.of(name)
            .iter()
            .map(|s| s.labels.keys().cloned().collect())
            .collect()
    };
    let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        names("chartmuseum_requests_total"),
        [set(&["code", "method", "handler", "host", "url"])].into()
    );
    assert_eq!(
        names("chartmuseum_request_duration_seconds_count"),
        [set(&["code", "method", "url"])].into()
    );
    assert_eq!(
        names("chartmuseum_request_size_bytes_count"),
        [set(&[])].into()
    );
    assert_eq!(
        names("chartmuseum_response_size_bytes_sum"),
        [set(&[])].into()
    );
    assert_eq!(
        names("chartmuseum_charts_served_total"),
        [set(&["repo"])].into()
    );
    // Two uploads and two index reads; the 404 and /metrics itself are not recorded.
    assert_eq!(
        e.value(
            "chartmuseum_requests_total",
            &[
                ("code", "201"),
                ("method", "POST"),
                ("url", "/api/:repo/charts")
            ]
        ),
        Some(2.0)
    );
    assert_eq!(
        e.value(
            "chartmuseum_request_duration_seconds_count",
            &[("code", "200"), ("url", "/:repo/index.yaml")]
        ),
        Some(2.0)
    );
    assert_eq!(
        e.value("chartmuseum_request_size_bytes_count", &[]),
        Some(4.0)
    );
    assert!(
        !e.label_values("chartmuseum_requests_total", "url")
            .contains("/metrics")
    );
    assert_eq!(
        e.value(
            "chartroom_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    for p in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        assert!(e.value(p, &[]).is_some(), "{p}");
    }
}

/// The `url` label is the route template (router_test.go's cases), never the path.
#[tokio::test]
async fn url_label_is_the_route_template() {
    let s = Server::new(&["--enable-metrics"]).await;
    assert_eq!(
        s.post("/api/charts", chart("foo", "1.2.3")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/charts", chart("chart", "1.2.3+api"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/prov", prov("foo", "1.2.3")).await.status,
        StatusCode::CREATED
    );
    for p in [
        "/charts/foo-1.2.3.tgz",
        "/charts/foo-1.2.3.tgz.prov",
        "/api/charts/foo/1.2.3",
        "/api/charts/chart/1.2.3+api",
        "/api/charts/chart",
        "/api/charts/foo/latest/values",
        "/api/charts/foo/1.2.3/templates",
    ] {
        let r = s.get(p).await;
        assert!(r.status.is_success(), "{p}: {}", r.status);
    }
    let e = scrape(&s).await;
    let urls = e.label_values("chartmuseum_requests_total", "url");
    let want: BTreeSet<String> = [
        "/api/charts",
        "/api/prov",
        "/charts/:filename",
        "/api/charts/:name/:version",
        "/api/charts/:name",
        "/api/charts/:name/:version/values",
        "/api/charts/:name/:version/templates",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(urls, want);
    assert_eq!(
        e.value(
            "chartmuseum_requests_total",
            &[("url", "/charts/:filename")]
        ),
        Some(2.0)
    );
    assert_eq!(
        e.value(
            "chartmuseum_requests_total",
            &[
                ("url", "/api/charts/:name/:version"),
                ("handler", "chart-version")
            ]
        ),
        Some(2.0)
    );
    for sample in e.of("chartmuseum_request_duration_seconds_count") {
        let url = &sample.labels["url"];
        assert!(!url.contains("foo") && !url.contains("1.2.3"), "{url}");
    }
}

/// A Host header per request makes no series: `host` is fixed at start.
#[tokio::test]
async fn host_header_makes_no_series() {
    let s = Server::new(&["--enable-metrics"]).await;
    for i in 0..200 {
        let host = format!("attacker-{i}.example");
        let r = s
            .req(Method::GET, "/health", vec![], &[("host", &host)])
            .await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let e = scrape(&s).await;
    assert_eq!(request_series(&e), 1);
    assert_eq!(
        e.label_values("chartmuseum_requests_total", "host"),
        ["127.0.0.1:8080".to_string()].into()
    );
    // With --chart-url, its host.
    let s = Server::new(&[
        "--enable-metrics",
        "--chart-url",
        "https://charts.example.org/x",
    ])
    .await;
    s.req(Method::GET, "/health", vec![], &[("host", "evil")])
        .await;
    let e = scrape(&s).await;
    assert_eq!(
        e.label_values("chartmuseum_requests_total", "host"),
        ["charts.example.org".to_string()].into()
    );
}

/// Requests that match no route, and 404 answers, are not recorded (ChartMuseum); random
/// paths and random tenants add no series per path.
#[tokio::test]
async fn random_paths_and_tenants_add_no_series() {
    let s = Server::new(&["--enable-metrics", "--depth-dynamic"]).await;
    assert_eq!(
        s.post("/api/org/team/charts", chart("c", "1.0.0"))
            .await
            .status,
        StatusCode::CREATED
    );
    let before = request_series(&scrape(&s).await);
    for i in 0..10_000u32 {
        let r: u32 = rand::random();
        let path = match i % 5 {
            0 => format!("/nope/{r:x}"),
            1 => format!("/t{r:x}/index.yaml"),
            2 => format!("/api/t{r:x}/u{i}/charts"),
            3 => format!("/t{r:x}/charts/c-{i}.tgz"),
            _ => format!("/api/t{r:x}/charts/c/{i}.0.0"),
        };
        s.get(&path).await;
    }
    let e = scrape(&s).await;
    let urls = e.label_values("chartmuseum_requests_total", "url");
    let allowed: BTreeSet<String> = ["/api/:repo/charts", "/:repo/index.yaml"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(urls.is_subset(&allowed), "{urls:?}");
    // At most: the upload, plus tenant index reads and tenant chart lists (200 each).
    assert!(request_series(&e) <= before + 2, "{urls:?}");
    // Tenants without charts are not kept: only the root and org/team have repo series.
    assert_eq!(
        e.label_values("chartmuseum_chart_versions_served_total", "repo"),
        ["".to_string(), "org/team".to_string()].into()
    );
}

/// Past 1000 repositories with charts, the smallest are summed under repo=".other".
#[tokio::test]
async fn repo_label_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = chart("c", "1.0.0");
    let n = chartroom::metrics::MAX_REPO_SERIES + 5;
    for i in 0..n {
        let d = dir.path().join(format!("t{i:04}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("c-1.0.0.tgz"), &pkg).unwrap();
    }
    let s = Server::on(
        dir.path(),
        &["--enable-metrics", "--depth", "1", "--disable-statefiles"],
    )
    .await;
    for i in 0..n {
        let r = s.get(&format!("/t{i:04}/index.yaml")).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let e = scrape(&s).await;
    let repos = e.label_values("chartmuseum_chart_versions_served_total", "repo");
    assert_eq!(repos.len(), chartroom::metrics::MAX_REPO_SERIES + 1);
    assert!(repos.contains(chartroom::metrics::OTHER_REPOS));
    let total: f64 = e
        .of("chartmuseum_chart_versions_served_total")
        .iter()
        .map(|s| s.value)
        .sum();
    assert_eq!(total, n as f64);
    for name in ["chartroom_index_age_seconds", "chartroom_index_size_bytes"] {
        assert_eq!(e.of(name).len(), repos.len(), "{name}");
    }
}

/// Off (the default): /metrics is a 404 like any unknown path. On: served at the literal path
/// (not under the context path) and without credentials (as ChartMuseum).
#[tokio::test]
async fn access_rules() {
    let s = Server::new(&[]).await;
    let r = s.get("/metrics").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), serde_json::json!({"error": "not found"}));
    let s = Server::new(&[
        "--enable-metrics",
        "--context-path",
        "/ctx",
        "--basic-auth-user",
        "u",
        "--basic-auth-pass",
        "p",
    ])
    .await;
    assert_eq!(s.get("/metrics").await.status, StatusCode::OK);
    assert_eq!(s.get("/ctx/metrics").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/ctx/index.yaml").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(s.head("/metrics").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.req(Method::POST, "/metrics", vec![], &[]).await.status,
        StatusCode::NOT_FOUND
    );
    // The 401s are recorded with their template (auth failures show in the counts).
    let e = scrape(&s).await;
    assert_eq!(
        e.value(
            "chartmuseum_requests_total",
            &[("code", "401"), ("url", "/index.yaml")]
        ),
        Some(1.0)
    );
}

/// OpenMetrics when Accept asks for it.
#[tokio::test]
async fn openmetrics_on_request() {
    let s = Server::new(&["--enable-metrics"]).await;
    s.get("/index.yaml").await;
    let r = s
        .req(
            Method::GET,
            "/metrics",
            vec![],
            &[(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            )],
        )
        .await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = r.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE chartmuseum_requests counter\n"));
    let e = parse(&text);
    assert_eq!(
        e.value("chartmuseum_requests_total", &[("url", "/index.yaml")]),
        Some(1.0)
    );
}

/// Rejected uploads by reason.
#[tokio::test]
async fn uploads_rejected_by_reason() {
    let s = Server::new(&["--enable-metrics", "--max-storage-objects", "1"]).await;
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(
        s.post("/api/charts", b"not a chart".to_vec()).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.post("/api/charts", chart("b", "1.0.0")).await.status,
        StatusCode::INSUFFICIENT_STORAGE
    );
    let e = scrape(&s).await;
    for (reason, n) in [
        ("conflict", 1.0),
        ("invalid", 1.0),
        ("limit", 1.0),
        ("too_large", 0.0),
    ] {
        assert_eq!(
            e.value("chartroom_uploads_rejected_total", &[("reason", reason)]),
            Some(n),
            "{reason}"
        );
    }
    let s = Server::new(&["--enable-metrics", "--max-upload-size", "1"]).await;
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let e = scrape(&s).await;
    assert_eq!(
        e.value(
            "chartroom_uploads_rejected_total",
            &[("reason", "too_large")]
        ),
        Some(1.0)
    );
}

/// A storage failure raises the error counters and the staleness gauge; recovery resets it.
#[tokio::test]
async fn storage_errors_and_staleness() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("st");
    std::fs::create_dir(&root).unwrap();
    let s = Server::on(&root, &["--enable-metrics"]).await;
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    s.refresh().await;
    let e = scrape(&s).await;
    let calls = e
        .value(
            "chartroom_storage_call_duration_seconds_count",
            &[("backend", "local"), ("operation", "list")],
        )
        .unwrap();
    assert!(calls >= 2.0, "{calls}");
    assert!(e.of("chartroom_storage_errors_total").is_empty());
    assert_eq!(
        e.value("chartroom_refresh_duration_seconds_count", &[]),
        Some(1.0)
    );
    // The storage directory becomes a file: listings fail.
    let moved = dir.path().join("moved");
    std::fs::rename(&root, &moved).unwrap();
    std::fs::write(&root, b"x").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.app.registry.load().refresh_all().await.is_err());
    let e = scrape(&s).await;
    assert_eq!(
        e.value(
            "chartroom_storage_errors_total",
            &[
                ("backend", "local"),
                ("operation", "list"),
                ("kind", "error")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(e.value("chartroom_refresh_failures_total", &[]), Some(1.0));
    let stale = e
        .value("chartroom_index_age_seconds", &[("repo", "")])
        .unwrap();
    assert!(stale >= 1.0, "{stale}");
    // Back: the next refresh brings the age down again.
    std::fs::remove_file(&root).unwrap();
    std::fs::rename(&moved, &root).unwrap();
    s.refresh().await;
    let e = scrape(&s).await;
    let fresh = e
        .value("chartroom_index_age_seconds", &[("repo", "")])
        .unwrap();
    assert!(fresh < stale, "{fresh} vs {stale}");
    assert_eq!(e.value("chartroom_refresh_failures_total", &[]), Some(1.0));
    assert!(
        e.value("chartroom_index_size_bytes", &[("repo", "")])
            .unwrap()
            > 50.0
    );
}

/// Python's prometheus_client parser and promtool (when installed) accept the exposition.
#[tokio::test]
async fn exposition_passes_external_parsers() {
    let s = Server::new(&["--enable-metrics", "--depth", "1"]).await;
    s.post("/api/a/charts", chart("c", "1.0.0")).await;
    s.get("/a/index.yaml").await;
    s.req(Method::GET, "/a/index.yaml", vec![], &[("host", "x\"y\\z")])
        .await;
    let text = s.get("/metrics").await.text();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let script = "import sys\n\
from prometheus_client.parser import text_string_to_metric_families\n\
fams = list(text_string_to_metric_families(open(sys.argv[1]).read()))\n\
names = {f.name: f.type for f in fams}\n\
assert names['chartmuseum_requests'] == 'counter', names\n\
assert names['chartmuseum_request_duration_seconds'] == 'histogram', names\n\
assert names['chartmuseum_charts_served_total'] == 'gauge', names\n\
print(len(fams))\n";
    let py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .expect("python3");
    let err = String::from_utf8_lossy(&py.stderr);
    if err.contains("No module named 'prometheus_client'") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI: prometheus_client must be installed (scripts/install-test-deps)"
        );
        eprintln!(
            "prometheus_client not installed (pip install -r tests/e2e/requirements.txt): skipped"
        );
    } else {
        assert!(py.status.success(), "{err}");
    }
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
    {
        Ok(out) => {
            // promtool also lints (e.g. counters named _total); only errors fail it.
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!all.contains("error while linting"), "{all}");
            assert!(!all.contains("parse error"), "{all}");
            // 0: clean; 3: lint remarks only (ChartMuseum's gauges named *_total); 1: error.
            assert!(matches!(out.status.code(), Some(0 | 3)), "{all}");
        }
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI: promtool must be installed (Debian package prometheus, scripts/install-test-deps)"
            );
            eprintln!("promtool not installed (Debian package prometheus): skipped")
        }
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("/metrics".to_string()),
            Just("/index.yaml".to_string()),
            Just("/api/charts".to_string()),
            "/[a-z%0-9./]{0,40}",
            "/api/[a-z0-9]{1,8}/charts/[a-z]{1,5}/[0-9.]{1,6}",
            "/[a-z]{1,8}/charts/[a-z]{1,5}-[0-9.]{1,6}\\.tgz",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any path, Host and Accept header: no panic, and the request series stay within
        /// the fixed set of (code, method, route) combinations this workload can reach.
        #[test]
        fn any_request_keeps_series_bounded(
            reqs in proptest::collection::vec((path(), any::<String>(), any::<String>(), any::<bool>()), 1..40)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let s = Server::new(&["--enable-metrics", "--depth-dynamic"]).await;
                for (p, host, accept, head) in &reqs {
                    let m = if *head { Method::HEAD } else { Method::GET };
                    let mut headers = vec![];
                    if http::HeaderValue::from_str(host).is_ok() {
                        headers.push(("host", host.as_str()));
                    }
                    if http::HeaderValue::from_str(accept).is_ok() {
                        headers.push(("accept", accept.as_str()));
                    }
                    if http::Uri::try_from(p.as_str()).is_err() {
                        continue;
                    }
                    let r = s.req(m, p, vec![], &headers).await;
                    assert!(r.status.as_u16() < 600);
                }
                let e = scrape(&s).await;
                let urls = e.label_values("chartmuseum_requests_total", "url");
                for u in &urls {
                    assert!(u.starts_with('/') && u.len() < 60, "{u}");
                }
                // Templates reachable here: /metrics is never recorded; each route at most
                // with (repo or not) x (GET/HEAD) x a few codes.
                assert!(request_series(&e) <= 40, "{urls:?}");
                assert!(e.label_values("chartmuseum_requests_total", "host").len() <= 1);
            });
        }
    }
}

// ---- The binary: reload counters (SIGHUP). ----

const BIN: &str = env!("CARGO_BIN_EXE_chartroom");

struct Proc {
    child: Child,
    port: u16,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_string(),
    )
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not within 20 s: {what}");
}

#[test]
fn reload_counters_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("charts");
    std::fs::create_dir(&store).unwrap();
    let conf = dir.path().join("chartroom.yaml");
    let good = format!(
        "storage:\n  backend: local\n  local:\n    rootdir: {}\nenablemetrics: true\n",
        store.display()
    );
    std::fs::write(&conf, &good).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(BIN)
        .args([
            "--config",
            conf.to_str().unwrap(),
            "--port",
            &port.to_string(),
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc { child, port };
    wait_for("listening", || {
        TcpStream::connect(("127.0.0.1", p.port)).is_ok()
    });
    let reloads = |result: &str| -> Option<f64> {
        let (status, body) = http_get(p.port, "/metrics");
        assert_eq!(status, 200);
        parse(&body).value("chartroom_reloads_total", &[("result", result)])
    };
    // Both start at 0, so that increase() sees the first failure.
    assert_eq!(reloads("failure"), Some(0.0));
    assert_eq!(reloads("success"), Some(0.0));
    let hup = || unsafe {
        libc::kill(p.child.id() as i32, libc::SIGHUP);
    };
    // A broken file: the reload fails, the running configuration stays.
    std::fs::write(&conf, "storage: [\n").unwrap();
    hup();
    wait_for("failed reload counted", || reloads("failure") == Some(1.0));
    assert_eq!(reloads("success"), Some(0.0));
    std::fs::write(&conf, &good).unwrap();
    hup();
    wait_for("successful reload counted", || {
        reloads("success") == Some(1.0)
    });
    let (_, body) = http_get(p.port, "/metrics");
    let e = parse(&body);
    let when = e
        .value(
            "chartroom_reload_last_timestamp_seconds",
            &[("result", "success")],
        )
        .unwrap();
    assert!(when > 1.0e9, "{when}");
    assert_eq!(
        e.value("chartroom_reloads_total", &[("result", "failure")]),
        Some(1.0)
    );
}

/// `--metrics-listen`: /metrics on its own address only; the API's listener answers 404.
#[test]
fn metrics_on_a_separate_address() {
    let dir = tempfile::tempdir().unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, mport) = (free(), free());
    let child = Command::new(BIN)
        .args([
            "--storage",
            "local",
            "--storage-local-rootdir",
            dir.path().to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--enable-metrics",
            "--metrics-listen",
            &format!("127.0.0.1:{mport}"),
        ])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc { child, port };
    wait_for("listening", || {
        TcpStream::connect(("127.0.0.1", p.port)).is_ok()
    });
    assert_eq!(http_get(p.port, "/index.yaml").0, 200);
    assert_eq!(http_get(p.port, "/metrics").0, 404);
    let (status, body) = http_get(mport, "/metrics");
    assert_eq!(status, 200);
    let e = parse(&body);
    assert_eq!(
        e.value("chartmuseum_requests_total", &[("url", "/index.yaml")]),
        Some(1.0)
    );
    assert_eq!(http_get(mport, "/index.yaml").0, 404);
    // A bad address is a configuration error naming the key.
    let out = Command::new(BIN)
        .args([
            "--storage",
            "local",
            "--storage-local-rootdir",
            dir.path().to_str().unwrap(),
        ])
        .args(["--metrics-listen", "localhost:x", "check-config"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("metricslisten"));
}

/// An S3 outage (a real SeaweedFS stopped): storage errors by kind, retries, failed refreshes
/// and the staleness gauge go up; once S3 is back, a refresh brings the staleness down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_moves_the_storage_series() {
    if !s3_harness::available() {
        return;
    }
    let mut h = s3_harness::S3Harness::start().await;
    let endpoint = h.endpoint();
    let prefix = common::unique("metrics");
    let args: Vec<String> = [
        "--storage",
        "amazon",
        "--storage-amazon-bucket",
        s3_harness::BUCKET,
        "--storage-amazon-endpoint",
        &endpoint,
        "--storage-amazon-prefix",
        &prefix,
        "--storage-amazon-retries=1",
        "--enable-metrics",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let parsed = chartroom::config::parse_args(&args).unwrap();
    let env = h.env();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let cfg = chartroom::config::load(&parsed, &lookup, None).unwrap();
    let registry = chartroom::daemon::build_registry(&cfg).await.unwrap();
    let s = Server::with_app(std::sync::Arc::new(chartroom::api::App::new(
        &cfg, registry,
    )));
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    s.refresh().await;
    let e = scrape(&s).await;
    assert!(e.of("chartroom_storage_errors_total").is_empty());
    assert!(
        e.value(
            "chartroom_storage_http_requests_total",
            &[("backend", "amazon"), ("method", "put")]
        )
        .unwrap()
            >= 1.0
    );
    let fresh = e
        .value("chartroom_index_age_seconds", &[("repo", "")])
        .unwrap();

    h.stop_server();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(s.app.registry.load().refresh_all().await.is_err());
    let e = scrape(&s).await;
    let errors: f64 = e
        .of("chartroom_storage_errors_total")
        .iter()
        .filter(|x| x.labels["backend"] == "amazon" && x.labels["operation"] == "list")
        .map(|x| x.value)
        .sum();
    assert!(
        errors >= 1.0,
        "{:?}",
        e.of("chartroom_storage_errors_total")
    );
    assert!(
        e.value("chartroom_storage_retries_total", &[("backend", "amazon")])
            .unwrap()
            >= 1.0
    );
    assert_eq!(e.value("chartroom_refresh_failures_total", &[]), Some(1.0));
    let stale = e
        .value("chartroom_index_age_seconds", &[("repo", "")])
        .unwrap();
    assert!(stale >= fresh + 1.0, "{stale} vs {fresh}");

    h.start_server().await;
    common::eventually(Duration::from_secs(30), "S3 answers again", || async {
        s.app.registry.load().refresh_all().await.is_ok()
    })
    .await;
    let e = scrape(&s).await;
    let after = e
        .value("chartroom_index_age_seconds", &[("repo", "")])
        .unwrap();
    assert!(after < stale, "{after} vs {stale}");
}
