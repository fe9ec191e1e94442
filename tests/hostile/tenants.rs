//! Hostile input: tenants (issue 13, item 2 and the tenant part of item 8) and the state file
//! (item 9).
//!
//! - Tenant names are checked at routing: 400 with a JSON error, before storage is touched.
//! - A tenant that does not exist reads as an empty repository and is not kept in memory; one
//!   whose load fails fails that request only and never `/health`.
//! - The number of tenants held is bounded (`maxtenants`), and 10,000 random names cost no
//!   more memory than 1,000 (measured on the binary).
//! - A refresh never drops an empty tenant while an upload into it is in flight.
//! - A wrong but valid state file is not trusted: entries are checked and the body has a
//!   checksum.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chartroom::repository::{Registry, STATE_FILE, STATE_FORMAT, sha256_hex};
use chartroom::storage::{LocalStorage, Storage};
use http::StatusCode;

use crate::common::{Server, chart};

fn random_name() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

fn tenants(s: &Server) -> usize {
    s.app.registry.load().tenant_count()
}

// ---------------------------------------------------------------------------------------------
// Names refused at routing, and names of files.

#[tokio::test]
async fn bad_tenant_names_get_400_naming_the_problem() {
    let s = Server::new(&["--depth-dynamic"]).await;
    let long = "a".repeat(256);
    let deep = vec!["b".repeat(200); 6].join("/");
    for (path, needle) in [
        (format!("/{long}/index.yaml"), "255"),
        (format!("/api/{long}/charts"), "255"),
        (format!("/{deep}/index.yaml"), "1024"),
        ("/.hidden/index.yaml".to_string(), "'.'"),
        ("/%2Etmp/index.yaml".to_string(), "'.'"),
        (
            "/api/org/..%2F/charts".to_string(),
            "invalid repository name",
        ),
        ("/a-1.0.0.tgz/index.yaml".to_string(), ".tgz"),
        ("/api/x.tgz.prov/charts".to_string(), ".prov"),
        ("/a%0Ab/index.yaml".to_string(), "control"),
    ] {
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(needle), "{path}: {msg}");
        assert!(msg.len() < 300, "{path}: error message not bounded: {msg}");
    }
    let r = s
        .post(&format!("/api/{long}/charts"), chart("c", "1.0.0"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(tenants(&s), 1, "only the root is held");
    // 255 bytes is fine, and does not exist: an empty index.
    let ok = "a".repeat(255);
    assert_eq!(
        s.get(&format!("/{ok}/index.yaml")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn tenant_naming_a_file_in_its_parent_gets_400_and_is_not_kept() {
    let s = Server::new(&["--depth-dynamic"]).await;
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    s.app.registry.load().save_states().await;
    std::fs::write(s.root.join("notes"), b"a file, not a repository").unwrap();
    for path in [
        "/notes/index.yaml",
        "/api/notes/charts",
        "/notes/deeper/index.yaml",
        "/chartroom-state.json/index.yaml",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains("is a file in storage"), "{path}: {msg}");
    }
    let r = s.post("/api/notes/charts", chart("b", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Nothing of it is kept, and the service as a whole is healthy.
    assert_eq!(tenants(&s), 1);
    s.app.registry.load().refresh_all().await.unwrap();
    assert_eq!(s.get("/health").await.status, StatusCode::OK);
    assert_eq!(s.index_versions("/index.yaml").await, ["a-1.0.0"]);
}

// ---------------------------------------------------------------------------------------------
// Tenants that do not exist.

#[tokio::test]
async fn missing_tenant_reads_as_chartmuseum_and_is_not_kept() {
    let s = Server::new(&["--depth", "1"]).await;
    let r = s.get("/nope/index.yaml").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.yaml();
    assert_eq!(v["apiVersion"], "v1");
    assert!(v["entries"].as_object().is_none_or(|e| e.is_empty()));
    let r = s.get("/api/nope/charts").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({}));
    assert_eq!(
        s.get("/api/nope/charts/x").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/nope/charts/x/1.0.0").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/nope/charts/x-1.0.0.tgz").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(tenants(&s), 0, "a tenant that does not exist is not kept");
    // A real tenant is kept, and found again as soon as it gets a chart.
    assert_eq!(
        s.post("/api/real/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(tenants(&s), 1);
    assert_eq!(s.index_versions("/real/index.yaml").await, ["a-1.0.0"]);
    // Once emptied, a refresh forgets it.
    assert_eq!(
        s.delete("/api/real/charts/a/1.0.0").await.status,
        StatusCode::OK
    );
    s.refresh().await;
    assert_eq!(tenants(&s), 0);
    assert!(s.index_versions("/real/index.yaml").await.is_empty());
}

/// 10,000 random tenant names (anonymous GETs) leave nothing held in memory.
#[tokio::test]
async fn ten_thousand_random_tenants_are_not_held() {
    let s = Server::new(&["--depth-dynamic"]).await;
    for i in 0..10_000 {
        let path = if i % 2 == 0 {
            format!("/{}/index.yaml", random_name())
        } else {
            format!("/api/{}/{}/charts", random_name(), random_name())
        };
        let r = s.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(tenants(&s) <= 1, "{} tenants held after {i}", tenants(&s));
    }
}

/// With `maxtenants`, tenants that hold charts are bounded too: the least recently used goes
/// and is read again (from its state file) when asked for.
#[tokio::test]
async fn tenants_with_charts_are_bounded_by_maxtenants() {
    let s = Server::new(&["--depth", "1", "--max-tenants", "20"]).await;
    let names: Vec<String> = (0..60).map(|i| format!("org{i}")).collect();
    for n in &names {
        let r = s.post(&format!("/api/{n}/charts"), chart(n, "1.0.0")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{n}: {}", r.text());
        assert!(tenants(&s) <= 20, "{} tenants held", tenants(&s));
    }
    s.app.registry.load().save_states().await;
    for n in names.iter().rev() {
        assert_eq!(
            s.index_versions(&format!("/{n}/index.yaml")).await,
            [format!("{n}-1.0.0")]
        );
        assert!(tenants(&s) <= 20, "{} tenants held", tenants(&s));
    }
    // Random names on top change nothing.
    for _ in 0..500 {
        s.get(&format!("/{}/index.yaml", random_name())).await;
    }
    assert!(tenants(&s) <= 20);
    assert_eq!(s.index_versions("/org59/index.yaml").await, ["org59-1.0.0"]);
}

// ---------------------------------------------------------------------------------------------
// A failing tenant fails its own requests only.

#[tokio::test]
async fn failing_tenant_never_becomes_health() {
    let s = Server::new(&["--depth", "1"]).await;
    assert_eq!(
        s.post("/api/good/charts", chart("g", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/gone/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    // The tenant's directory becomes a file: its refresh fails from now on.
    std::fs::remove_dir_all(s.root.join("gone")).unwrap();
    std::fs::write(s.root.join("gone"), b"x").unwrap();
    for _ in 0..3 {
        s.app
            .registry
            .load()
            .refresh_all()
            .await
            .expect("a tenant's failure is not the service's");
    }
    let r = s.get("/health").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // The last good index of the failing tenant is still served; the others are untouched.
    assert_eq!(s.index_versions("/gone/index.yaml").await, ["a-1.0.0"]);
    assert_eq!(s.index_versions("/good/index.yaml").await, ["g-1.0.0"]);
}

// ---------------------------------------------------------------------------------------------
// Item 8, last sentence: a refresh must not drop an empty tenant while an upload into it is in
// flight.

#[tokio::test]
async fn refresh_keeps_a_tenant_held_by_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
    let settings = chartroom::repository::RepoSettings {
        statefiles: true,
        ..Default::default()
    };
    let reg = Registry::new(storage.clone(), settings);

    // Without a hold an empty tenant is not kept.
    let plain = reg.repo("plain").await.unwrap();
    assert!(plain.is_empty());
    assert_eq!(reg.tenant_count(), 0);

    // An upload holds it from lookup to record: refreshes in between keep it.
    let held = reg.repo_in_use("new").await.unwrap();
    assert_eq!(reg.tenant_count(), 1);
    for _ in 0..3 {
        reg.refresh_all().await.unwrap();
    }
    assert_eq!(
        reg.tenant_count(),
        1,
        "refresh dropped a tenant being uploaded into"
    );
    // A reader meanwhile sees the same repository, not a fresh one.
    let reader = reg.repo("new").await.unwrap();
    assert!(Arc::ptr_eq(&reader, &held));
    // The upload completes: stored, then recorded in the held repository.
    let data = chart("c", "1.0.0");
    let meta = chartroom::chart::read_metadata(&data).unwrap();
    let stored = storage
        .put(&held.path(&meta.file_name()), data.clone().into())
        .await
        .unwrap();
    held.record_upload(&meta, &sha256_hex(&data), &stored);
    drop(held);
    // Later requests see it without waiting for a refresh.
    let later = reg.repo("new").await.unwrap();
    assert!(later.index().lookup("c", "1.0.0").is_ok());
    reg.refresh_all().await.unwrap();
    assert_eq!(reg.tenant_count(), 1, "a tenant with a chart stays");
}

/// The same through HTTP, with refreshes and readers racing uploads into fresh tenants: every
/// upload's chart is in its tenant's index as soon as the upload has answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_into_fresh_tenants_survive_racing_refreshes() {
    let s = Arc::new(Server::new(&["--depth", "1"]).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refresher = {
        let s = s.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.app.registry.load().refresh_all().await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..150 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let t = format!("fresh{i}");
            let reader = {
                let s = s.clone();
                let t = t.clone();
                tokio::spawn(async move { s.get(&format!("/{t}/index.yaml")).await.status })
            };
            let r = s
                .post(&format!("/api/{t}/charts"), chart("c", "1.0.0"))
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{t}: {}", r.text());
            assert_eq!(reader.await.unwrap(), StatusCode::OK);
            let got = s.index_versions(&format!("/{t}/index.yaml")).await;
            assert_eq!(
                got,
                ["c-1.0.0"],
                "{t}: upload answered 201 but the index misses it"
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    refresher.await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Item 9: the state file.

/// Charts a-1.0.0 and b-2.0.0 in a root repository, with the state file written.
async fn repo_with_state(root: &Path) {
    let s = Server::on(root, &[]).await;
    for (n, v) in [("a", "1.0.0"), ("b", "2.0.0")] {
        assert_eq!(
            s.post("/api/charts", chart(n, v)).await.status,
            StatusCode::CREATED
        );
    }
    s.app.registry.load().save_states().await;
    assert!(root.join(STATE_FILE).exists());
}

/// The objects of the state file (checked to be in the current format).
fn read_objects(root: &Path) -> serde_json::Map<String, serde_json::Value> {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(STATE_FILE)).unwrap()).unwrap();
    assert_eq!(doc["format"], STATE_FORMAT);
    doc["objects"].as_object().unwrap().clone()
}

/// Writes objects back as a state file with a valid checksum: what someone who knows the format
/// (or a bug) could leave behind.
fn write_objects(root: &Path, objects: &serde_json::Map<String, serde_json::Value>) {
    let body = serde_json::to_string(objects).unwrap();
    let doc = format!(
        "{{\"format\":\"{STATE_FORMAT}\",\"sha256\":\"{}\",\"objects\":{body}}}",
        sha256_hex(body.as_bytes())
    );
    std::fs::write(root.join(STATE_FILE), doc).unwrap();
}

/// Restarts twice (writing the state file after each), checking the index each time.
async fn restarts_show_storage(root: &Path) {
    for _ in 0..2 {
        let s = Server::on(root, &[]).await;
        let mut got = s.index_versions("/index.yaml").await;
        got.sort();
        assert_eq!(got, ["a-1.0.0", "b-2.0.0"]);
        let r = s.get("/api/charts/a/1.0.0").await;
        assert_eq!(r.status, StatusCode::OK);
        let digest = sha256_hex(&std::fs::read(root.join("a-1.0.0.tgz")).unwrap());
        assert_eq!(r.json()["digest"], digest.as_str());
        assert_eq!(r.json()["name"], "a");
        s.app.registry.load().save_states().await;
    }
}

#[tokio::test]
async fn state_file_edited_version_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    repo_with_state(dir.path()).await;
    let mut objects = read_objects(dir.path());
    objects["a-1.0.0.tgz"]["entry"]["version"] = "9.9.9".into();
    write_objects(dir.path(), &objects);
    restarts_show_storage(dir.path()).await;
}

#[tokio::test]
async fn state_file_null_entry_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    repo_with_state(dir.path()).await;
    let mut objects = read_objects(dir.path());
    objects["a-1.0.0.tgz"]["entry"] = serde_json::Value::Null;
    write_objects(dir.path(), &objects);
    restarts_show_storage(dir.path()).await;
    // And a re-upload is the ordinary conflict of an existing chart, which the index shows.
    let s = Server::on(dir.path(), &[]).await;
    assert_eq!(
        s.post("/api/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn state_file_entry_under_another_files_name_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    repo_with_state(dir.path()).await;
    let mut objects = read_objects(dir.path());
    let b_entry = objects["b-2.0.0.tgz"]["entry"].clone();
    objects["a-1.0.0.tgz"]["entry"] = b_entry;
    write_objects(dir.path(), &objects);
    restarts_show_storage(dir.path()).await;
}

#[tokio::test]
async fn state_file_with_bad_checksum_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    repo_with_state(dir.path()).await;
    let path = dir.path().join(STATE_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let digest = sha256_hex(&std::fs::read(dir.path().join("a-1.0.0.tgz")).unwrap());
    assert!(text.contains(&digest));
    // Same length, still valid JSON, another digest: only the checksum tells.
    let forged = "f".repeat(digest.len());
    std::fs::write(&path, text.replace(&digest, &forged)).unwrap();
    restarts_show_storage(dir.path()).await;
}

/// A state file of the previous format (no checksum) with wrong contents is ignored whole.
#[tokio::test]
async fn state_file_of_the_old_format_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    repo_with_state(dir.path()).await;
    let mut objects = read_objects(dir.path());
    objects["a-1.0.0.tgz"]["entry"]["version"] = "9.9.9".into();
    objects["b-2.0.0.tgz"]["entry"] = serde_json::Value::Null;
    let doc = serde_json::json!({"format": "chartroom-state/1", "objects": objects});
    std::fs::write(dir.path().join(STATE_FILE), doc.to_string()).unwrap();
    restarts_show_storage(dir.path()).await;
}

// ---------------------------------------------------------------------------------------------
// The binary: /health, the log and memory with hostile tenants.

/// The binary under test; `CHARTROOM_HOSTILE_BIN` points these tests at another build (to see
/// them fail on an older one).
fn bin() -> String {
    std::env::var("CHARTROOM_HOSTILE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_chartroom").to_string())
}

/// A started chartroom process, killed (by its PID) when dropped.
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

impl Proc {
    fn start(root: &Path, extra: &[&str], log: Option<&Path>) -> Proc {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(bin());
        cmd.args([
            "--storage",
            "local",
            "--storage-local-rootdir",
            &root.display().to_string(),
            "--listen-host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .args(extra)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null());
        match log {
            Some(p) => cmd.stderr(std::fs::File::create(p).unwrap()),
            None => cmd.stderr(Stdio::null()),
        };
        let p = Proc {
            child: cmd.spawn().unwrap(),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return p;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("chartroom did not start listening on {port}");
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

/// HTTP/1.1 exchanges on one connection kept open.
struct Client {
    s: TcpStream,
}

impl Client {
    fn new(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Client { s }
    }

    /// One request: (status, body).
    fn req(&mut self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.s.write_all(head.as_bytes()).unwrap();
        self.s.write_all(body).unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            self.s.read_exact(&mut byte).unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        self.s.read_exact(&mut body).unwrap();
        (status, body)
    }
}

/// With a refresh every second, a tenant naming a file and a tenant whose directory turned into
/// a file neither make `/health` fail nor fill the log.
#[test]
fn binary_failing_tenants_keep_health_and_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("notes"), b"x").unwrap();
    let log = dir.path().join("log");
    let p = Proc::start(
        &root,
        &["--depth-dynamic", "--cache-interval", "1s"],
        Some(&log),
    );
    let mut c = Client::new(p.port);
    let (st, _) = c.req("POST", "/api/gone/charts", &chart("a", "1.0.0"));
    assert_eq!(st, 201);
    std::fs::remove_dir_all(root.join("gone")).unwrap();
    std::fs::write(root.join("gone"), b"x").unwrap();
    let long = "n".repeat(256);
    for path in [
        "/notes/index.yaml".to_string(),
        format!("/{long}/index.yaml"),
        "/api/notes/x/charts".to_string(),
    ] {
        let (st, _) = c.req("GET", &path, b"");
        assert_eq!(st, 400, "{path}");
    }
    // Several refresh intervals.
    std::thread::sleep(Duration::from_millis(3500));
    let (st, body) = c.req("GET", "/health", b"");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let (st, body) = c.req("GET", "/gone/index.yaml", b"");
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("a-1.0.0.tgz"));
    drop(p);
    let text = std::fs::read_to_string(&log).unwrap();
    let refresh_failures = text
        .lines()
        .filter(|l| l.contains("refresh failed"))
        .count();
    assert_eq!(
        refresh_failures, 1,
        "logged once, not every interval:\n{text}"
    );
    for l in text.lines() {
        assert!(l.len() < 2048, "log line of {} bytes: {l}", l.len());
    }
    assert!(
        !text
            .lines()
            .any(|l| l.contains("notes") && !l.contains("request")),
        "a refused tenant is logged only as its request:\n{text}"
    );
}

/// RSS after 10,000 random tenant names is within a few MiB of RSS after 1,000 (issue 13,
/// item 2). Before the fix, each one cost about 600 bytes for good.
#[test]
fn binary_random_tenants_do_not_grow_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start(dir.path(), &["--depth-dynamic"], None);
    let mut c = Client::new(p.port);
    let mut hit = |n: usize| {
        for i in 0..n {
            let path = if i % 2 == 0 {
                format!("/{}/index.yaml", random_name())
            } else {
                format!("/api/{}/charts", random_name())
            };
            let (st, _) = c.req("GET", &path, b"");
            assert_eq!(st, 200, "{path}");
        }
    };
    hit(1_000);
    std::thread::sleep(Duration::from_millis(300));
    let after_1k = p.rss_kib();
    hit(9_000);
    std::thread::sleep(Duration::from_millis(300));
    let after_10k = p.rss_kib();
    eprintln!("VmRSS after 1,000 random tenants: {after_1k} KiB; after 10,000: {after_10k} KiB");
    assert!(
        after_10k <= after_1k + 3 * 1024,
        "RSS grew from {after_1k} KiB to {after_10k} KiB"
    );
}
