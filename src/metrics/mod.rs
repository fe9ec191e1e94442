//! Prometheus metrics (`enablemetrics`): ChartMuseum's `chartmuseum_*` series, with the same
//! names, types and labels where the exposition library allows it, and chartroom's own
//! `chartroom_*` series for storage, refreshes, staleness, uploads and reloads, plus the usual
//! `process_*` figures. Encoded by the `prometheus-client` crate, in the Prometheus text format
//! 0.0.4, or OpenMetrics 1.0 when the `Accept` header asks for it.
//!
//! Every label is bounded:
//! - `url` is the route template (`/:repo/charts/:filename`), never the request's path;
//!   requests that match no route, and 404/405 answers, are not recorded (as ChartMuseum);
//! - `host` is not the request's `Host` header but a value fixed at start: the host of
//!   `charturl` when set, else `listen.host:port`;
//! - `handler` is the route's name (`index`, `chart-file`, ...);
//! - `repo` names only repositories held in memory with charts (and the root, always), at
//!   most [`MAX_REPO_SERIES`] of them (the largest by versions); the others are summed under
//!   `repo=".other"` (a name no repository can have).
//!
//! Counters are atomics updated where things happen; everything per repository, the storage
//! request counts and the process figures are read when `/metrics` is scraped, in work
//! proportional to the repositories in memory, with no thread of their own.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub mod listen;
pub mod process;
pub mod storage;

pub use storage::{StoreMeter, metered};

use crate::api::route::Endpoint;
use crate::config::Config;
use crate::storage::RequestStats;

/// At most this many repositories get series of their own; the rest are summed under
/// `repo=".other"`.
pub const MAX_REPO_SERIES: usize = 1000;

/// The `repo` label of the repositories beyond [`MAX_REPO_SERIES`]. Repository names cannot
/// start with `.`, so it is never a real one.
pub const OTHER_REPOS: &str = ".other";

/// Content type of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus client libraries' default latency buckets (ChartMuseum's histogram).
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Request and response sizes, in bytes.
const SIZE_BUCKETS: [f64; 8] = [
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
    1_000_000_000.0,
];

