//! A real etcd for Rust tests: Debian's `etcd` (package `etcd-server`) with its data in a
//! temporary directory, client and peer URLs on loopback only; stopped by PID when dropped.
//! Include it with `#[path = "etcd/harness.rs"] mod etcd_harness;`.
//!
//! `etcd` must be on PATH (`scripts/install-test-deps` installs it). Without it the tests that
//! need it fail, unless `CHARTROOM_SKIP_ETCD=1` (and not under `CI=true`), which makes them
//! return early, saying so. Ports: from `CHARTROOM_ETCD_PORT` (default 19900) upwards, the
//! first free ones (client, peer).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use chartroom::storage::Storage;
use chartroom::storage::etcd::{EtcdSettings, EtcdStorage};

/// The request limit the harness's etcd is started with: the contract suite stores a 3 MB
/// object (etcd's default, 1.5 MiB, is tested in tests/etcd_backend.rs).
pub const MAX_REQUEST_BYTES: u64 = 8 << 20;

static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Whether the etcd tests should run; panics with instructions when etcd is missing.
pub fn available() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if !ci && std::env::var("CHARTROOM_SKIP_ETCD").is_ok_and(|v| v == "1") {
        eprintln!("CHARTROOM_SKIP_ETCD=1: skipping a test that needs etcd");
        return false;
    }
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "etcd is not on PATH: run scripts/install-test-deps or `apt-get install etcd-server` \
         (or set CHARTROOM_SKIP_ETCD=1 to skip the etcd tests outside CI)"
    );
    true
}

pub fn pick_port() -> u16 {
    let base: u16 = std::env::var("CHARTROOM_ETCD_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(19900);
    loop {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(n < 300, "no free port from {base}");
        let p = base + n;
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// TLS files for a server started with [`EtcdHarness::start_tls`].
#[derive(Clone, Debug)]
pub struct Tls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

pub struct EtcdHarness {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub peer_port: u16,
    pub tls: Option<Tls>,
    pub start_time: Duration,
    child: Option<Child>,
}

impl EtcdHarness {
    pub async fn start() -> EtcdHarness {
        Self::start_with(None).await
    }

    /// Starts etcd with its client URL on https, requiring client certificates signed by
    /// `tls.ca`.
    pub async fn start_tls(tls: Tls) -> EtcdHarness {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<Tls>) -> EtcdHarness {
        let dir = tempfile::Builder::new()
            .prefix("chartroom-etcd-")
            .tempdir_in("/tmp")
            .unwrap();
        let mut h = EtcdHarness {
            dir,
            port: pick_port(),
            peer_port: pick_port(),
            tls,
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

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Starts etcd (again, after [`EtcdHarness::stop_server`]: same data, same ports) and
    /// waits until it answers.
    pub async fn start_server(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("etcd.log"))
            .unwrap();
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut cmd = Command::new("etcd");
        cmd.args([
            "--name",
            "chartroom-test",
            "--data-dir",
            &self.path("data").display().to_string(),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("chartroom-test={peer}"),
            "--max-request-bytes",
            &MAX_REQUEST_BYTES.to_string(),
            "--log-level",
            "warn",
            "--logger",
            "zap",
        ]);
        if let Some(t) = &self.tls {
            cmd.arg(format!("--cert-file={}", t.server_cert.display()))
                .arg(format!("--key-file={}", t.server_key.display()))
                .arg(format!("--trusted-ca-file={}", t.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let st = self.storage("");
        loop {
            match st.check().await {
                Ok(()) => break,
                Err(e) if Instant::now() > deadline => {
                    panic!("etcd not ready in 60 s: {e}\n{}", self.log())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("etcd exited ({st}):\n{}", self.log());
                }
            }
        }
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Sends a signal (SIGSTOP, SIGCONT) to the server.
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Stops the server (SIGCONT, SIGTERM, then SIGKILL after 10 s) and waits for it.
    pub fn stop_server(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        unsafe {
            libc::kill(pid, libc::SIGCONT);
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

    pub fn settings(&self, prefix: &str) -> EtcdSettings {
        let mut s = EtcdSettings::new(&[&self.endpoint()]);
        s.prefix = prefix.to_string();
        s.max_request_bytes = MAX_REQUEST_BYTES;
        s.connect_timeout = Duration::from_secs(2);
        if let Some(t) = &self.tls {
            s.cafile = t.ca.display().to_string();
            s.certfile = t.client_cert.display().to_string();
            s.keyfile = t.client_key.display().to_string();
        }
        s
    }

    pub fn storage(&self, prefix: &str) -> EtcdStorage {
        EtcdStorage::new(self.settings(prefix)).unwrap()
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.path("etcd.log")).unwrap_or_default();
        let start = text.len().saturating_sub(4000);
        text.get(start..).unwrap_or(&text).to_string()
    }
}

impl Drop for EtcdHarness {
    fn drop(&mut self) {
        self.stop_server();
    }
}

/// A throw-away CA with a server certificate for 127.0.0.1 and a client certificate, made
/// with `openssl` in `dir`.
pub fn make_tls(dir: &std::path::Path) -> Tls {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=chartroom test CA",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "2",
            "-extfile",
            &format!("{who}.ext"),
        ]);
    }
    Tls {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}
