//! The Swift backend against a real one-node Swift (`tests/swift/swift-harness.sh`): token
//! expiry and re-authentication, rotated key files, memcached losing every token, the proxy
//! down, hung, and back; refresh cost; two chartroom instances on one container.

#[path = "swift/harness.rs"]
mod swift_harness;

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chartroom::api::App;
use chartroom::config;
use chartroom::repository::Registry;
use chartroom::storage::swift::{Secret, SwiftStorage, auth};
use chartroom::storage::{Storage, StorageError};
use common::{chart, eventually, unique};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use swift_harness::SwiftHarness;

// ---------------------------------------------------------------------------------------------
// Faults: one Swift with 3-second tokens; the scenarios run one after the other.
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swift_faults_and_recovery() {
    if !swift_harness::available() {
        return;
    }
    let mut h = SwiftHarness::start(3);
    token_expiry_is_invisible(&h).await;
    rotated_key_file_is_read_at_login(&h).await;
    proxy_down_then_back(&h).await;
    hung_proxy_times_out(&h).await;
    h.stop();
}

/// Tokens live 3 s: a client working for 10 s never sees a failure.
async fn token_expiry_is_invisible(h: &SwiftHarness) {
    let s = h.storage(&unique("expiry"));
    let t0 = Instant::now();
    let mut ops = 0;
    while t0.elapsed() < Duration::from_secs(10) {
        let name = format!("c-{ops}.tgz");
        s.put(&name, Bytes::from(vec![b'x'; 100])).await.unwrap();
        assert_eq!(s.get(&name).await.unwrap().len(), 100);
        assert!(s.list("").await.unwrap().iter().any(|o| o.name == name));
        ops += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let st = s.stats().await;
    eprintln!("token expiry: {ops} rounds, {st:?}");
    assert!(
        st.logins >= 3,
        "tokens of 3 s over 10 s need new logins: {st:?}"
    );
}

async fn rotated_key_file_is_read_at_login(h: &SwiftHarness) {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("key");
    std::fs::write(&keyfile, "wrong\n").unwrap();
    let mut settings = h.settings(&unique("keyfile"));
    settings.auth = chartroom::storage::swift::AuthConfig::V1(auth::V1Config {
        url: h.var("ST_AUTH"),
        user: h.var("ST_USER"),
        key: Secret::File(keyfile.clone()),
    });
    settings.attempts = 2;
    let s = SwiftStorage::new(settings).unwrap();
    let t = Instant::now();
    let e = s.check().await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("credentials rejected"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a rejected login is not retried"
    );
    // The operator fixes the file; the running backend picks it up at its next login.
    std::fs::write(&keyfile, format!("{}\n", h.var("ST_KEY"))).unwrap();
    s.check().await.unwrap();
    s.put("a.tgz", Bytes::from_static(b"a")).await.unwrap();
}

/// Restarting memcached loses every tempauth token: the next request gets 401 and the
/// backend logs in again by itself.
async fn lost_tokens_lead_to_a_new_login(h: &SwiftHarness) {
    let s = h.storage(&unique("memcached"));
    s.put("a.tgz", Bytes::from_static(b"a")).await.unwrap();
    let before = s.stats().await;
    h.stop_server("memcached");
    h.start_server("memcached");
    assert_eq!(s.get("a.tgz").await.unwrap(), Bytes::from_static(b"a"));
    let after = s.stats().await;
    assert_eq!(after.reauths, before.reauths + 1, "{before:?} -> {after:?}");
    assert_eq!(after.logins, before.logins + 1, "{before:?} -> {after:?}");
}

/// Proxy stopped: calls fail fast with Unavailable (after retries), reads of objects read
/// before are served from memory; proxy back: the same backend works again.
async fn proxy_down_then_back(h: &SwiftHarness) {
    let s = h.storage(&unique("down"));
    s.put("kept.tgz", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    s.put("seen.tgz", Bytes::from_static(b"seen"))
        .await
        .unwrap();
    assert_eq!(
        s.get("seen.tgz").await.unwrap(),
        Bytes::from_static(b"seen")
    );
    h.stop_server("proxy");
    let t = Instant::now();
    let e = s.list("").await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
    eprintln!("proxy down: list failed after {took:?}: {e}");
    let e = s
        .put("new.tgz", Bytes::from_static(b"new"))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert_eq!(
        s.get("seen.tgz").await.unwrap(),
        Bytes::from_static(b"seen")
    );
    assert_eq!(s.stats().await.requests.cache_reads, 1);
    let problem = s.problem().expect("a problem is reported");
    assert!(problem.contains("refused"), "{problem}");
    h.start_server("proxy");
    eventually(Duration::from_secs(10), "list works again", || async {
        s.list("").await.is_ok()
    })
    .await;
    assert_eq!(s.problem(), None);
    let names: Vec<String> = s
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(
        names,
        ["kept.tgz", "seen.tgz"],
        "the failed upload left nothing"
    );
    s.put("new.tgz", Bytes::from_static(b"new")).await.unwrap();
}

/// A proxy that accepts connections but never answers: every call ends at its timeout.
async fn hung_proxy_times_out(h: &SwiftHarness) {
    let mut settings = h.settings(&unique("hung"));
    settings.timeout = Duration::from_millis(700);
    settings.attempts = 2;
    settings.backoff = Duration::from_millis(100);
    let s = SwiftStorage::new(settings).unwrap();
    s.put("a.tgz", Bytes::from_static(b"a")).await.unwrap();
    h.signal_server("proxy", libc::SIGSTOP);
    let t = Instant::now();
    let e = s.list("").await.unwrap_err();
    let took = t.elapsed();
    h.signal_server("proxy", libc::SIGCONT);
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(took < Duration::from_secs(4), "took {took:?}: {e}");
    eprintln!("hung proxy: list failed after {took:?}: {e}");
    eventually(Duration::from_secs(10), "answers again", || async {
        s.list("").await.is_ok()
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// chartroom on Swift, in-process: API, refresh cost, two instances.
// ---------------------------------------------------------------------------------------------

struct Instance {
    app: Arc<App>,
    swift: Arc<SwiftStorage>,
}

impl Instance {
    async fn new(h: &SwiftHarness, prefix: &str, extra: &[&str]) -> Instance {
        let mut args: Vec<String> = [
            "--storage",
            "openstack",
            "--storage-openstack-auth",
            "v1",
            "--storage-openstack-container",
            "charts",
            "--storage-openstack-prefix",
            prefix,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let parsed = config::parse_args(&args).unwrap();
        let env: Vec<(String, String)> = h.v1_env();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let cfg = config::load(&parsed, &lookup, None).unwrap();
        // What daemon::build_registry does, keeping the backend's own type for its counters.
        let swift = Arc::new(SwiftStorage::from_config(&cfg.storage).unwrap());
        swift.check().await.unwrap();
        let registry = Registry::new(swift.clone(), chartroom::api::repo_settings(&cfg));
        registry.repo("").await.unwrap();
        Instance {
            app: Arc::new(App::new(&cfg, registry)),
            swift,
        }
    }

    async fn req(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, Bytes) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = self.app.handle(req).await;
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    async fn versions(&self) -> Vec<String> {
        let (st, body) = self.req(Method::GET, "/index.yaml", vec![]).await;
        assert_eq!(st, StatusCode::OK);
        let v: serde_json::Value = serde_norway::from_slice(&body).unwrap();
        let mut out = Vec::new();
        if let Some(entries) = v["entries"].as_object() {
            for (name, list) in entries {
                for e in list.as_array().unwrap() {
                    out.push(format!(
                        "{name}-{}@{}",
                        e["version"].as_str().unwrap(),
                        &e["digest"].as_str().unwrap()[..8]
                    ));
                }
            }
        }
        out.sort();
        out
    }

    async fn refresh(&self) {
        self.app.registry.load().refresh_all().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chartroom_on_swift() {
    if !swift_harness::available() {
        return;
    }
    let mut h = SwiftHarness::start(86_400);
    // Long-lived tokens here, so the only way to a new login is the 401.
    lost_tokens_lead_to_a_new_login(&h).await;
    streamed_download(&h).await;
    streamed_checks_run_on_the_last_byte(&h).await;
    api_round_trip(&h).await;
    two_instances_converge(&h).await;
    h.stop();
}

/// What the chart download handler does with [`Storage::get_stream`]: the object's bytes as a
/// response body, passed on as they arrive (see the report for the handler change).
fn stream_body(obj: chartroom::storage::ObjectStream) -> chartroom::api::Body {
    use futures_util::TryStreamExt;
    BodyExt::boxed(http_body_util::StreamBody::new(
        obj.stream.map_ok(http_body::Frame::data),
    ))
}

async fn streamed_download(h: &SwiftHarness) {
    let s = h.storage(&unique("stream"));
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    s.put("big.tgz", Bytes::from(big.clone())).await.unwrap();
    let obj = s.get_stream("big.tgz").await.unwrap();
    assert_eq!(obj.size, big.len() as u64);
    let body = stream_body(obj);
    assert_eq!(http_body::Body::size_hint(&body).exact(), None);
    let got = body.collect().await.unwrap().to_bytes();
    assert!(got == big, "streamed bytes differ");
    let meta = s.stat("big.tgz").await.unwrap();
    assert_eq!(meta, s.list("").await.unwrap()[0]);
}

/// Reads a stream the way an HTTP server sends a body with a Content-Length: polls until
/// `size` bytes came (or an error did), then drops it without waiting for its end.
async fn read_like_a_server(obj: chartroom::storage::ObjectStream) -> (Vec<u8>, Option<String>) {
    use futures_util::StreamExt;
    let mut stream = obj.stream;
    let mut got = Vec::new();
    while (got.len() as u64) < obj.size {
        match stream.next().await {
            Some(Ok(b)) => got.extend_from_slice(&b),
            Some(Err(e)) => return (got, Some(e.to_string())),
            None => break,
        }
    }
    (got, None)
}

/// The MD5 check and the read cache of a streamed download happen on the chunk that
/// completes the body: a server stops polling there. A body damaged on disk (same size, the
/// ETag of the original) never goes out whole.
async fn streamed_checks_run_on_the_last_byte(h: &SwiftHarness) {
    let prefix = unique("laststep");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    h.storage(&prefix)
        .put("c.tgz", Bytes::from(data.clone()))
        .await
        .unwrap();
    // A new backend (an empty cache) streams it; the complete body lands in its cache, which
    // serves it once the proxy is gone.
    let s = h.storage(&prefix);
    let (got, err) = read_like_a_server(s.get_stream("c.tgz").await.unwrap()).await;
    assert_eq!(err, None);
    assert!(got == data, "streamed bytes differ");
    h.stop_server("proxy");
    let cached = s.get("c.tgz").await;
    h.start_server("proxy");
    assert_eq!(cached.unwrap(), Bytes::from(data.clone()));
    assert_eq!(s.stats().await.requests.cache_reads, 1);

    // Damage one byte of the object server's copy, in place (its metadata, ETag included,
    // stays); the next reader must get an error before the body is complete.
    let mut files = vec![h.dir.path().join("node")];
    let mut damaged = false;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if p.extension().is_some_and(|e| e == "data")
            && std::fs::read(&p).is_ok_and(|b| b == data)
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_at(&[data[150_000] ^ 0xff], 150_000).unwrap();
            damaged = true;
        }
    }
    assert!(damaged, "the object's .data file was not found");
    let fresh = h.storage(&prefix);
    let (got, err) = read_like_a_server(fresh.get_stream("c.tgz").await.unwrap()).await;
    let err = err.expect("a damaged body was passed on as complete");
    assert!(err.contains("does not match its ETag"), "{err}");
    assert!(got.len() < data.len(), "{} bytes went out", got.len());
}

async fn api_round_trip(h: &SwiftHarness) {
    let prefix = unique("api");
    let a = Instance::new(h, &prefix, &[]).await;
    let pkg = chart("web", "1.0.0");
    let (st, body) = a.req(Method::POST, "/api/charts", pkg.clone()).await;
    assert_eq!(st, StatusCode::CREATED, "{body:?}");
    let (st, _) = a.req(Method::POST, "/api/charts", pkg.clone()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, got) = a.req(Method::GET, "/charts/web-1.0.0.tgz", vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got, pkg);
    let (st, _) = a.req(Method::GET, "/api/charts/web/1.0.0", vec![]).await;
    assert_eq!(st, StatusCode::OK);
    // The object in Swift is the package, under the prefix.
    let direct = h.storage(&prefix);
    assert_eq!(direct.get("web-1.0.0.tgz").await.unwrap(), pkg);
    let (st, _) = a.req(Method::DELETE, "/api/charts/web/1.0.0", vec![]).await;
    assert_eq!(st, StatusCode::OK);
    assert!(matches!(
        direct.get("web-1.0.0.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(a.versions().await.is_empty());
}

async fn two_instances_converge(h: &SwiftHarness) {
    let prefix = unique("pair");
    let a = Instance::new(h, &prefix, &[]).await;
    let b = Instance::new(h, &prefix, &[]).await;
    // Uploaded to A: in B's index after B's refresh.
    assert_eq!(
        a.req(Method::POST, "/api/charts", chart("one", "1.0.0"))
            .await
            .0,
        StatusCode::CREATED
    );
    b.refresh().await;
    assert_eq!(a.versions().await, b.versions().await);
    assert_eq!(b.versions().await.len(), 1);
    // Deleted directly in Swift: gone from both after a refresh.
    h.storage(&prefix).delete("one-1.0.0.tgz").await.unwrap();
    a.refresh().await;
    b.refresh().await;
    assert!(a.versions().await.is_empty() && b.versions().await.is_empty());
    // Concurrent uploads of different charts to A and B: none lost.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (app, name) = if i % 2 == 0 {
            (a.app.clone(), "evens")
        } else {
            (b.app.clone(), "odds")
        };
        tasks.push(tokio::spawn(async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri("/api/charts")
                .body(Full::new(Bytes::from(chart(name, &format!("1.0.{i}")))))
                .unwrap();
            app.handle(req).await.status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    a.refresh().await;
    b.refresh().await;
    assert_eq!(a.versions().await.len(), 8);
    assert_eq!(a.versions().await, b.versions().await);
    // The same version, different bytes, to both at once: one is stored whole, and after a
    // refresh both indexes describe exactly those bytes.
    for round in 0..5 {
        let version = format!("2.0.{round}");
        let pa = common::tgz(&[(
            "same/Chart.yaml",
            &format!("apiVersion: v2\nname: same\nversion: {version}\ndescription: from A\n"),
        )]);
        let pb = common::tgz(&[(
            "same/Chart.yaml",
            &format!("apiVersion: v2\nname: same\nversion: {version}\ndescription: from B\n"),
        )]);
        let (ra, rb) = tokio::join!(
            a.req(Method::POST, "/api/charts", pa.clone()),
            b.req(Method::POST, "/api/charts", pb.clone())
        );
        let codes = [ra.0, rb.0];
        assert!(codes.contains(&StatusCode::CREATED), "{codes:?}");
        for c in codes {
            assert!(
                c == StatusCode::CREATED || c == StatusCode::CONFLICT,
                "{codes:?}"
            );
        }
        let stored = h
            .storage(&prefix)
            .get(&format!("same-{version}.tgz"))
            .await
            .unwrap();
        assert!(stored == pa || stored == pb, "stored whole");
        a.refresh().await;
        b.refresh().await;
        let digest = chartroom::repository::sha256_hex(&stored);
        for inst in [&a, &b] {
            let (_, body) = inst
                .req(Method::GET, &format!("/api/charts/same/{version}"), vec![])
                .await;
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                v["digest"],
                digest.as_str(),
                "round {round}: codes {codes:?}"
            );
        }
    }
    assert_eq!(a.versions().await, b.versions().await);

    // Refresh cost: nothing changed, one listing and no download; one new chart (uploaded
    // through B), one listing and one download.
    let before = a.swift.stats().await;
    a.refresh().await;
    let after = a.swift.stats().await;
    assert_eq!(
        (
            after.requests.lists - before.requests.lists,
            after.requests.gets - before.requests.gets
        ),
        (1, 0),
        "{after:?}"
    );
    assert_eq!(after.requests.heads, before.requests.heads);
    assert_eq!(
        b.req(Method::POST, "/api/charts", chart("late", "1.0.0"))
            .await
            .0,
        StatusCode::CREATED
    );
    let before = a.swift.stats().await;
    a.refresh().await;
    let after = a.swift.stats().await;
    assert_eq!(
        (
            after.requests.lists - before.requests.lists,
            after.requests.gets - before.requests.gets
        ),
        (1, 1),
        "{after:?}"
    );
    assert_eq!(a.versions().await, b.versions().await);
}
