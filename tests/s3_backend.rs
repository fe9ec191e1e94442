//! The S3 backend against a real S3-compatible server (SeaweedFS, `tests/s3/harness.rs`):
//! chartroom in-process on S3 (upload, list, download; objects added and removed directly in
//! the bucket; the cost of a refresh; two instances on one bucket), rejected credentials and
//! a rotated secret key file, S3 down and back, and the chartroom binary reloading its S3
//! settings on SIGHUP.

#[path = "s3/harness.rs"]
mod s3_harness;

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chartroom::api::App;
use chartroom::config;
use chartroom::repository::Registry;
use chartroom::storage::s3::S3Storage;
use chartroom::storage::{Secret, Storage, StorageError};
use common::{Server, chart, eventually, unique};
use http::StatusCode;
use s3_harness::S3Harness;

/// A chartroom application on S3, built the way `daemon::build_registry` does, keeping the
/// backend's own type for its request counters.
struct Instance {
    server: Server,
    s3: Arc<S3Storage>,
}

impl Instance {
    async fn new(h: &S3Harness, prefix: &str, extra: &[&str]) -> Instance {
        let endpoint = h.endpoint();
        let mut args: Vec<String> = [
            "--storage",
            "amazon",
            "--storage-amazon-bucket",
            s3_harness::BUCKET,
            "--storage-amazon-endpoint",
            &endpoint,
            "--storage-amazon-prefix",
            prefix,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let parsed = config::parse_args(&args).unwrap();
        let env = h.env();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let cfg = config::load(&parsed, &lookup, None).unwrap();
        let s3 = Arc::new(S3Storage::from_config(&cfg.storage).unwrap());
        s3.check().await.unwrap();
        let registry = Registry::new(s3.clone(), chartroom::api::repo_settings(&cfg));
        registry.repo("").await.unwrap();
        Instance {
            server: Server::with_app(Arc::new(App::new(&cfg, registry))),
            s3,
        }
    }

    async fn versions(&self) -> Vec<String> {
        let mut v = self.server.index_versions("/index.yaml").await;
        v.sort();
        v
    }

    async fn digest(&self, name: &str, version: &str) -> String {
        let r = self
            .server
            .get(&format!("/api/charts/{name}/{version}"))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        r.json()["digest"].as_str().unwrap().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chartroom_on_s3() {
    if !s3_harness::available() {
        return;
    }
    let h = S3Harness::start().await;
    eprintln!("seaweedfs started in {:.1} s", h.start_time.as_secs_f64());
    let t = Instant::now();
    api_round_trip(&h).await;
    out_of_band_changes_and_refresh_cost(&h).await;
    two_instances_converge(&h).await;
    rejected_credentials_are_named(&h).await;
    rotated_secret_key_file_is_picked_up(&h).await;
    sighup_reloads_s3_settings(&h).await;
    eprintln!("chartroom on s3: {:.1} s", t.elapsed().as_secs_f64());
}

async fn api_round_trip(h: &S3Harness) {
    let prefix = unique("api");
    let a = Instance::new(h, &prefix, &[]).await;
    let pkg = chart("web", "1.0.0");
    let r = a.server.post("/api/charts", pkg.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        a.server.post("/api/charts", pkg.clone()).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(a.versions().await, ["web-1.0.0"]);
    let r = a.server.get("/charts/web-1.0.0.tgz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, pkg);
    // The object in the bucket is the package, under the prefix.
    let direct = h.storage(&prefix);
    assert_eq!(direct.get("web-1.0.0.tgz").await.unwrap(), pkg);
    let r = a.server.delete("/api/charts/web/1.0.0").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(matches!(
        direct.get("web-1.0.0.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(a.versions().await.is_empty());
    assert_eq!(
        a.server.delete("/api/charts/web/1.0.0").await.status,
        StatusCode::NOT_FOUND
    );
}

async fn out_of_band_changes_and_refresh_cost(h: &S3Harness) {
    let prefix = unique("oob");
    let a = Instance::new(h, &prefix, &[]).await;
    for v in ["1.0.0", "1.1.0"] {
        let r = a.server.post("/api/charts", chart("app", v)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    // Nothing changed: one listing, no download, no HEAD (what an upload reported matches
    // the listing exactly).
    let before = a.s3.stats();
    a.server.refresh().await;
    let after = a.s3.stats();
    assert_eq!(
        (
            after.lists - before.lists,
            after.gets - before.gets,
            after.heads - before.heads
        ),
        (1, 0, 0),
        "{before:?} -> {after:?}"
    );
    // Added directly in the bucket: one listing, one download.
    let direct = h.storage(&prefix);
    direct
        .put("side-2.0.0.tgz", Bytes::from(chart("side", "2.0.0")))
        .await
        .unwrap();
    let before = a.s3.stats();
    a.server.refresh().await;
    let after = a.s3.stats();
    assert_eq!(
        (after.lists - before.lists, after.gets - before.gets),
        (1, 1),
        "{after:?}"
    );
    assert_eq!(a.versions().await, ["app-1.0.0", "app-1.1.0", "side-2.0.0"]);
    // Removed directly: gone after a refresh.
    direct.delete("app-1.0.0.tgz").await.unwrap();
    a.server.refresh().await;
    assert_eq!(a.versions().await, ["app-1.1.0", "side-2.0.0"]);
    // Replaced directly by other bytes (a later second): the index follows.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let replaced = common::tgz(&[(
        "side/Chart.yaml",
        "apiVersion: v2\nname: side\nversion: 2.0.0\ndescription: replaced out of band\n",
    )]);
    direct
        .put("side-2.0.0.tgz", Bytes::from(replaced.clone()))
        .await
        .unwrap();
    a.server.refresh().await;
    assert_eq!(
        a.digest("side", "2.0.0").await,
        chartroom::repository::sha256_hex(&replaced)
    );
    // A fresh instance on the same prefix (state file written by A or not) agrees.
    a.server.app.registry.load().save_states().await;
    let b = Instance::new(h, &prefix, &[]).await;
    assert_eq!(a.versions().await, b.versions().await);
}

async fn two_instances_converge(h: &S3Harness) {
    let prefix = unique("pair");
    let a = Instance::new(h, &prefix, &[]).await;
    let b = Instance::new(h, &prefix, &[]).await;
    assert_eq!(
        a.server
            .post("/api/charts", chart("one", "1.0.0"))
            .await
            .status,
        StatusCode::CREATED
    );
    b.server.refresh().await;
    assert_eq!(b.versions().await, ["one-1.0.0"]);
    // Concurrent uploads of different charts to A and B: none lost.
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (app, name) = if i % 2 == 0 {
            (a.server.app.clone(), "evens")
        } else {
            (b.server.app.clone(), "odds")
        };
        tasks.push(tokio::spawn(async move {
            let s = Server::with_app(app);
            s.post("/api/charts", chart(name, &format!("1.0.{i}")))
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::CREATED);
    }
    a.server.refresh().await;
    b.server.refresh().await;
    assert_eq!(a.versions().await.len(), 7);
    assert_eq!(a.versions().await, b.versions().await);
    // The same version, different bytes, to both at once: one stays whole, and after a
    // refresh both indexes describe exactly those bytes.
    for round in 0..3 {
        let version = format!("2.0.{round}");
        let body = |from: &str| {
            common::tgz(&[(
                "same/Chart.yaml",
                &format!("apiVersion: v2\nname: same\nversion: {version}\ndescription: {from}\n"),
            )])
        };
        let (pa, pb) = (body("from A"), body("from B"));
        let (ra, rb) = tokio::join!(
            a.server.post("/api/charts", pa.clone()),
            b.server.post("/api/charts", pb.clone())
        );
        let codes = [ra.status, rb.status];
        assert!(codes.contains(&StatusCode::CREATED), "{codes:?}");
        assert!(
            codes
                .iter()
                .all(|c| *c == StatusCode::CREATED || *c == StatusCode::CONFLICT),
            "{codes:?}"
        );
        let stored = h
            .storage(&prefix)
            .get(&format!("same-{version}.tgz"))
            .await
            .unwrap();
        assert!(stored == pa || stored == pb, "stored whole");
        a.server.refresh().await;
        b.server.refresh().await;
        let digest = chartroom::repository::sha256_hex(&stored);
        assert_eq!(a.digest("same", &version).await, digest, "round {round}");
        assert_eq!(b.digest("same", &version).await, digest, "round {round}");
    }
    assert_eq!(a.versions().await, b.versions().await);
}

async fn rejected_credentials_are_named(h: &S3Harness) {
    let mut wrong_secret = h.settings("");
    wrong_secret.secret_key = Secret::Value("not-the-secret".into());
    let s = S3Storage::new(wrong_secret).unwrap();
    let t = Instant::now();
    let e = s.check().await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("SignatureDoesNotMatch"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "403 is not retried");
    assert!(s.problem().unwrap().contains("403"));
    eprintln!("wrong secret: {e}");
    let mut wrong_key = h.settings("");
    wrong_key.access_key = "nobody".into();
    let e = S3Storage::new(wrong_key)
        .unwrap()
        .list("")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("InvalidAccessKeyId"), "{e}");
    // What start-up reports.
    let endpoint = h.endpoint();
    let args = config::parse_args(
        &[
            "--storage=amazon",
            "--storage-amazon-bucket=charts",
            &format!("--storage-amazon-endpoint={endpoint}"),
        ]
        .map(String::from),
    )
    .unwrap();
    let env = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some(s3_harness::ACCESS_KEY.to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("wrong".to_string()),
        _ => None,
    };
    let cfg = config::load(&args, &env, None).unwrap();
    let e = chartroom::daemon::build_registry(&cfg)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("403") && e.contains("SignatureDoesNotMatch"),
        "{e}"
    );
    // A bucket that does not exist.
    let mut missing = h.settings("");
    missing.bucket = "no-such-bucket".into();
    let e = S3Storage::new(missing).unwrap().check().await.unwrap_err();
    assert!(
        e.to_string().contains("bucket no-such-bucket not found"),
        "{e}"
    );
}

async fn rotated_secret_key_file_is_picked_up(h: &S3Harness) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "old-secret\n").unwrap();
    let mut settings = h.settings(&unique("rotate"));
    settings.secret_key = Secret::File(file.clone());
    let s = S3Storage::new(settings).unwrap();
    assert!(s.check().await.is_err());
    // The operator puts the new key in the file: the next rejected request re-reads it.
    std::fs::write(&file, format!("{}\n", s3_harness::SECRET_KEY)).unwrap();
    s.check().await.unwrap();
    s.put("a.tgz", Bytes::from_static(b"a")).await.unwrap();
    assert_eq!(s.problem(), None);
}

/// S3 stopped: the index already loaded is served, charts read before come from memory,
/// uploads fail with 503, /health says what is wrong; S3 back: everything works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_down_then_back() {
    if !s3_harness::available() {
        return;
    }
    let mut h = S3Harness::start().await;
    let a = Instance::new(&h, "down", &["--storage-amazon-retries=1"]).await;
    let pkg = chart("kept", "1.0.0");
    assert_eq!(
        a.server.post("/api/charts", pkg.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(a.server.get("/charts/kept-1.0.0.tgz").await.body, pkg);
    h.stop_server();

    let t = Instant::now();
    let r = a.server.post("/api/charts", chart("new", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let r = a.server.get("/health").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let health = r.json();
    assert_eq!(health["healthy"], false);
    assert!(
        health["error"].as_str().unwrap().contains("refused"),
        "{health}"
    );
    assert!(
        health["storage"].as_str().unwrap().starts_with("amazon:"),
        "{health}"
    );
    assert_eq!(a.versions().await, ["kept-1.0.0"], "stale index served");
    let r = a.server.get("/charts/kept-1.0.0.tgz").await;
    assert_eq!(r.status, StatusCode::OK, "read cache");
    assert_eq!(r.body, pkg);
    assert!(a.s3.stats().cache_reads >= 1);
    assert!(a.s3.problem().is_some());
    let e = a.s3.list("").await.unwrap_err();
    assert!(s3_harness::unavailable(&e), "{e}");

    h.start_server().await;
    eventually(Duration::from_secs(20), "S3 answers again", || async {
        a.s3.list("").await.is_ok()
    })
    .await;
    assert_eq!(a.server.get("/health").await.status, StatusCode::OK);
    assert_eq!(a.s3.problem(), None);
    let r = a.server.post("/api/charts", chart("new", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    a.server.refresh().await;
    assert_eq!(a.versions().await, ["kept-1.0.0", "new-1.0.0"]);
}

// ---------------------------------------------------------------------------------------------
// The binary: SIGHUP re-reads the configuration and the secret key file.
// ---------------------------------------------------------------------------------------------

struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(path: &std::path::Path, h: &S3Harness, prefix: &str, secret: &std::path::Path) {
    let text = format!(
        "storage:\n  backend: amazon\n  amazon:\n    bucket: {}\n    prefix: {prefix}\n    \
         endpoint: {}\n    secretkeyfile: {}\ncacheinterval: 0s\n",
        s3_harness::BUCKET,
        h.endpoint(),
        secret.display()
    );
    std::fs::write(path, text).unwrap();
}

async fn index_of(port: u16) -> Option<String> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/index.yaml"))
        .await
        .ok()?;
    r.text().await.ok()
}

async fn sighup_reloads_s3_settings(h: &S3Harness) {
    let (pa, pb) = (unique("reload-a"), unique("reload-b"));
    h.storage(&pa)
        .put("one-1.0.0.tgz", Bytes::from(chart("one", "1.0.0")))
        .await
        .unwrap();
    h.storage(&pb)
        .put("two-1.0.0.tgz", Bytes::from(chart("two", "1.0.0")))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cfg, secret, log) = (
        dir.path().join("chartroom.yaml"),
        dir.path().join("secret"),
        dir.path().join("log"),
    );
    std::fs::write(&secret, s3_harness::SECRET_KEY).unwrap();
    write_config(&cfg, h, &pa, &secret);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_chartroom"))
        .arg("--config")
        .arg(&cfg)
        .env_clear()
        .env("PORT", port.to_string())
        .env("AWS_ACCESS_KEY_ID", s3_harness::ACCESS_KEY)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let p = Proc(child);
    let pid = p.0.id() as i32;
    let hup = || unsafe {
        libc::kill(pid, libc::SIGHUP);
    };
    let has = |needle: &'static str| async move {
        index_of(port).await.is_some_and(|t| t.contains(needle))
    };
    eventually(Duration::from_secs(20), "serves prefix A", || {
        has("one-1.0.0.tgz")
    })
    .await;

    write_config(&cfg, h, &pb, &secret);
    hup();
    eventually(
        Duration::from_secs(20),
        "serves prefix B after SIGHUP",
        || has("two-1.0.0.tgz"),
    )
    .await;
    assert!(!has("one-1.0.0.tgz").await);

    // A wrong secret in the file: the reload fails and the running settings stay.
    std::fs::write(&secret, "wrong").unwrap();
    write_config(&cfg, h, &pa, &secret);
    hup();
    eventually(Duration::from_secs(20), "the reload fails", || async {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("reload failed"))
    })
    .await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("SignatureDoesNotMatch"), "{logged}");
    assert!(has("two-1.0.0.tgz").await, "previous settings kept");

    // The key fixed: the next reload takes the new settings.
    std::fs::write(&secret, s3_harness::SECRET_KEY).unwrap();
    hup();
    eventually(Duration::from_secs(20), "serves prefix A again", || {
        has("one-1.0.0.tgz")
    })
    .await;
}