/// The `reason` label values of `chartroom_uploads_rejected_total`.
const UPLOAD_REJECTIONS: [&str; 8] = [
    "conflict",
    "too_large",
    "invalid",
    "limit",
    "unauthorized",
    "timeout",
    "server_error",
    "other",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    code: u16,
    method: &'static str,
    handler: &'static str,
    host: Arc<String>,
    url: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    code: u16,
    method: &'static str,
    url: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The metrics of one server (an [`crate::api::App`]): kept across reloads.
#[derive(Debug)]
pub struct Metrics {
    host: Arc<String>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram, fn() -> Histogram>,
    request_sizes: Histogram,
    response_sizes: Histogram,
    uploads_rejected: Family<ReasonLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    last_reload: Family<ResultLabels, Gauge<f64, AtomicU64>>,
}

/// What a request was, for the request series.
pub struct RequestInfo {
    pub method: &'static str,
    pub handler: &'static str,
    pub url: &'static str,
    /// ChartMuseum's approximation: path, method, protocol, headers and body length.
    pub request_bytes: u64,
}

impl Metrics {
    pub fn new(cfg: &Config) -> Metrics {
        let m = Metrics {
            host: Arc::new(host_label(cfg)),
            requests: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            request_sizes: Histogram::new(SIZE_BUCKETS),
            response_sizes: Histogram::new(SIZE_BUCKETS),
            uploads_rejected: Family::default(),
            reloads: Family::default(),
            last_reload: Family::default(),
        };
        // Counters of a fixed label set start at 0, so that increase() sees their first rise.
        for reason in UPLOAD_REJECTIONS {
            let _ = m.uploads_rejected.get_or_create(&ReasonLabels { reason });
        }
        for result in ["success", "failure"] {
            let _ = m.reloads.get_or_create(&ResultLabels { result });
        }
        m
    }

    /// Records one answered request (not 404 or 405: as ChartMuseum, those are not recorded).
    pub fn request(&self, info: &RequestInfo, status: u16, seconds: f64, response_bytes: u64) {
        if status == 404 || status == 405 {
            return;
        }
        self.requests
            .get_or_create(&RequestLabels {
                code: status,
                method: info.method,
                handler: info.handler,
                host: self.host.clone(),
                url: info.url,
            })
            .inc();
        self.durations
            .get_or_create(&DurationLabels {
                code: status,
                method: info.method,
                url: info.url,
            })
            .observe(seconds);
        self.request_sizes.observe(info.request_bytes as f64);
        self.response_sizes.observe(response_bytes as f64);
    }

    /// Records an upload (chart or provenance file) answered with `status` >= 400.
    pub fn upload_rejected(&self, status: u16) {
        // One of UPLOAD_REJECTIONS.
        let reason = match status {
            409 => "conflict",
            413 => "too_large",
            400 => "invalid",
            507 => "limit",
            401 | 403 => "unauthorized",
            408 => "timeout",
            500..=599 => "server_error",
            _ => "other",
        };
        self.uploads_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Records a reload (SIGHUP) and its outcome.
    pub fn reloaded(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.last_reload
            .get_or_create(&ResultLabels { result })
            .set(unix_now());
    }

    /// Renders every series: OpenMetrics with `openmetrics`, else the Prometheus text format.
    pub fn render(&self, repos: &crate::repository::Registry, openmetrics: bool) -> String {
        let mut reg = Registry::default();
        reg.register(
            "chartmuseum_requests",
            "How many HTTP requests processed, partitioned by status code and HTTP method",
            self.requests.clone(),
        );
        reg.register(
            "chartmuseum_request_duration_seconds",
            "The HTTP request latencies in seconds",
            self.durations.clone(),
        );
        reg.register(
            "chartmuseum_request_size_bytes",
            "The HTTP request sizes in bytes",
            self.request_sizes.clone(),
        );
        reg.register(
            "chartmuseum_response_size_bytes",
            "The HTTP response sizes in bytes",
            self.response_sizes.clone(),
        );
        reg.register(
            "chartroom_uploads_rejected",
            "Uploads (charts and provenance files) refused, by reason (conflict, too_large, invalid, limit, unauthorized, timeout, server_error)",
            self.uploads_rejected.clone(),
        );
        reg.register(
            "chartroom_reloads",
            "Configuration reloads (SIGHUP) by result (success, failure)",
            self.reloads.clone(),
        );
        reg.register(
            "chartroom_reload_last_timestamp_seconds",
            "Time of the last reload with that result, in seconds since the epoch",
            self.last_reload.clone(),
        );
        reg.register(
            "chartroom_build",
            "chartroom's version",
            Info::new(vec![("version", crate::api::VERSION)]),
        );
        repos.meter.register(&mut reg);
        reg.register_collector(Box::new(Scrape::take(repos)));
        let mut out = String::with_capacity(16 * 1024);
        let res = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &reg)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &reg)
        };
        if res.is_err() {
            // Writing to a String does not fail; keep what was written.
            crate::warn!("cannot encode metrics");
        }
        out
    }
}

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: &str) -> bool {
    accept
        .to_ascii_lowercase()
        .contains("application/openmetrics-text")
}

/// The `host` label: fixed at start, never the request's `Host` header.
fn host_label(cfg: &Config) -> String {
    let from_url = cfg
        .chart_url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap_or(""))
        .filter(|h| !h.is_empty());
    match from_url {
        Some(h) => h.to_string(),
        None if cfg.listen_host.contains(':') => format!("[{}]:{}", cfg.listen_host, cfg.port),
        None => format!("{}:{}", cfg.listen_host, cfg.port),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The method label of a routed request (routes exist for these methods only).
pub fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

/// The `url` label: the route's template, with `:repo` where a repository path was given.
/// The context path is not part of it.
pub fn url_template(e: &Endpoint, repo: bool) -> &'static str {
    let (root, tenant) = match e {
        Endpoint::Welcome => ("/", "/:repo/"),
        Endpoint::Health => ("/health", "/:repo/health"),
        Endpoint::Info => ("/info", "/:repo/info"),
        Endpoint::Metrics => ("/metrics", "/metrics"),
        Endpoint::ArtifactHub => ("/artifacthub-repo.yml", "/:repo/artifacthub-repo.yml"),
        Endpoint::Index { .. } => ("/index.yaml", "/:repo/index.yaml"),
        Endpoint::ChartFile { .. } => ("/charts/:filename", "/:repo/charts/:filename"),
        Endpoint::ListCharts | Endpoint::UploadChart => ("/api/charts", "/api/:repo/charts"),
        Endpoint::UploadProv => ("/api/prov", "/api/:repo/prov"),
        Endpoint::ChartVersions { .. } => ("/api/charts/:name", "/api/:repo/charts/:name"),
        Endpoint::ChartVersion { .. } | Endpoint::Delete { .. } => (
            "/api/charts/:name/:version",
            "/api/:repo/charts/:name/:version",
        ),
        Endpoint::Templates { .. } => (
            "/api/charts/:name/:version/templates",
            "/api/:repo/charts/:name/:version/templates",
        ),
        Endpoint::Values { .. } => (
            "/api/charts/:name/:version/values",
            "/api/:repo/charts/:name/:version/values",
        ),
    };
    if repo { tenant } else { root }
}

