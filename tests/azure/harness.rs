//! A real Azure Blob emulator for Rust tests: Azurite (`azurite-blob`, npm `azurite` 3.35.0)
//! in a temporary directory, on loopback only, with the well-known development account and one
//! container; stopped by PID when dropped. Include it with
//! `#[path = "azure/harness.rs"] mod azure_harness;`.
//!
//! `azurite-blob` must be on PATH (`scripts/install-test-deps` installs it). Without it the
//! tests that need it fail, unless `CHARTROOM_SKIP_AZURE=1` (and not under `CI=true`), which
//! makes them return early, saying so. Ports: from `CHARTROOM_AZURE_PORT` (default 19700)
//! upwards, the first free one.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use chartroom::storage::Secret;
use chartroom::storage::azure::{AzureSettings, AzureStorage, Credential};
use chartroom::storage::{Storage, StorageError};

pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
pub const CONTAINER: &str = "charts";

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Whether the Azure tests should run; panics with instructions when Azurite is missing.
pub fn available() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ci && std::env::var("CHARTROOM_SKIP_AZURE").is_ok_and(|v| v == "1") {
        eprintln!("CHARTROOM_SKIP_AZURE=1: skipping a test that needs Azurite");
        return false;
    }
    let found = Command::new("azurite-blob")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "Azurite (`azurite-blob`) is not on PATH: run scripts/install-test-deps or \
         `npm install -g azurite@3.35.0` (or set CHARTROOM_SKIP_AZURE=1 to skip the Azure \
         tests outside CI)"
    );
    true
}

fn pick_port() -> u16 {
    let base: u16 = std::env::var("CHARTROOM_AZURE_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19700);
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 200, "no free port from {base}");
        let p = base + n;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub struct AzureHarness {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub start_time: Duration,
    child: Option<Child>,
}

impl AzureHarness {
    /// Starts Azurite, creates the container, and waits until it can be listed.
    pub async fn start() -> AzureHarness {
        let dir = tempfile::Builder::new()
            .prefix("chartroom-azurite-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let mut h = AzureHarness {
            dir,
            port: pick_port(),
            start_time: Duration::ZERO,
            child: None,
        };
        let t0 = Instant::now();
        h.start_server().await;
        h.start_time = t0.elapsed();
        h
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts Azurite (again, after [`AzureHarness::stop_server`]: same data, same port) and
    /// makes sure the container exists.
    pub async fn start_server(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("azurite.log"))
            .unwrap();
        let child = Command::new("azurite-blob")
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &self.port.to_string(),
                "--location",
                &self.path("data").display().to_string(),
                "--silent",
                "--disableTelemetry",
                "--skipApiVersionCheck",
            ])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start azurite-blob");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.create_container().await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!("Azurite not ready in 60 s: {e}\n{}", self.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("azurite-blob exited ({st}):\n{}", self.log());
                }
            }
        }
        self.storage("").check().await.unwrap();
    }

    /// Create Container, signed with the dev key (201, or 409 when it exists).
    async fn create_container(&self) -> Result<(), String> {
        create_container(&self.endpoint(), CONTAINER).await
    }

    /// Stops the server (SIGTERM, then SIGKILL after 10 s) and waits for it to exit.
    pub fn stop_server(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The account's blob URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    pub fn settings(&self, prefix: &str) -> AzureSettings {
        let mut s = AzureSettings::new(
            ACCOUNT,
            CONTAINER,
            Credential::SharedKey(Secret::Value(KEY.into())),
        );
        s.endpoint = self.endpoint();
        s.prefix = prefix.to_string();
        s
    }

    pub fn storage(&self, prefix: &str) -> AzureStorage {
        AzureStorage::new(self.settings(prefix)).unwrap()
    }

    /// The environment a chartroom configuration needs.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT".into(), ACCOUNT.into()),
            ("AZURE_STORAGE_ACCESS_KEY".into(), KEY.into()),
        ]
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.path("azurite.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_string()
    }
}

impl Drop for AzureHarness {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// Creates a container with a Shared Key request of its own (the backend never creates one).
pub async fn create_container(endpoint: &str, container: &str) -> Result<(), String> {
    use chartroom::storage::azure::sharedkey;
    let path = format!("/{ACCOUNT}/{container}");
    let headers = vec![
        (
            "x-ms-date".to_string(),
            sharedkey::http_date(chartroom::timefmt::now_ns()),
        ),
        (
            "x-ms-version".to_string(),
            chartroom::storage::azure::API_VERSION.to_string(),
        ),
    ];
    let key = sharedkey::decode_key(KEY).unwrap();
    let auth = sharedkey::authorization(
        &sharedkey::Request {
            method: "PUT",
            account: ACCOUNT,
            path: &path,
            query: &[("restype", "container")],
            headers: &headers,
        },
        &key,
    );
    let base = endpoint.trim_end_matches(&format!("/{ACCOUNT}")[..]);
    let mut rb = reqwest::Client::new()
        .put(format!("{base}{path}?restype=container"))
        .header("Authorization", auth)
        .header("Content-Length", "0");
    for (k, v) in &headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = rb.send().await.map_err(|e| e.to_string())?;
    match resp.status().as_u16() {
        201 | 409 => Ok(()),
        s => Err(format!("{s}: {}", resp.text().await.unwrap_or_default())),
    }
}

/// True when `e` says the storage could not be reached or refused us.
pub fn unavailable(e: &StorageError) -> bool {
    matches!(e, StorageError::Unavailable(_))
}
