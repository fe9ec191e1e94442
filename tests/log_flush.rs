//! The buffered request log of the binary (issue 14): lines are written within a short
//! interval while it runs, and none is lost when it stops on SIGTERM or SIGINT.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chartroom");

struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `n` requests for `path` on one keep-alive connection, reading each answer whole.
fn requests(port: u16, path: &str, n: usize) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..n {
        let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let k = s.read(&mut buf).unwrap();
            assert!(k > 0, "connection closed");
            got.extend_from_slice(&buf[..k]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                if got.len() >= end + 4 + len {
                    break;
                }
            }
        }
    }
}

fn count(log: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn run(signal: i32) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("a-1.0.0.tgz"), common::chart("a", "1.0.0")).unwrap();
    let log = dir.path().join("stderr");
    let port = free_port();
    let child = Command::new(BIN)
        .args(["--storage-local-rootdir", store.to_str().unwrap()])
        .env_clear()
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A line reaches stderr while the server runs, within the flush interval (generous bound).
    requests(port, "/index.yaml", 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while count(&log, "path=/index.yaml") < 1 {
        assert!(
            Instant::now() < deadline,
            "request line not written while running"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Then many at once, and the signal straight after the last answer.
    let n = 2000;
    requests(port, "/charts/a-1.0.0.tgz", n);
    // SAFETY: signalling our own child by PID.
    unsafe {
        libc::kill(p.0.id() as i32, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = p.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not exit after the signal");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(
        count(&log, "path=/charts/a-1.0.0.tgz"),
        n,
        "request lines lost"
    );
    assert_eq!(count(&log, "stopped"), 1, "the last line is written");
}

#[test]
fn no_request_line_lost_on_sigterm() {
    run(libc::SIGTERM);
}

#[test]
fn no_request_line_lost_on_sigint() {
    run(libc::SIGINT);
}
