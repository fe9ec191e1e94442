//! HTTPS end to end with the binary (issue 9): a throw-away PKI made with the `openssl` command,
//! clients made with rustls (to see the certificate a connection got and to keep one open over a
//! reload), curl and `openssl s_client`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const BIN: &str = env!("CARGO_BIN_EXE_chartroom");

/// A started process, killed (by PID) when dropped.
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

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {port}");
}

fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let storage = dir.join("charts");
    let mut cmd = Command::new(BIN);
    cmd.args(["--storage", "local", "--storage-local-rootdir"])
        .arg(&storage)
        .args(args)
        .env_clear()
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let p = Proc {
        child: cmd.spawn().unwrap(),
        port,
    };
    wait_listening(port);
    p
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`), another CA (`other-ca.pem`), server certificates for `localhost` and
/// 127.0.0.1 signed by the CA with RSA (PKCS#8 `rsa.key`, PKCS#1 `rsa-pkcs1.key`), ECDSA P-256
/// (PKCS#8 `ec.key`, SEC1 `ec-sec1.key`) and Ed25519 (`ed.key`) keys, each `NAME.pem` with
/// the CA appended in `NAME-chain.pem`; client certificates `client.pem`/`client.key` (CA)
/// and `rogue.pem`/`rogue.key` (other CA).
fn pki(dir: &Path) {
    sh(
        dir,
        r#"
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
         -out "$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null; }
ca ca
ca other-ca
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > server.ext
printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n' > client.ext
sign() { # name key ca serial ext
  openssl req -new -key "$2" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
  openssl x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "$4" -days 2 \
     -extfile "$5" -out "$1.pem" 2>/dev/null
  cat "$1.pem" "$3.pem" > "$1-chain.pem"
}
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key 2>/dev/null
openssl rsa -in rsa.key -traditional -out rsa-pkcs1.key 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.key
openssl ec -in ec.key -out ec-sec1.key 2>/dev/null
openssl genpkey -algorithm ED25519 -out ed.key
sign rsa rsa.key ca 101 server.ext
sign ec ec.key ca 102 server.ext
sign ed ed.key ca 103 server.ext
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec2.key
sign ec2 ec2.key ca 202 server.ext
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.key
sign client client.key ca 301 client.ext
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out rogue.key
sign rogue rogue.key other-ca 302 client.ext
grep -q 'BEGIN RSA PRIVATE KEY' rsa-pkcs1.key
grep -q 'BEGIN EC PRIVATE KEY' ec-sec1.key
"#,
    );
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

fn client_config(ca: &Path, client: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut cfg = match client {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect(port: u16, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// One keep-alive request on an open connection: (status, body).
fn request<S: Read + Write>(s: &mut S, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n")?;
    s.flush()?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::Error::other("closed before the headers ended"));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body)?;
    Ok((status, body))
}

fn peer_cert(s: &Tls) -> Vec<u8> {
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

fn der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn fails_with(dir: &Path, args: &[&str], needles: &[&str]) {
    let out = Command::new(BIN)
        .args(["--storage", "local", "--storage-local-rootdir"])
        .arg(dir.join("charts"))
        .args(args)
        .env_clear()
        .env("PORT", free_port().to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    let err = String::from_utf8_lossy(&out.stderr);
    for n in needles {
        assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
    }
}

#[test]
fn https_with_every_key_type_and_format() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    let cfg = client_config(&d.join("ca.pem"), None);
    for (cert, key) in [
        ("rsa-chain.pem", "rsa.key"),
        ("rsa.pem", "rsa-pkcs1.key"),
        ("ec-chain.pem", "ec.key"),
        ("ec.pem", "ec-sec1.key"),
        ("ed-chain.pem", "ed.key"),
    ] {
        let s = start(
            d,
            &["--tls-cert", &p(d, cert), "--tls-key", &p(d, key)],
            &[],
        );
        let mut c = connect(s.port, cfg.clone()).unwrap_or_else(|e| panic!("{cert}: {e}"));
        assert_eq!(c.conn.alpn_protocol(), Some(&b"http/1.1"[..]), "{cert}");
        assert_eq!(request(&mut c, "/health").unwrap().0, 200, "{cert}");
        assert_eq!(request(&mut c, "/index.yaml").unwrap().0, 200, "{cert}");
        // curl with the CA, and without it (the system's CAs do not know ours).
        let url = format!("https://localhost:{}/health", s.port);
        let resolve = format!("localhost:{}:127.0.0.1", s.port);
        let (ok, out) = curl(&["--resolve", &resolve, "--cacert", &p(d, "ca.pem"), &url]);
        assert!(ok && out.contains("true"), "{cert}: {out}");
        let (ok, out) = curl(&["--resolve", &resolve, &url]);
        assert!(!ok, "{cert}: curl without the CA: {out}");
        // Plain HTTP to the TLS port gets no answer.
        let mut plain = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        plain
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let _ = plain.read_to_end(&mut got);
        // Go's answer, or nothing if the close raced the answer: never a 200.
        assert!(
            got.is_empty() || got.starts_with(b"HTTP/1.0 400 Bad Request\r\n"),
            "{cert}: plain HTTP got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[test]
fn old_protocol_versions_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    let s = start(
        d,
        &["--tls-cert", &p(d, "ec.pem"), "--tls-key", &p(d, "ec.key")],
        &[],
    );
    let addr = format!("127.0.0.1:{}", s.port);
    let s_client = |v: &str| {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                v,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for v in ["-tls1", "-tls1_1"] {
        let (ok, out) = s_client(v);
        assert!(!ok, "{v} accepted: {out}");
        // rustls answers with an alert (handshake failure or protocol version).
        assert!(out.contains("SSL alert number"), "{v}: {out}");
    }
    for v in ["-tls1_2", "-tls1_3"] {
        let (ok, out) = s_client(v);
        assert!(ok, "{v} refused: {out}");
    }
}

#[test]
fn start_up_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    std::fs::write(d.join("empty.pem"), "").unwrap();
    let (ec, eck, rsak) = (p(d, "ec.pem"), p(d, "ec.key"), p(d, "rsa.key"));
    let missing = p(d, "missing.pem");
    let empty = p(d, "empty.pem");
    fails_with(
        d,
        &["--tls-cert", &missing, "--tls-key", &eck],
        &["tls.cert", &missing],
    );
    fails_with(
        d,
        &["--tls-cert", &ec, "--tls-key", &missing],
        &["tls.key", &missing],
    );
    fails_with(
        d,
        &["--tls-cert", &ec, "--tls-key", &empty],
        &["tls.key", &empty, "no private key"],
    );
    fails_with(
        d,
        &["--tls-cert", &empty, "--tls-key", &eck],
        &["tls.cert", &empty, "no PEM certificate"],
    );
    fails_with(
        d,
        &["--tls-cert", &eck, "--tls-key", &eck],
        &["tls.cert", &eck],
    );
    fails_with(
        d,
        &["--tls-cert", &ec, "--tls-key", &rsak],
        &["do not match", &ec, &rsak],
    );
    fails_with(
        d,
        &[
            "--tls-cert",
            &ec,
            "--tls-key",
            &eck,
            "--tls-ca-cert",
            &empty,
        ],
        &["tls.cacert", &empty],
    );
    fails_with(d, &["--tls-ca-cert", &p(d, "ca.pem")], &["tls.cacert"]);
    fails_with(d, &["--tls-cert", &ec], &["tls.key is not"]);
}

#[test]
fn client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    let s = start(
        d,
        &[
            "--tls-cert",
            &p(d, "ec.pem"),
            "--tls-key",
            &p(d, "ec.key"),
            "--tls-ca-cert",
            &p(d, "ca.pem"),
        ],
        &[],
    );
    let ca = d.join("ca.pem");
    // A good client certificate.
    let good = client_config(&ca, Some((&d.join("client.pem"), &d.join("client.key"))));
    let mut c = connect(s.port, good).unwrap();
    assert_eq!(request(&mut c, "/index.yaml").unwrap().0, 200);
    // None, and one from another CA: the handshake fails (with TLS 1.3 the client sees it at
    // its first read).
    for cfg in [
        client_config(&ca, None),
        client_config(&ca, Some((&d.join("rogue.pem"), &d.join("rogue.key")))),
    ] {
        let r = connect(s.port, cfg).and_then(|mut c| request(&mut c, "/health"));
        assert!(r.is_err(), "{r:?}");
    }
    // curl likewise.
    let url = format!("https://localhost:{}/health", s.port);
    let resolve = format!("localhost:{}:127.0.0.1", s.port);
    let base = ["--resolve", &resolve, "--cacert", ca.to_str().unwrap()];
    let with = |cert: &str, key: &str| {
        let mut a = base.to_vec();
        let (c, k) = (p(d, cert), p(d, key));
        a.extend(["--cert", &c, "--key", &k, &url]);
        curl(&a)
    };
    let (ok, out) = with("client.pem", "client.key");
    assert!(ok && out.contains("true"), "{out}");
    let (ok, out) = with("rogue.pem", "rogue.key");
    assert!(!ok, "{out}");
    let mut a = base.to_vec();
    a.push(&url);
    let (ok, out) = curl(&a);
    assert!(!ok, "{out}");
}

/// Datagrams sent to a NOTIFY_SOCKET.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new(dir: &Path) -> Notify {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Notify { sock, path }
    }

    /// Waits for a message containing `needle`; returns it.
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let mut buf = [0u8; 4096];
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).to_string();
                if m.contains(needle) {
                    return m;
                }
                seen.push(m);
            }
        }
        panic!("no notification with {needle:?}; got {seen:?}");
    }
}

fn hup(p: &Proc) {
    // SAFETY: sending a signal to our own child.
    assert_eq!(unsafe { libc::kill(p.child.id() as i32, libc::SIGHUP) }, 0);
}

#[test]
fn reload_swaps_the_certificate_and_keeps_it_on_a_broken_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    let (cert, key) = (d.join("live.pem"), d.join("live.key"));
    std::fs::copy(d.join("ec.pem"), &cert).unwrap();
    std::fs::copy(d.join("ec.key"), &key).unwrap();
    let conf = d.join("chartroom.yaml");
    std::fs::write(
        &conf,
        format!(
            "tls:\n  cert: {}\n  key: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let notify = Notify::new(d);
    let s = start(
        d,
        &["--config", conf.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify.path.to_str().unwrap())],
    );
    notify.wait_for("READY=1");
    let cfg = client_config(&d.join("ca.pem"), None);
    let mut open = connect(s.port, cfg.clone()).unwrap();
    assert_eq!(request(&mut open, "/health").unwrap().0, 200);
    assert_eq!(peer_cert(&open), der(&d.join("ec.pem")));

    // Renewed files (another key and serial), then a reload.
    std::fs::copy(d.join("ec2.pem"), &cert).unwrap();
    std::fs::copy(d.join("ec2.key"), &key).unwrap();
    hup(&s);
    let m = notify.wait_for("READY=1");
    assert!(!m.contains("reload failed"), "{m}");
    let fresh = connect(s.port, cfg.clone()).unwrap();
    assert_eq!(peer_cert(&fresh), der(&d.join("ec2.pem")), "new connection");
    // The connection opened before keeps its session.
    assert_eq!(request(&mut open, "/index.yaml").unwrap().0, 200);
    assert_eq!(peer_cert(&open), der(&d.join("ec.pem")));

    // A broken key: the reload fails, says why, and the running certificate stays.
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    hup(&s);
    let m = notify.wait_for("reload failed");
    assert!(
        m.contains("tls.key") && m.contains(key.to_str().unwrap()),
        "{m}"
    );
    let mut after = connect(s.port, cfg.clone()).unwrap();
    assert_eq!(peer_cert(&after), der(&d.join("ec2.pem")));
    assert_eq!(request(&mut after, "/health").unwrap().0, 200);
    // A key that does not match the certificate: the same.
    std::fs::copy(d.join("rsa.key"), &key).unwrap();
    hup(&s);
    let m = notify.wait_for("reload failed");
    assert!(m.contains("do not match"), "{m}");
    assert_eq!(
        peer_cert(&connect(s.port, cfg).unwrap()),
        der(&d.join("ec2.pem"))
    );
}

#[test]
fn tls_on_a_socket_passed_by_systemd() {
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .output()
        .is_err()
    {
        eprintln!("systemd-socket-activate not installed; skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    let port = free_port();
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}")])
        .arg(BIN)
        .args(["--storage", "local", "--storage-local-rootdir"])
        .arg(d.join("charts"))
        .args(["--tls-cert", &p(d, "ec.pem"), "--tls-key", &p(d, "ec.key")])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Proc { child, port };
    wait_listening(port);
    let cfg = client_config(&d.join("ca.pem"), None);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match connect(s.port, cfg.clone()).and_then(|mut c| request(&mut c, "/health")) {
            Ok((200, _)) => break,
            r if Instant::now() > deadline => panic!("{r:?}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn get_with_token(port: u16, path: &str, token: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn reload_rereads_the_bearer_key() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    sh(
        d,
        r#"
for k in a b; do
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $k.key 2>/dev/null
  openssl pkey -in $k.key -pubout -out $k.pub
done
cp a.pub live.pub
"#,
    );
    let token = |key: &str| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({"exp": now + 300, "access": [
            {"type": "artifact-repository", "name": "repo", "actions": ["pull"]}]});
        let k =
            jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(d.join(key)).unwrap()).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &k,
        )
        .unwrap()
    };
    let (ta, tb) = (token("a.key"), token("b.key"));
    let conf = d.join("chartroom.yaml");
    std::fs::write(
        &conf,
        format!(
            "bearerauth: true\nauthrealm: https://auth.example.org/token\nauthservice: charts\nauthcertpath: {}\n",
            d.join("live.pub").display()
        ),
    )
    .unwrap();
    let notify = Notify::new(d);
    let s = start(
        d,
        &["--config", conf.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify.path.to_str().unwrap())],
    );
    notify.wait_for("READY=1");
    assert_eq!(get_with_token(s.port, "/index.yaml", &ta), 200);
    assert_eq!(get_with_token(s.port, "/index.yaml", &tb), 401);
    std::fs::copy(d.join("b.pub"), d.join("live.pub")).unwrap();
    hup(&s);
    let m = notify.wait_for("READY=1");
    assert!(!m.contains("reload failed"), "{m}");
    assert_eq!(get_with_token(s.port, "/index.yaml", &ta), 401);
    assert_eq!(get_with_token(s.port, "/index.yaml", &tb), 200);
    // A broken key file keeps the running key.
    std::fs::write(d.join("live.pub"), "junk").unwrap();
    hup(&s);
    let m = notify.wait_for("reload failed");
    assert!(m.contains("authcertpath"), "{m}");
    assert_eq!(get_with_token(s.port, "/index.yaml", &tb), 200);
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    let s = start(
        d,
        &[
            "--tls-cert",
            &p(d, "ec.pem"),
            "--tls-key",
            &p(d, "ec.key"),
            "--read-timeout",
            "1",
        ],
        &[],
    );
    // Connects, sends half a ClientHello record header, then nothing.
    let mut silent = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    silent.write_all(&[0x16, 0x03, 0x01]).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    let r = silent.read(&mut buf);
    assert!(
        matches!(r, Ok(0))
            || matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    // Others were served meanwhile and still are.
    let cfg = client_config(&d.join("ca.pem"), None);
    let mut c = connect(s.port, cfg).unwrap();
    assert_eq!(request(&mut c, "/health").unwrap().0, 200);
}

#[test]
fn a_reload_cannot_turn_https_or_client_certificates_off() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    pki(d);
    let conf = d.join("chartroom.yaml");
    let tls = format!(
        "tls:\n  cert: {}\n  key: {}\n",
        p(d, "ec.pem"),
        p(d, "ec.key")
    );
    let mtls = format!("{tls}  cacert: {}\n", p(d, "ca.pem"));
    std::fs::write(&conf, &mtls).unwrap();
    let notify = Notify::new(d);
    let s = start(
        d,
        &["--config", conf.to_str().unwrap()],
        &[("NOTIFY_SOCKET", notify.path.to_str().unwrap())],
    );
    notify.wait_for("READY=1");
    let ca = d.join("ca.pem");
    let good = client_config(&ca, Some((&d.join("client.pem"), &d.join("client.key"))));
    let anonymous = client_config(&ca, None);
    for (what, text) in [("without cacert", tls.as_str()), ("without TLS", "")] {
        std::fs::write(&conf, text).unwrap();
        hup(&s);
        notify.wait_for("READY=1");
        // Still HTTPS, still asking for a client certificate.
        let mut c = connect(s.port, good.clone()).unwrap();
        assert_eq!(request(&mut c, "/health").unwrap().0, 200, "{what}");
        let r = connect(s.port, anonymous.clone()).and_then(|mut c| request(&mut c, "/health"));
        assert!(r.is_err(), "{what}: {r:?}");
    }
}
