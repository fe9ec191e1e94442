//! Hostile input: auth. A half-configured basic auth is a configuration error naming the key
//! (never auth silently off), also on reload; with auth on, every push route needs the
//! credentials and `authanonymousget` opens the pulls only; encoding tricks get nowhere.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use chartroom::config;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::common::{Server, chart, prov};

fn load(args: &[&str], env: &[(&str, &str)]) -> Result<config::Config, String> {
    let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let parsed = config::parse_args(&argv).map_err(|e| e.to_string())?;
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    config::load(&parsed, &lookup, None).map_err(|e| e.to_string())
}

fn refused(args: &[&str], env: &[(&str, &str)], names: &[&str]) {
    match load(args, env) {
        Ok(c) => panic!(
            "{args:?} {env:?} loaded (user {:?}, password set: {})",
            c.basic_user,
            !c.basic_pass.is_empty()
        ),
        Err(e) => {
            for n in names {
                assert!(e.contains(n), "{args:?} {env:?}: {e:?} does not name {n}");
            }
        }
    }
}

#[test]
fn half_configured_basic_auth_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    // A user alone, from each source.
    refused(
        &["--basic-auth-user", "u"],
        &[],
        &["basicauth.user", "--basic-auth-user"],
    );
    refused(
        &[],
        &[("BASIC_AUTH_USER", "u")],
        &["basicauth.user", "BASIC_AUTH_USER"],
    );
    let yaml = file("user-only.yaml", "basicauth:\n  user: u\n");
    refused(&["-c", &yaml], &[], &["basicauth.user", "user-only.yaml"]);
    // A password alone.
    refused(&["--basic-auth-pass", "p"], &[], &["basicauth.pass"]);
    refused(
        &[],
        &[("BASIC_AUTH_PASS", "p")],
        &["basicauth.pass", "BASIC_AUTH_PASS"],
    );
    let good = file("good", "s3cret\n");
    refused(
        &["--basic-auth-pass-file", &good],
        &[],
        &["basicauth.passfile"],
    );
    // A user with an empty, blank-line, missing or unreadable password file.
    for (what, path) in [
        ("empty", file("empty", "")),
        ("newline only", file("newline", "\n")),
        ("CRLF only", file("crlf", "\r\n")),
        ("missing", dir.path().join("nope").display().to_string()),
        ("a directory", dir.path().display().to_string()),
    ] {
        let e = load(
            &["--basic-auth-user", "u", "--basic-auth-pass-file", &path],
            &[],
        )
        .err()
        .unwrap_or_else(|| panic!("a password file that is {what} was accepted"));
        assert!(e.contains("basicauth.passfile"), "{what}: {e}");
        assert!(e.contains(&path), "{what}: {e}");
    }
    // The file wins over basicauth.pass: an empty file is not papered over by a password.
    let empty = file("empty2", "");
    refused(
        &[
            "--basic-auth-user",
            "u",
            "--basic-auth-pass",
            "p",
            "--basic-auth-pass-file",
            &empty,
        ],
        &[],
        &["basicauth.passfile"],
    );
    // Whole configurations load: both set, or neither.
    let c = load(
        &["--basic-auth-user", "u", "--basic-auth-pass-file", &good],
        &[],
    )
    .unwrap();
    assert_eq!(
        (c.basic_user.as_str(), c.basic_pass.as_str()),
        ("u", "s3cret")
    );
    let c = load(&[], &[("BASIC_AUTH_USER", "u"), ("BASIC_AUTH_PASS", "p")]).unwrap();
    assert_eq!((c.basic_user.as_str(), c.basic_pass.as_str()), ("u", "p"));
    let c = load(&[], &[]).unwrap();
    assert!(c.basic_user.is_empty() && c.basic_pass.is_empty());
    // An empty value given explicitly is "not set" for both.
    assert!(load(&["--basic-auth-user=", "--basic-auth-pass="], &[]).is_ok());
}

