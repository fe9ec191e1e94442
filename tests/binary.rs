//! The chartroom binary end to end: flags, config files, start-up errors, the cache interval
//! and signals.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chartroom");

/// A started chartroom process, killed (by PID) when dropped.
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Proc {
    // Tests run in parallel: a port found free may be taken by another test's server before
    // ours binds it (ours then exits, and the probe reaches the other one). So the server
    // must still be running once its port answers; else try another port.
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut p = Proc { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if p.child.try_wait().unwrap().is_some() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
                if p.child.try_wait().unwrap().is_none() {
                    return p;
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("chartroom did not start listening");
}

/// A minimal HTTP/1.1 client: (status, body).
fn http(port: u16, method: &str, path: &str, body: &[u8], auth: Option<&str>) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out[split + 4..].to_vec())
}

fn index_has(port: u16, path: &str, needle: &str) -> bool {
    let (status, body) = http(port, "GET", path, b"", None);
    status == 200 && String::from_utf8_lossy(&body).contains(needle)
}

#[test]
fn chartmuseum_flags_and_cache_interval() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let p = start(
        &[
            "--storage",
            "local",
            "--storage-local-rootdir",
            &root,
            "--depth",
            "1",
            "--cache-interval",
            "1s",
        ],
        &[],
    );
    let (status, _) = http(
        p.port,
        "POST",
        "/api/team/charts",
        &common::chart("a", "1.0.0"),
        None,
    );
    assert_eq!(status, 201);
    assert!(index_has(p.port, "/team/index.yaml", "a-1.0.0.tgz"));
    // Out-of-band add and remove show up within the cache interval.
    std::fs::write(
        dir.path().join("team/b-2.0.0.tgz"),
        common::chart("b", "2.0.0"),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("team/a-1.0.0.tgz")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let has_b = index_has(p.port, "/team/index.yaml", "b-2.0.0.tgz");
        let has_a = index_has(p.port, "/team/index.yaml", "a-1.0.0.tgz");
        if has_b && !has_a {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "index did not follow storage within 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A package replaced in place (same name and version, other bytes): the index shows the
    // new digest within the interval too.
    let replaced = common::tgz(&[(
        "b/Chart.yaml",
        "apiVersion: v2\nname: b\nversion: 2.0.0\ndescription: rebuilt in place\n",
    )]);
    let path = dir.path().join("team/b-2.0.0.tgz");
    let tmp = dir.path().join("team/.b.tmp");
    std::fs::write(&tmp, &replaced).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let digest = chartroom::repository::sha256_hex(&replaced);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !index_has(p.port, "/team/index.yaml", &digest) {
        assert!(
            Instant::now() < deadline,
            "a replaced package was not re-read within 5 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(index_has(p.port, "/team/index.yaml", "rebuilt in place"));
}

#[test]
fn config_file_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("chartmuseum.yaml");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  backend: local\n  local:\n    rootdir: {}\nbasicauth:\n  user: u\n  pass: p\ndepth: 1\n",
            dir.path().join("charts").display()
        ),
    )
    .unwrap();
    let p = start(&["--config", cfg.to_str().unwrap()], &[]);
    let (status, _) = http(p.port, "GET", "/team/index.yaml", b"", None);
    assert_eq!(status, 401);
    let (status, _) = http(p.port, "GET", "/team/index.yaml", b"", Some("Basic dTpw"));
    assert_eq!(status, 200);
    drop(p);
    // Environment variables as ChartMuseum names them.
    let root = dir.path().join("env").display().to_string();
    let p = start(
        &[],
        &[
            ("STORAGE", "local"),
            ("STORAGE_LOCAL_ROOTDIR", &root),
            ("AUTH_ANONYMOUS_GET", "true"),
            ("BASIC_AUTH_USER", "u"),
            ("BASIC_AUTH_PASS", "p"),
        ],
    );
    assert_eq!(http(p.port, "GET", "/index.yaml", b"", None).0, 200);
    assert_eq!(
        http(
            p.port,
            "POST",
            "/api/charts",
            &common::chart("a", "1.0.0"),
            None
        )
        .0,
        401
    );
    assert!(Path::new(&root).is_dir());
}

fn fails_with(args: &[&str], needle: &str) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
}

