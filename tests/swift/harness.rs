//! A real one-node Swift for Rust tests, started with `tests/swift/swift-harness.sh` in a
//! temporary directory and stopped (by recorded PIDs) when dropped. Include it with
//! `#[path = "swift/harness.rs"] mod swift_harness;`.
//!
//! Swift must be installed (`sudo tests/swift/swift-harness.sh install`). Without it the tests
//! that need it fail, unless `CHARTROOM_SKIP_SWIFT=1`, which makes them return early (saying
//! so). Ports: from `CHARTROOM_SWIFT_PORT` (default 18700) upwards, five per instance, the
//! first free block is taken.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use chartroom::storage::swift::{AuthConfig, Secret, SwiftSettings, SwiftStorage, auth};

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

fn harness_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/swift/swift-harness.sh")
}

/// Whether the Swift tests should run; panics with instructions when Swift is missing.
pub fn available() -> bool {
    if std::env::var("CHARTROOM_SKIP_SWIFT").is_ok_and(|v| v == "1") {
        eprintln!("CHARTROOM_SKIP_SWIFT=1: skipping a test that needs a real Swift");
        return false;
    }
    let installed = Command::new("dpkg-query")
        .args(["-W", "-f=${db:Status-Status}", "swift-proxy"])
        .output()
        .is_ok_and(|o| o.stdout == b"installed");
    assert!(
        installed,
        "Swift is not installed: run `sudo tests/swift/swift-harness.sh install` \
         (or set CHARTROOM_SKIP_SWIFT=1 to skip the Swift tests)"
    );
    true
}

fn port_free(p: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
}

fn pick_ports() -> u16 {
    let base: u16 = std::env::var("CHARTROOM_SWIFT_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(18700);
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 60, "no free block of 5 ports from {base}");
        let p = base + n * 5;
        if (p..p + 5).all(port_free) {
            return p;
        }
    }
}

fn become_subreaper() {
    // Orphaned Swift servers (the harness script exits after `start`) are re-parented to this
    // process, which can then reap the supervisor after `stop`.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

pub struct SwiftHarness {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub env: HashMap<String, String>,
    pub start_time: Duration,
    stopped: bool,
}

impl SwiftHarness {
    /// Starts a Swift whose tempauth tokens live `token_life` seconds.
    pub fn start(token_life: u64) -> SwiftHarness {
        become_subreaper();
        let dir = tempfile::Builder::new()
            .prefix("chartroom-swift-")
            .tempdir_in("/tmp")
            .unwrap();
        let port = pick_ports();
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(harness_script())
            .arg("start")
            .arg(dir.path())
            .arg(port.to_string())
            .env("SWIFT_TOKEN_LIFE", token_life.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run swift-harness.sh");
        assert!(
            out.status.success(),
            "swift-harness.sh start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut env = HashMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                env.insert(k.to_string(), v.to_string());
            }
        }
        SwiftHarness {
            dir,
            port,
            env,
            start_time: t0.elapsed(),
            stopped: false,
        }
    }

    pub fn var(&self, k: &str) -> String {
        self.env.get(k).cloned().unwrap_or_default()
    }

    /// v1 auth settings for container `charts` with the given object prefix.
    pub fn settings(&self, prefix: &str) -> SwiftSettings {
        let auth = AuthConfig::V1(auth::V1Config {
            url: self.var("ST_AUTH"),
            user: self.var("ST_USER"),
            key: Secret::Value(self.var("ST_KEY")),
        });
        let mut s = SwiftSettings::new(&self.var("SWIFT_CONTAINER"), auth);
        s.prefix = prefix.to_string();
        s
    }

    pub fn storage(&self, prefix: &str) -> SwiftStorage {
        SwiftStorage::new(self.settings(prefix)).unwrap()
    }

    /// The environment a chartroom process needs (ST_AUTH, ST_USER, ST_KEY).
    pub fn v1_env(&self) -> Vec<(String, String)> {
        ["ST_AUTH", "ST_USER", "ST_KEY"]
            .iter()
            .map(|k| (k.to_string(), self.var(k)))
            .collect()
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(harness_script())
            .arg(args[0])
            .arg(self.dir.path())
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .expect("run swift-harness.sh");
        assert!(
            out.status.success(),
            "swift-harness.sh {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops one server (proxy, object, container, account, memcached).
    pub fn stop_server(&self, name: &str) {
        self.run(&["stop-server", name]);
    }

    pub fn start_server(&self, name: &str) {
        self.run(&["start-server", name]);
    }

    /// Sends SIGSTOP or SIGCONT to a server: it keeps its port but stops answering.
    pub fn signal_server(&self, name: &str, sig: i32) {
        let pid: i32 = std::fs::read_to_string(self.dir.path().join(format!("run/{name}.pid")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        unsafe {
            libc::kill(pid, sig);
        }
    }

    /// Requests the proxy logged (its access log lines), for counting what a client sent.
    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/proxy.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let sup: Option<i32> = std::fs::read_to_string(self.dir.path().join("run/supervisor.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let _ = Command::new("bash")
            .arg(harness_script())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(pid) = sup {
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                if r == pid || r < 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for SwiftHarness {
    fn drop(&mut self) {
        self.stop();
    }
}
