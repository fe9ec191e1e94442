//! What `/metrics` costs: the render time of the whole exposition with N repositories in
//! memory (default 1,000, each with one chart), and `GET /index.yaml` throughput in-process
//! with metrics off and on. Prints figures, asserts nothing.
//!
//!     cargo run --release --example metrics_render [-- REPOSITORIES [REQUESTS]] 2>/dev/null
//!
//! (stderr carries the request log.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chartroom::api::App;
use chartroom::config;
use http::Request;
use http_body_util::{BodyExt, Full};

fn package(name: &str, version: &str) -> Vec<u8> {
    let chart_yaml = format!("apiVersion: v2\nname: {name}\nversion: {version}\n");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(chart_yaml.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, format!("{name}/Chart.yaml"), chart_yaml.as_bytes())
        .expect("tar");
    let raw = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).expect("gzip");
    gz.finish().expect("gzip")
}

async fn app(root: &std::path::Path, metrics: bool) -> Arc<App> {
    let mut args: Vec<String> = [
        "--storage",
        "local",
        "--storage-local-rootdir",
        &root.display().to_string(),
        "--depth",
        "1",
        "--disable-statefiles",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if metrics {
        args.push("--enable-metrics".into());
    }
    let parsed = config::parse_args(&args).expect("args");
    let cfg = config::load(&parsed, &|_| None, None).expect("config");
    let registry = chartroom::daemon::build_registry(&cfg)
        .await
        .expect("registry");
    Arc::new(App::new(&cfg, registry))
}

async fn get(app: &App, path: &str) -> (u16, usize) {
    let req = Request::get(path)
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = app.handle(req).await;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    (status, body)
}

/// Requests per second of `GET /t0000/index.yaml`, `n` requests one after the other.
async fn index_rate(app: &App, n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        get(app, "/t0000/index.yaml").await;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let repos: usize = argv.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let requests: usize = argv.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    for i in 0..repos {
        let d = dir.path().join(format!("t{i:04}"));
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("c-1.0.0.tgz"), package("c", "1.0.0")).expect("write");
        std::fs::write(d.join("d-2.0.0.tgz"), package("d", "2.0.0")).expect("write");
    }
    let on = app(dir.path(), true).await;
    let start = Instant::now();
    for i in 0..repos {
        get(&on, &format!("/t{i:04}/index.yaml")).await;
    }
    println!(
        "loaded {repos} repositories in {:.2} s",
        start.elapsed().as_secs_f64()
    );
    // Some request series, as a running server has.
    for i in 0..100 {
        get(&on, &format!("/t{i:04}/charts/c-1.0.0.tgz")).await;
        get(&on, &format!("/api/t{i:04}/charts")).await;
    }
    let mut times: Vec<Duration> = Vec::new();
    let mut size = 0;
    for _ in 0..50 {
        let t = Instant::now();
        let (status, len) = get(&on, "/metrics").await;
        times.push(t.elapsed());
        assert_eq!(status, 200);
        size = len;
    }
    times.sort();
    println!(
        "GET /metrics with {repos} repositories: {size} bytes; median {:.2} ms, p90 {:.2} ms, max {:.2} ms (50 scrapes)",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times[times.len() * 9 / 10].as_secs_f64() * 1000.0,
        times[times.len() - 1].as_secs_f64() * 1000.0
    );
    let off = app(dir.path(), false).await;
    get(&off, "/t0000/index.yaml").await;
    // Alternate to even out drift; best of three each.
    let (mut best_off, mut best_on) = (0f64, 0f64);
    for _ in 0..3 {
        best_off = best_off.max(index_rate(&off, requests).await);
        best_on = best_on.max(index_rate(&on, requests).await);
    }
    println!(
        "GET /index.yaml in-process, {requests} requests: metrics off {best_off:.0}/s, on {best_on:.0}/s ({:+.1}%)",
        (best_on / best_off - 1.0) * 100.0
    );
}