#[test]
fn invalid_configuration_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "porrt: 1\n").unwrap();
    let fs = f.to_str().unwrap();
    fails_with(&["--config", fs], "unknown configuration key \"porrt\"");
    fails_with(&["--config", fs], fs);
    std::fs::write(&f, "cacheinterval: soon\n").unwrap();
    fails_with(&["--config", fs], "cacheinterval");
    std::fs::write(&f, "port: [1\n").unwrap();
    fails_with(&["--config", fs], "invalid YAML");
    fails_with(
        &["--config", "blahblahblah.yaml"],
        "config file not found: blahblahblah.yaml",
    );
    fails_with(
        &["--storage", "garage"],
        "Unsupported storage backend: garage",
    );
    fails_with(
        &["--port", "notaport"],
        "option --port: invalid value \"notaport\" for port",
    );
    fails_with(&["--bogus-flag"], "--bogus-flag");
}

#[test]
fn gen_index_prints_index() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-1.0.0.tgz"), common::chart("a", "1.0.0")).unwrap();
    let out = Command::new(BIN)
        .args([
            "--gen-index",
            "--storage-local-rootdir",
            dir.path().to_str().unwrap(),
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("apiVersion: v1\n") && text.contains("a-1.0.0.tgz"),
        "{text}"
    );
}

#[test]
fn sigterm_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(
        &["--storage-local-rootdir", dir.path().to_str().unwrap()],
        &[],
    );
    assert_eq!(
        http(
            p.port,
            "POST",
            "/api/charts",
            &common::chart("a", "1.0.0"),
            None
        )
        .0,
        201
    );
    // SAFETY: signalling our own child by PID.
    unsafe {
        libc::kill(p.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    // The state file was written on the way out.
    let state = std::fs::read_to_string(dir.path().join("chartroom-state.json")).unwrap();
    assert!(state.contains("a-1.0.0.tgz"));
}

/// A chart package of about `size` bytes (stored, not compressed, so it costs no time to
/// make): Chart.yaml, then a large file of letters.
fn big_chart(name: &str, version: &str, size: usize) -> Vec<u8> {
    let chart_yaml = format!("apiVersion: v2\nname: {name}\nversion: {version}\n");
    let mut x: u32 = 0x9e37_79b9;
    let filler: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b'a' + (x % 26) as u8
        })
        .collect();
    let mut builder = tar::Builder::new(Vec::new());
    for (path, body) in [
        (format!("{name}/Chart.yaml"), chart_yaml.as_bytes()),
        (format!("{name}/files/filler.txt"), &filler[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, path, body).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    enc.write_all(&tar).unwrap();
    enc.finish().unwrap()
}

/// `--read-timeout` bounds sending a request body (408), `--write-timeout` how long a client
/// may take none of a response before it is disconnected.
#[test]
fn read_and_write_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    // Larger than what loopback sockets buffer on both ends together.
    let big = big_chart("big", "1.0.0", 32 << 20);
    std::fs::write(dir.path().join("big-1.0.0.tgz"), &big).unwrap();
    let root = dir.path().display().to_string();
    let p = start(
        &[
            "--storage-local-rootdir",
            &root,
            "--read-timeout",
            "1",
            "--write-timeout",
            "1",
            // One 32 MiB file: over Helm's default per-file limit (5 MiB).
            "--max-decompressed-file-size",
            "67108864",
        ],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !index_has(p.port, "/index.yaml", "big-1.0.0.tgz") {
        assert!(Instant::now() < deadline, "the big chart was not indexed");
        std::thread::sleep(Duration::from_millis(100));
    }

    // An upload whose body stops coming: 408 once the read timeout has passed.
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let t = Instant::now();
    s.write_all(
        b"POST /api/charts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\nonly ten b",
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(
        answer.contains(r#"{"error":"request body not received in time"}"#),
        "{answer}"
    );
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());

    // A download whose client reads nothing: the server gives up after the write timeout, so
    // reading later ends early (what the sockets had buffered, then the end).
    let mut s = TcpStream::connect(("127.0.0.1", p.port)).unwrap();
    s.write_all(b"GET /charts/big-1.0.0.tgz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.len() < big.len(),
        "a stalled reader was served all {} bytes",
        got.len()
    );
    // A client that reads gets the whole package.
    let (status, body) = http(p.port, "GET", "/charts/big-1.0.0.tgz", b"", None);
    assert_eq!(status, 200);
    assert!(body == big, "download differs ({} bytes)", body.len());
}