#[test]
fn other_security_half_configurations_are_errors_too() {
    // A half-configured TLS or bearer auth stops the server instead of serving without it (a
    // TLS certificate without a key, a key without a certificate, a client CA without both,
    // bearer auth without its realm, service or key).
    for (args, env, key) in [
        (vec!["--bearer-auth"], vec![], "Missing Auth Realm"),
        (vec![], vec![("BEARER_AUTH", "true")], "bearerauth"),
        (
            vec!["--bearer-auth", "--auth-realm", "r"],
            vec![],
            "Missing Auth Service",
        ),
        (
            vec!["--bearer-auth", "--auth-realm", "r", "--auth-service", "s"],
            vec![],
            "Missing Auth Server Public Cert Path",
        ),
        (vec!["--tls-cert", "/c.pem"], vec![], "tls.cert"),
        (vec!["--tls-key", "/k.pem"], vec![], "tls.key"),
        (vec![], vec![("TLS_CERT", "/c.pem")], "tls.cert"),
        (vec!["--tls-ca-cert", "/ca.pem"], vec![], "tls.cacert"),
        (
            vec!["--tls-cert", "/nonexistent/c.pem", "--tls-key", "/k.pem"],
            vec![],
            "/nonexistent/c.pem",
        ),
    ] {
        refused(&args, &env, &[key]);
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.yaml");
    std::fs::write(&f, "tls:\n  cert: /c.pem\n").unwrap();
    refused(&["-c", f.to_str().unwrap()], &[], &["tls.cert", "c.yaml"]);
    std::fs::write(&f, "bearerauth: yes\n").unwrap();
    refused(&["-c", f.to_str().unwrap()], &[], &["bearerauth", "c.yaml"]);
    // Their defaults, written out, are fine.
    std::fs::write(&f, "bearerauth: false\ntls:\n  cert: \"\"\n  key: \"\"\n").unwrap();
    assert!(load(&["-c", f.to_str().unwrap()], &[]).is_ok());
    // Bearer settings without bearerauth: loaded (ChartMuseum ignores them) with a warning.
    let c = load(&["--auth-realm", "r"], &[]).unwrap();
    assert!(c.bearer.is_none());
    assert!(
        c.warnings.iter().any(|w| w.contains("authrealm")),
        "{:?}",
        c.warnings
    );
}

// ---------------------------------------------------------------------------------------------
// In process: which routes need credentials.
// ---------------------------------------------------------------------------------------------

const USER: &str = "u";
/// With a colon: only the first colon of `user:pass` separates.
const PASS: &str = "p:w";

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

async fn send(
    s: &Server,
    method: Method,
    path: &str,
    body: Vec<u8>,
    auth: Option<&[u8]>,
) -> StatusCode {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = auth {
        b = b.header(header::AUTHORIZATION, HeaderValue::from_bytes(a).unwrap());
    }
    let resp = s
        .app
        .handle(b.body(Full::new(Bytes::from(body))).unwrap())
        .await;
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED {
        assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    }
    let _ = resp.into_body().collect().await;
    status
}

async fn server(anonymous_get: bool) -> Server {
    let mut args = vec!["--basic-auth-user", USER, "--basic-auth-pass", PASS];
    if anonymous_get {
        args.push("--auth-anonymous-get");
    }
    let s = Server::new(&args).await;
    // One chart to read and delete.
    let good = basic(&format!("{USER}:{PASS}"));
    let st = send(
        &s,
        Method::POST,
        "/api/charts",
        chart("a", "1.0.0"),
        Some(good.as_bytes()),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    s
}

fn pulls() -> Vec<(Method, &'static str)> {
    vec![
        (Method::GET, "/"),
        (Method::GET, "/index.yaml"),
        (Method::HEAD, "/index.yaml"),
        (Method::GET, "/charts/a-1.0.0.tgz"),
        (Method::HEAD, "/charts/a-1.0.0.tgz"),
        (Method::GET, "/api/charts"),
        (Method::GET, "/api/charts/a"),
        (Method::HEAD, "/api/charts/a"),
        (Method::GET, "/api/charts/a/1.0.0"),
        (Method::GET, "/api/charts/a/latest"),
        (Method::GET, "/api/charts/a/1.0.0/templates"),
        (Method::GET, "/api/charts/a/1.0.0/values"),
    ]
}

/// Push requests (method, path, body) that would change the repository.
fn pushes() -> Vec<(Method, &'static str, Vec<u8>)> {
    vec![
        (Method::POST, "/api/charts", chart("b", "1.0.0")),
        (Method::POST, "/api/charts?force", chart("a", "1.0.0")),
        (Method::POST, "/api/prov", prov("a", "1.0.0")),
        (Method::DELETE, "/api/charts/a/1.0.0", vec![]),
    ]
}

fn stored(s: &Server) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(&s.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tgz") || n.ends_with(".prov"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn with_auth_on_every_push_route_needs_credentials() {
    for anonymous_get in [false, true] {
        let s = server(anonymous_get).await;
        let before = stored(&s);
        let wrong = basic(&format!("{USER}:p"));
        for (m, path, body) in pushes() {
            for auth in [None, Some(wrong.as_bytes())] {
                let st = send(&s, m.clone(), path, body.clone(), auth).await;
                assert_eq!(
                    st,
                    StatusCode::UNAUTHORIZED,
                    "{m} {path} anonymous_get={anonymous_get} auth={auth:?}"
                );
            }
        }
        assert_eq!(stored(&s), before, "nothing changed");
        for (m, path) in pulls() {
            let st = send(&s, m.clone(), path, vec![], None).await;
            if anonymous_get {
                assert!(st.is_success(), "{m} {path}: {st}");
            } else {
                assert_eq!(st, StatusCode::UNAUTHORIZED, "{m} {path}");
            }
        }
        // Service routes never need credentials.
        for path in ["/health", "/info"] {
            assert_eq!(
                send(&s, Method::GET, path, vec![], None).await,
                StatusCode::OK
            );
        }
        // The right credentials open everything.
        let good = basic(&format!("{USER}:{PASS}"));
        for (m, path) in pulls() {
            let st = send(&s, m.clone(), path, vec![], Some(good.as_bytes())).await;
            assert!(st.is_success(), "{m} {path}: {st}");
        }
        let st = send(
            &s,
            Method::DELETE,
            "/api/charts/a/1.0.0",
            vec![],
            Some(good.as_bytes()),
        )
        .await;
        assert_eq!(st, StatusCode::OK);
    }
}

#[tokio::test]
async fn anonymous_get_does_not_open_pushes_through_odd_paths() {
    let s = server(true).await;
    let before = stored(&s);
    // Variants of the push paths: none may store or delete anything without credentials.
    for path in [
        "/api/charts/",
        "/api//charts",
        "//api/charts",
        "/api/charts/.",
        "/API/charts",
        "/%61pi/charts",
        "/api/charts%2F",
        "/api/charts?x=1",
        "/api/./charts",
        "/api/prov/",
        "/./api/charts",
    ] {
        let st = send(&s, Method::POST, path, chart("c", "1.0.0"), None).await;
        assert!(!st.is_success(), "POST {path}: {st}");
    }
    for path in [
        "/api/charts/a/1.0.0/",
        "/api//charts/a/1.0.0",
        "/api/charts/a/%31.0.0",
        "/api/charts/a/latest",
        "/api/charts/a",
        "/charts/a-1.0.0.tgz",
        "/index.yaml",
    ] {
        let st = send(&s, Method::DELETE, path, vec![], None).await;
        assert!(!st.is_success(), "DELETE {path}: {st}");
    }
    for m in [Method::PUT, Method::PATCH, Method::OPTIONS] {
        let st = send(&s, m.clone(), "/api/charts", chart("c", "1.0.0"), None).await;
        assert!(!st.is_success(), "{m}: {st}");
    }
    assert_eq!(stored(&s), before);
}

#[tokio::test]
async fn encoding_tricks_get_nowhere() {
    let s = server(false).await;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    let mut tricks: Vec<Vec<u8>> = vec![
        // The password up to its colon, or with more after it.
        basic(&format!("{USER}:p")).into_bytes(),
        basic(&format!("{USER}:{PASS}:")).into_bytes(),
        basic(&format!("{USER}:{PASS}x")).into_bytes(),
        basic(&format!("{USER}:")).into_bytes(),
        basic(&format!("{USER}{PASS}")).into_bytes(),
        basic(&format!(":{PASS}")).into_bytes(),
        basic(&format!("{USER}x:{PASS}")).into_bytes(),
        basic(":").into_bytes(),
        basic("").into_bytes(),
        // Scheme and spacing games with a wrong password.
        format!(
            "basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        )
        .into_bytes(),
        format!(
            "BASIC  {}",
            base64::engine::general_purpose::STANDARD.encode("u:x")
        )
        .into_bytes(),
        b"Basic".to_vec(),
        b"Basic ".to_vec(),
        b"Basic    ".to_vec(),
        format!("Bearer {token}").into_bytes(),
        token.clone().into_bytes(),
        // The right token cut short, padded, or in another base64 alphabet.
        format!("Basic {}", &token[..token.len() - 1]).into_bytes(),
        format!("Basic {}", token.trim_end_matches('=')).into_bytes(),
        format!("Basic {token}=").into_bytes(),
        format!(
            "Basic {}",
            base64::engine::general_purpose::URL_SAFE.encode("u:p")
        )
        .into_bytes(),
        // Not UTF-8, and very long.
        b"Basic \xff\xfe\xfd".to_vec(),
        [b"Basic ".as_slice(), &[0x80; 64]].concat(),
        format!("Basic {}", "A".repeat(64 * 1024)).into_bytes(),
        format!("Basic {token}{}", "=".repeat(8 * 1024)).into_bytes(),
    ];
    // The right credentials followed by a NUL-free control byte are not the right ones.
    tricks.push(format!("Basic {token}\t").into_bytes());
    let before = stored(&s);
    for t in &tricks {
        let st = send(
            &s,
            Method::POST,
            "/api/charts",
            chart("t", "1.0.0"),
            Some(t),
        )
        .await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{:?}",
            String::from_utf8_lossy(t)
        );
        let st = send(&s, Method::GET, "/index.yaml", vec![], Some(t)).await;
        assert_eq!(
            st,
            StatusCode::UNAUTHORIZED,
            "{:?}",
            String::from_utf8_lossy(t)
        );
    }
    assert_eq!(stored(&s), before);
    // The password with its colon works.
    let st = send(
        &s,
        Method::POST,
        "/api/charts",
        chart("t", "1.0.0"),
        Some(basic(&format!("{USER}:{PASS}")).as_bytes()),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
}

#[tokio::test]
async fn the_auth_summary_says_what_is_protected() {
    let s = server(false).await;
    let m = s.app.http.load().auth_summary();
    assert!(m.contains("push and pull"), "{m}");
    let s = server(true).await;
    let m = s.app.http.load().auth_summary();
    assert!(m.contains("for push") && m.contains("anonymous"), "{m}");
    let s = Server::new(&[]).await;
    let m = s.app.http.load().auth_summary();
    assert!(m.starts_with("off"), "{m}");
}

// ---------------------------------------------------------------------------------------------
// The binary: start-up and reload with a password file.
// ---------------------------------------------------------------------------------------------

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chartroom");

/// A chartroom process, killed by PID when dropped; its log goes to a file.
pub(crate) struct Proc {
    pub child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn hup(&self) {
        // SAFETY: a signal to the child we started, by its PID.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn spawn(dir: &Path, args: &[&str]) -> Proc {
    spawn_with(dir, args, |_| {})
}

/// Starts the binary on a free port with `args`, after `configure` had its say on the command.
pub(crate) fn spawn_with(dir: &Path, args: &[&str], configure: impl FnOnce(&mut Command)) -> Proc {
    let port = free_port();
    let log = dir.join(format!("chartroom-{port}.log"));
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--port", &port.to_string(), "--listen-host", "127.0.0.1"])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    configure(&mut cmd);
    let child = cmd.spawn().unwrap();
    Proc { child, port, log }
}

pub(crate) fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request: the status.
pub(crate) fn http(port: u16, method: &str, path: &str, body: &[u8], auth: Option<&str>) -> u16 {
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
    let _ = s.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn an_emptied_password_file_fails_the_reload_and_keeps_the_running_auth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("charts");
    let passfile = dir.path().join("pass");
    std::fs::write(&passfile, "old-secret\n").unwrap();
    let (root_s, pass_s) = (root.display().to_string(), passfile.display().to_string());
    let p = spawn(
        dir.path(),
        &[
            "--storage-local-rootdir",
            &root_s,
            "--basic-auth-user",
            "u",
            "--basic-auth-pass-file",
            &pass_s,
        ],
    );
    wait_for("ready", Duration::from_secs(20), || {
        p.log().contains("ready")
    });
    let log = p.log();
    assert!(
        log.contains("auth") && log.contains("push and pull"),
        "the start-up log says what auth protects:\n{log}"
    );
    let old = basic("u:old-secret");
    assert_eq!(
        http(p.port, "POST", "/api/charts", &chart("r", "1.0.0"), None),
        401
    );
    assert_eq!(
        http(
            p.port,
            "POST",
            "/api/charts",
            &chart("r", "1.0.0"),
            Some(&old)
        ),
        201
    );

    // Emptied before a reload: the reload fails, naming the key; the old auth stays.
    std::fs::write(&passfile, "").unwrap();
    p.hup();
    wait_for("the reload fails", Duration::from_secs(20), || {
        p.log().contains("reload failed")
    });
    let log = p.log();
    let line = log.lines().find(|l| l.contains("reload failed")).unwrap();
    assert!(line.contains("basicauth.passfile"), "{line}");
    assert_eq!(
        http(p.port, "POST", "/api/charts", &chart("r", "2.0.0"), None),
        401
    );
    assert_eq!(
        http(p.port, "DELETE", "/api/charts/r/1.0.0", b"", None),
        401
    );
    assert_eq!(http(p.port, "GET", "/index.yaml", b"", None), 401);
    assert_eq!(
        http(
            p.port,
            "POST",
            "/api/charts",
            &chart("r", "2.0.0"),
            Some(&old)
        ),
        201
    );

    // A new password and a reload: the new one works, the old one no longer does.
    std::fs::write(&passfile, "new-secret\n").unwrap();
    p.hup();
    wait_for("the reload completes", Duration::from_secs(20), || {
        p.log().contains("reload complete")
    });
    let new = basic("u:new-secret");
    assert_eq!(
        http(
            p.port,
            "POST",
            "/api/charts",
            &chart("r", "3.0.0"),
            Some(&old)
        ),
        401
    );
    assert_eq!(
        http(
            p.port,
            "POST",
            "/api/charts",
            &chart("r", "3.0.0"),
            Some(&new)
        ),
        201
    );
    let reload_log = p.log();
    let after_reload = &reload_log[reload_log.rfind("reloading configuration").unwrap()..];
    assert!(after_reload.contains("push and pull"), "{after_reload}");
}

#[test]
fn an_empty_password_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pass");
    std::fs::write(&passfile, "").unwrap();
    let root = dir.path().join("charts").display().to_string();
    let mut p = spawn(
        dir.path(),
        &[
            "--storage-local-rootdir",
            &root,
            "--basic-auth-user",
            "u",
            "--basic-auth-pass-file",
            passfile.to_str().unwrap(),
        ],
    );
    let mut status = None;
    wait_for("the start fails", Duration::from_secs(20), || {
        status = p.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(!status.unwrap().success());
    assert!(p.log().contains("basicauth.passfile"), "{}", p.log());
}