/// One repository's figures at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoRow {
    pub key: String,
    pub charts: u64,
    pub versions: u64,
    pub index_bytes: u64,
    /// Seconds since the last successful reconciliation with storage.
    pub age_seconds: f64,
}

/// The rows to export: the root and every repository with charts, the largest
/// [`MAX_REPO_SERIES`] of them by versions (then by name) on their own, the rest summed under
/// [`OTHER_REPOS`] (its age is the largest of theirs).
pub fn cap_rows(mut rows: Vec<RepoRow>, max: usize) -> Vec<RepoRow> {
    rows.retain(|r| r.key.is_empty() || r.versions > 0);
    rows.sort_by(|a, b| {
        (!a.key.is_empty(), std::cmp::Reverse(a.versions), &a.key).cmp(&(
            !b.key.is_empty(),
            std::cmp::Reverse(b.versions),
            &b.key,
        ))
    });
    if rows.len() <= max {
        return rows;
    }
    let rest = rows.split_off(max);
    let mut other = RepoRow {
        key: OTHER_REPOS.into(),
        charts: 0,
        versions: 0,
        index_bytes: 0,
        age_seconds: 0.0,
    };
    for r in rest {
        other.charts += r.charts;
        other.versions += r.versions;
        other.index_bytes += r.index_bytes;
        other.age_seconds = other.age_seconds.max(r.age_seconds);
    }
    rows.push(other);
    rows
}

/// Figures read at scrape time.
#[derive(Debug)]
struct Scrape {
    repos: Vec<RepoRow>,
    repos_in_memory: usize,
    backend: &'static str,
    requests: Option<RequestStats>,
    process: process::ProcessStats,
}

impl Scrape {
    fn take(registry: &crate::repository::Registry) -> Scrape {
        let now_ms = (unix_now() * 1000.0) as u64;
        let loaded = registry.loaded_repos();
        let rows = loaded
            .iter()
            .map(|r| {
                let (charts, versions, index_bytes) = {
                    let idx = r.index();
                    (
                        idx.chart_count() as u64,
                        idx.version_count() as u64,
                        idx.size_estimate() as u64,
                    )
                };
                let ok = r.last_refresh_ok_ms();
                RepoRow {
                    key: r.key.clone(),
                    charts,
                    versions,
                    index_bytes,
                    age_seconds: now_ms.saturating_sub(ok) as f64 / 1000.0,
                }
            })
            .collect();
        Scrape {
            repos: cap_rows(rows, MAX_REPO_SERIES),
            repos_in_memory: loaded.len(),
            backend: storage::backend_label(&registry.storage.describe()),
            requests: registry.storage.request_stats(),
            process: process::read(),
        }
    }
}

