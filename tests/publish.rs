//! `chartroom publish` end to end: the binary against running chartroom servers (basic auth
//! on, as the site runs them), requests counted from the server's request log, plus fake
//! servers with hostile answers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_chartroom");
const USER: &str = "publisher";
const PASS: &str = "s3cret";

/// A chartroom server process, killed by its PID when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start(storage: &Path, log: &Path, extra: &[&str]) -> Server {
        let port = free_port();
        let logf = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .args([
                "--listen-host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--storage",
                "local",
                "--storage-local-rootdir",
                &storage.display().to_string(),
                "--basic-auth-user",
                USER,
                "--basic-auth-pass",
                PASS,
            ])
            .args(extra)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .unwrap();
        let s = Server {
            child,
            port,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chartroom did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests `METHOD PATH` in the server's log so far. Request lines are written in
    /// batches, in order: a marker request of our own is sent first and waited for, so every
    /// line before it is in the file.
    fn count(&self, method: &str, path: &str) -> usize {
        let marker = format!(
            "/test-marker-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        get(self.port, &marker);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap();
            if text.contains(&format!("path={marker} ")) {
                let needle = format!("request method={method} path={path} ");
                return text.lines().filter(|l| l.contains(&needle)).count();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "marker request {marker} not logged within 10 s:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// name-version of every entry of an index.yaml.
    fn index(&self, path: &str) -> Vec<String> {
        let (status, body) = get(self.port, path);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_norway::from_slice(&body).unwrap();
        let mut out = Vec::new();
        if let Some(entries) = v["entries"].as_object() {
            for (name, list) in entries {
                for e in list.as_array().unwrap() {
                    out.push(format!("{name}-{}", e["version"].as_str().unwrap()));
                }
            }
        }
        out.sort();
        out
    }
}

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    use base64::Engine;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&out[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out[split + 4..].to_vec();
    // chunked answers: good enough for the small documents read here
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let text = String::from_utf8_lossy(&body).to_string();
        let mut joined = String::new();
        let mut rest = text.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            joined.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        return (status, joined.into_bytes());
    }
    (status, body)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn summary(&self) -> &str {
        self.stdout.lines().last().unwrap_or_default()
    }
}

/// Runs `chartroom publish ARGS` with the credentials in the environment, as the timer does.
fn publish(url: &str, args: &[&std::ffi::OsStr]) -> Run {
    let out = Command::new(BIN)
        .arg("publish")
        .arg("--cm-url")
        .arg(url)
        .args(args)
        .env_clear()
        .env("HELM_REPO_USERNAME", USER)
        .env("HELM_REPO_PASSWORD", PASS)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn write_chart(dir: &Path, name: &str, version: &str) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        format!("apiVersion: v2\nname: {name}\nversion: {version}\ndescription: test\n"),
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "replicas: 1\n").unwrap();
    std::fs::write(
        dir.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
    )
    .unwrap();
}

/// alpha 1.0.0, beta 0.2.0 with a nested subchart sub 0.1.0, and gamma 3.0.0 one level deeper.
fn checkout(root: &Path) -> PathBuf {
    let charts = root.join("checkout/charts");
    write_chart(&charts.join("alpha"), "alpha", "1.0.0");
    write_chart(&charts.join("beta"), "beta", "0.2.0");
    write_chart(&charts.join("beta/charts/sub"), "sub", "0.1.0");
    write_chart(&charts.join("group/gamma"), "gamma", "3.0.0");
    charts
}

const ALL: [&str; 4] = ["alpha-1.0.0", "beta-0.2.0", "gamma-3.0.0", "sub-0.1.0"];

#[test]
fn walk_uploads_every_new_version_then_nothing_with_one_get() {
    let d = tempfile::tempdir().unwrap();
    let charts = checkout(d.path());
    let s = Server::start(
        &d.path().join("storage"),
        &d.path().join("log"),
        &["--depth", "1"],
    );
    let r = publish(&s.url(), &[os("walk"), charts.as_os_str(), os("stable")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.summary(),
        "4 charts found, 0 already present, 4 uploaded, 0 errors"
    );
    assert_eq!(r.stdout.matches("uploaded ").count(), 4, "{}", r.stdout);
    assert_eq!(s.index("/stable/index.yaml"), ALL);
    assert_eq!(s.count("GET", "/api/stable/charts"), 1);
    assert_eq!(s.count("POST", "/api/stable/charts"), 4);

    // Nothing new: one GET, nothing packaged, nothing uploaded.
    let r = publish(
        &s.url(),
        &[os("--debug"), os("walk"), charts.as_os_str(), os("stable")],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.summary(),
        "4 charts found, 4 already present, 0 uploaded, 0 errors"
    );
    assert!(!r.stdout.contains("packaged"), "{}", r.stdout);
    assert_eq!(s.count("GET", "/api/stable/charts"), 2);
    assert_eq!(s.count("POST", "/api/stable/charts"), 4);

    // A new version: just it.
    write_chart(&charts.join("alpha"), "alpha", "1.1.0");
    let r = publish(&s.url(), &[os("walk"), charts.as_os_str(), os("stable")]);
    assert_eq!(
        r.summary(),
        "4 charts found, 3 already present, 1 uploaded, 0 errors"
    );
    assert!(
        r.stdout.contains("uploaded alpha-1.1.0.tgz"),
        "{}",
        r.stdout
    );
    assert_eq!(s.count("GET", "/api/stable/charts"), 3);
    assert_eq!(s.count("POST", "/api/stable/charts"), 5);

    // --silent: nothing on stdout.
    let r = publish(
        &s.url(),
        &[os("-s"), os("walk"), charts.as_os_str(), os("stable")],
    );
    assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, "", ""));
}