fn per_repo<T: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: &[RepoRow],
    value: impl Fn(&RepoRow) -> T,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for r in rows {
        let labels = [("repo", r.key.as_str())];
        value(r).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn single<T: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: Option<T>,
) -> Result<(), std::fmt::Error> {
    if let Some(m) = metric {
        let kind = m.metric_type();
        m.encode(encoder.encode_descriptor(name, help, None, kind)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let rows = &self.repos;
        per_repo(
            e,
            "chartmuseum_charts_served_total",
            "Total number of charts served, per repository",
            MetricType::Gauge,
            rows,
            |r| ConstGauge::new(r.charts as i64),
        )?;
        per_repo(
            e,
            "chartmuseum_chart_versions_served_total",
            "Total number of chart versions served, per repository",
            MetricType::Gauge,
            rows,
            |r| ConstGauge::new(r.versions as i64),
        )?;
        per_repo(
            e,
            "chartroom_index_size_bytes",
            "Size of the repository's serialised index",
            MetricType::Gauge,
            rows,
            |r| ConstGauge::new(r.index_bytes as i64),
        )?;
        per_repo(
            e,
            "chartroom_index_age_seconds",
            "Seconds since this instance last reconciled the repository's index with storage successfully (staleness)",
            MetricType::Gauge,
            rows,
            |r| ConstGauge::new(r.age_seconds),
        )?;
        single(
            e,
            "chartroom_repositories",
            "Repositories (tenants) held in memory",
            Some(ConstGauge::new(self.repos_in_memory as i64)),
        )?;
        if let Some(s) = &self.requests {
            let mut m = e.encode_descriptor(
                "chartroom_storage_http_requests",
                "HTTP requests sent to the object store, every try counted, by method",
                None,
                MetricType::Counter,
            )?;
            for (method, n) in [
                ("list", s.lists),
                ("get", s.gets),
                ("head", s.heads),
                ("put", s.puts),
                ("delete", s.deletes),
            ] {
                let labels = [("backend", self.backend), ("method", method)];
                ConstCounter::new(n).encode(m.encode_family(&labels)?)?;
            }
            let labels = [("backend", self.backend)];
            let mut m = e.encode_descriptor(
                "chartroom_storage_retries",
                "Tries of storage calls after a failed one (connection errors, 5xx)",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(s.retries).encode(m.encode_family(&labels)?)?;
            let mut m = e.encode_descriptor(
                "chartroom_storage_cache_reads",
                "Reads served from the read cache because the object store could not be reached",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(s.cache_reads).encode(m.encode_family(&labels)?)?;
        }
        let p = &self.process;
        single(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            p.resident_bytes.map(|v| ConstGauge::new(v as i64)),
        )?;
        single(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            p.virtual_bytes.map(|v| ConstGauge::new(v as i64)),
        )?;
        single(
            e,
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            p.cpu_seconds.map(ConstCounter::new),
        )?;
        single(
            e,
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            p.start_time_seconds.map(ConstGauge::new),
        )?;
        single(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            p.open_fds.map(|v| ConstGauge::new(v as i64)),
        )?;
        single(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors",
            p.max_fds.map(|v| ConstGauge::new(v as i64)),
        )?;
        single(
            e,
            "process_threads",
            "Number of OS threads in the process",
            p.threads.map(|v| ConstGauge::new(v as i64)),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, versions: u64) -> RepoRow {
        RepoRow {
            key: key.into(),
            charts: 1,
            versions,
            index_bytes: 10,
            age_seconds: versions as f64,
        }
    }

    #[test]
    fn rows_are_capped() {
        let rows = vec![
            row("", 0),
            row("a", 5),
            row("b", 0),
            row("c", 9),
            row("d", 1),
        ];
        let kept = cap_rows(rows.clone(), 10);
        let keys: Vec<&str> = kept.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["", "c", "a", "d"]);
        let kept = cap_rows(rows, 2);
        let keys: Vec<&str> = kept.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["", "c", OTHER_REPOS]);
        assert_eq!(kept[2].versions, 6);
        assert_eq!(kept[2].charts, 2);
        assert_eq!(kept[2].age_seconds, 5.0);
    }

    #[test]
    fn accept_and_templates() {
        assert!(wants_openmetrics(
            "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
        ));
        assert!(!wants_openmetrics("text/plain"));
        let f = Endpoint::ChartFile {
            file: "a-1.tgz".into(),
            head: false,
        };
        assert_eq!(url_template(&f, false), "/charts/:filename");
        assert_eq!(url_template(&f, true), "/:repo/charts/:filename");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            /// However many repositories, at most the cap plus one rows (root, `.other`).
            #[test]
            fn rows_stay_bounded(sizes in proptest::collection::vec(0u64..5, 0..300), max in 1usize..50) {
                let rows: Vec<RepoRow> = sizes.iter().enumerate().map(|(i, v)| row(&format!("t{i}"), *v)).collect();
                let kept = cap_rows(rows, max);
                prop_assert!(kept.len() <= max + 1);
                let total: u64 = sizes.iter().sum();
                prop_assert_eq!(kept.iter().map(|r| r.versions).sum::<u64>(), total);
            }
        }
    }
}