#[test]
fn a_chart_that_fails_is_reported_and_the_others_go() {
    let d = tempfile::tempdir().unwrap();
    let charts = checkout(d.path());
    // Packaging fails: a dangling symlink. Reading fails: no version.
    std::os::unix::fs::symlink("/nonexistent/values.yaml", charts.join("alpha/extra.yaml"))
        .unwrap();
    std::fs::write(
        charts.join("group/gamma/Chart.yaml"),
        "apiVersion: v2\nname: gamma\n",
    )
    .unwrap();
    // A symlink out of the checkout is refused by default.
    write_chart(&charts.join("leaky"), "leaky", "0.0.1");
    std::fs::write(d.path().join("secret"), "password").unwrap();
    std::os::unix::fs::symlink(
        d.path().join("secret"),
        charts.join("leaky/templates/secret"),
    )
    .unwrap();
    let s = Server::start(
        &d.path().join("storage"),
        &d.path().join("log"),
        &["--depth", "1"],
    );
    let r = publish(&s.url(), &[os("walk"), charts.as_os_str(), os("stable")]);
    assert_eq!(r.code, 2, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.summary(),
        "5 charts found, 0 already present, 2 uploaded, 3 errors"
    );
    assert!(r.stderr.contains("alpha: cannot package"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("gamma: chart.metadata.version is required")
            || r.stderr.contains("gamma: validation"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("leaky: cannot package"), "{}", r.stderr);
    assert_eq!(s.index("/stable/index.yaml"), ["beta-0.2.0", "sub-0.1.0"]);
    // --allow-outside-symlinks lets the outside link through.
    let r = publish(
        &s.url(),
        &[
            os("--allow-outside-symlinks"),
            os("push"),
            charts.join("leaky").as_os_str(),
            os("stable"),
        ],
    );
    assert_eq!(
        (r.code, r.summary()),
        (0, "1 charts found, 0 already present, 1 uploaded, 0 errors")
    );
}

#[test]
fn conflict_is_not_an_error_and_dry_run_uploads_nothing() {
    let d = tempfile::tempdir().unwrap();
    let charts = checkout(d.path());
    let s = Server::start(
        &d.path().join("storage"),
        &d.path().join("log"),
        &["--depth", "1"],
    );
    let alpha = charts.join("alpha");

    let r = publish(
        &s.url(),
        &[
            os("--dry-run"),
            os("walk"),
            charts.as_os_str(),
            os("stable"),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.summary(),
        "4 charts found, 0 already present, 0 uploaded, 0 errors (dry run: 4 would be uploaded)"
    );
    assert!(
        r.stdout.contains("would upload alpha-1.0.0.tgz"),
        "{}",
        r.stdout
    );
    assert_eq!(s.count("POST", "/api/stable/charts"), 0);
    assert!(s.index("/stable/index.yaml").is_empty());

    let r = publish(&s.url(), &[os("push"), alpha.as_os_str(), os("stable")]);
    assert_eq!(
        (r.code, r.summary()),
        (0, "1 charts found, 0 already present, 1 uploaded, 0 errors")
    );
    // push does not ask first: the server's 409 is "already present".
    let r = publish(&s.url(), &[os("push"), alpha.as_os_str(), os("stable")]);
    assert_eq!(
        (r.code, r.summary()),
        (0, "1 charts found, 1 already present, 0 uploaded, 0 errors")
    );
    assert!(
        r.stdout.contains("alpha-1.0.0.tgz already present (409)"),
        "{}",
        r.stdout
    );
    assert_eq!(s.count("POST", "/api/stable/charts"), 2);
    // (the dry run's)
    assert_eq!(s.count("GET", "/api/stable/charts"), 1);

    // upload TGZ: a package from storage, into another repository.
    let tgz = d.path().join("storage/stable/alpha-1.0.0.tgz");
    let r = publish(&s.url(), &[os("upload"), tgz.as_os_str(), os("other")]);
    assert_eq!(
        (r.code, r.summary()),
        (0, "1 charts found, 0 already present, 1 uploaded, 0 errors")
    );
    assert_eq!(s.index("/other/index.yaml"), ["alpha-1.0.0"]);
    let r = publish(&s.url(), &[os("upload"), tgz.as_os_str(), os("other")]);
    assert_eq!(
        (r.code, r.summary()),
        (0, "1 charts found, 1 already present, 0 uploaded, 0 errors")
    );
}

#[test]
fn exit_codes() {
    let d = tempfile::tempdir().unwrap();
    let charts = checkout(d.path());
    let s = Server::start(
        &d.path().join("storage"),
        &d.path().join("log"),
        &["--depth", "1"],
    );
    let walk = [os("walk"), charts.as_os_str(), os("stable")];

    // Wrong credentials: a repository error, naming the server's message.
    let out = Command::new(BIN)
        .args([
            "publish",
            "--cm-url",
            &s.url(),
            "--cm-user",
            USER,
            "--cm-password",
            "wrong",
        ])
        .args(walk)
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HTTP 401") && err.contains("/api/stable/charts"),
        "{err}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "4 charts found, 0 already present, 0 uploaded, 1 errors"
    );

    // Nobody listening: a repository error.
    let r = publish(&format!("http://127.0.0.1:{}", free_port()), &walk);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("GET http://127.0.0.1:"), "{}", r.stderr);

    // A PATH that is not there, a TGZ that is not there: 1.
    let r = publish(
        &s.url(),
        &[os("walk"), d.path().join("nope").as_os_str(), os("stable")],
    );
    assert_eq!(
        (r.code, r.summary()),
        (1, "0 charts found, 0 already present, 0 uploaded, 1 errors")
    );
    let r = publish(
        &s.url(),
        &[
            os("upload"),
            d.path().join("nope.tgz").as_os_str(),
            os("stable"),
        ],
    );
    assert_eq!(r.code, 1);
    // A TGZ that is no chart: 2, nothing sent.
    std::fs::write(d.path().join("bad.tgz"), "not a package").unwrap();
    let r = publish(
        &s.url(),
        &[
            os("upload"),
            d.path().join("bad.tgz").as_os_str(),
            os("stable"),
        ],
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a chart package"), "{}", r.stderr);
    assert_eq!(s.count("POST", "/api/stable/charts"), 0);
    // A bad URL: 1. A bad command line: 2 (argparse's and clap's usage status).
    let r = publish("ftp://x", &walk);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let r = publish(&s.url(), &[os("walk")]);
    assert_eq!(r.code, 2);
    let r = publish(
        &s.url(),
        &[os("--debug"), os("--silent"), os("walk"), os("x")],
    );
    assert_eq!(r.code, 2);
    let r = publish(&s.url(), &[os("--help")]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("walk") && r.stdout.contains("--cm-url"));
}

#[test]
fn depth_zero_with_an_empty_or_absent_repository() {
    let d = tempfile::tempdir().unwrap();
    let charts = checkout(d.path());
    let s = Server::start(&d.path().join("storage"), &d.path().join("log"), &[]);
    let r = publish(&s.url(), &[os("walk"), charts.as_os_str(), os("")]);
    assert_eq!(
        (r.code, r.summary()),
        (0, "4 charts found, 0 already present, 4 uploaded, 0 errors"),
        "{}",
        r.stderr
    );
    let r = publish(&s.url(), &[os("walk"), charts.as_os_str()]);
    assert_eq!(
        (r.code, r.summary()),
        (0, "4 charts found, 4 already present, 0 uploaded, 0 errors")
    );
    assert_eq!(s.index("/index.yaml"), ALL);
    assert_eq!(s.count("GET", "/api/charts"), 2);
    assert_eq!(s.count("POST", "/api/charts"), 4);
}

#[test]
fn odd_directory_names() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let charts = d.path().join("charts");
    let weird = charts.join("new\nline \u{1b}[31mred");
    write_chart(&weird, "weird", "1.0.0");
    let non_utf8 = charts.join(std::ffi::OsStr::from_bytes(b"bytes-\xff\xfe"));
    write_chart(&non_utf8, "bytes", "1.0.0");
    write_chart(&charts.join(" spaced out "), "spaced", "1.0.0");
    // A directory that looks like an option.
    write_chart(&charts.join("--cm-url"), "dashes", "1.0.0");
    let s = Server::start(
        &d.path().join("storage"),
        &d.path().join("log"),
        &["--depth", "1"],
    );
    let r = publish(&s.url(), &[os("walk"), charts.as_os_str(), os("stable")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(
        r.summary(),
        "4 charts found, 0 already present, 4 uploaded, 0 errors"
    );
    // One line per upload plus the summary: the newline and the escape are shown escaped.
    assert_eq!(r.stdout.lines().count(), 5, "{}", r.stdout);
    assert!(!r.stdout.contains('\u{1b}'));
    assert!(
        r.stdout.contains("new\\nline \\u{1b}[31mred"),
        "{}",
        r.stdout
    );
    assert_eq!(
        s.index("/stable/index.yaml"),
        ["bytes-1.0.0", "dashes-1.0.0", "spaced-1.0.0", "weird-1.0.0"]
    );
    let r = publish(&s.url(), &[os("push"), non_utf8.as_os_str(), os("stable")]);
    assert_eq!(
        (r.code, r.summary()),
        (0, "1 charts found, 1 already present, 0 uploaded, 0 errors")
    );
}

#[test]
fn two_instances_on_one_storage_publish_at_the_same_moment() {
    let d = tempfile::tempdir().unwrap();
    let charts = d.path().join("checkout");
    for i in 0..20 {
        write_chart(
            &charts.join(format!("c{i:02}")),
            &format!("c{i:02}"),
            "1.0.0",
        );
    }
    let storage = d.path().join("storage");
    let opts = ["--depth", "1", "--cache-interval", "1s"];
    let a = Server::start(&storage, &d.path().join("log-a"), &opts);
    let b = Server::start(&storage, &d.path().join("log-b"), &opts);
    let runs: Vec<Run> = std::thread::scope(|scope| {
        let handles: Vec<_> = [a.url(), b.url()]
            .into_iter()
            .map(|url| {
                let charts = charts.clone();
                scope.spawn(move || publish(&url, &[os("walk"), charts.as_os_str(), os("stable")]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut uploaded = 0;
    for r in &runs {
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.summary().ends_with(" 0 errors"), "{}", r.summary());
        assert!(
            r.summary().starts_with("20 charts found, "),
            "{}",
            r.summary()
        );
        let n: usize = r
            .summary()
            .split(", ")
            .nth(2)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let present: usize = r
            .summary()
            .split(", ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(n + present, 20, "{}", r.summary());
        uploaded += n;
    }
    // Each version stored once: exactly one 201 per version over both runs.
    assert_eq!(uploaded, 20);
    let stored: Vec<_> = std::fs::read_dir(storage.join("stable"))
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.ends_with(".tgz").then_some(n)
        })
        .collect();
    assert_eq!(stored.len(), 20);
    // Both indexes agree (the other instance's uploads appear within its cache interval).
    let want: Vec<String> = (0..20).map(|i| format!("c{i:02}-1.0.0")).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ia, ib) = (a.index("/stable/index.yaml"), b.index("/stable/index.yaml"));
        if ia == want && ib == want {
            break;
        }
        assert!(Instant::now() < deadline, "indexes differ: {ia:?} {ib:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fake repository server: answers every connection with `answer` (bytes), counting them.
fn fake_server(answer: Vec<u8>) -> (u16, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        // one connection (publish walk makes one request and stops on an error)
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(&answer);
        }
    });
    (port, h)
}

#[test]
fn hostile_listing_answers_are_errors_not_crashes() {
    let d = tempfile::tempdir().unwrap();
    let charts = checkout(d.path());
    let walk = [os("walk"), charts.as_os_str(), os("stable")];
    let http = |status: &str, headers: &str, body: &[u8]| {
        let mut v = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        v.extend_from_slice(body);
        v
    };
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(50_000), "]".repeat(50_000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (http("200 OK", "", b"{\"a\":"), "not a chart listing"),
        (
            http("200 OK", "", b"\xff\xfe garbage"),
            "not a chart listing",
        ),
        (http("200 OK", "", deep.as_bytes()), "not a chart listing"),
        (
            http(
                "500 Internal Server Error",
                "",
                b"{\"error\":\"boom\\u001b[31m\"}",
            ),
            "HTTP 500: boom\\u{1b}[31m",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n{}".to_vec(),
            "larger than 268435456 bytes",
        ),
        (b"not http at all\r\n\r\n".to_vec(), "GET http://127.0.0.1:"),
    ];
    for (answer, want) in cases {
        let (port, h) = fake_server(answer);
        let r = publish(&format!("http://127.0.0.1:{port}"), &walk);
        h.join().unwrap();
        assert_eq!(r.code, 2, "{want}: {}", r.stderr);
        assert!(r.stderr.contains(want), "want {want:?} in {:?}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
        assert_eq!(
            r.summary(),
            "4 charts found, 0 already present, 0 uploaded, 1 errors"
        );
    }
}

#[test]
fn a_listing_larger_than_the_bound_is_refused_while_streaming() {
    // No Content-Length: the body is cut off at the bound, not read to its end.
    let d = tempfile::tempdir().unwrap();
    let charts = checkout(d.path());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"a\":[");
        let chunk = vec![b' '; 1 << 20];
        let mut sent = 0u64;
        // Stops when the client hangs up (or after 300 MiB).
        while sent < 300 << 20 && s.write_all(&chunk).is_ok() {
            sent += chunk.len() as u64;
        }
        sent
    });
    let r = publish(
        &format!("http://127.0.0.1:{port}"),
        &[os("walk"), charts.as_os_str(), os("s")],
    );
    let sent = h.join().unwrap();
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("larger than 268435456 bytes"),
        "{}",
        r.stderr
    );
    assert!(
        sent < 300 << 20,
        "the client read on past the bound ({sent} bytes)"
    );
}
