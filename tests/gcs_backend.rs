//! The Google Cloud Storage backend against a small local server the tests start: the token
//! exchange (fake-gcs-server ignores auth, so the JWT assertion is checked here, with the test
//! key), renewal before expiry, a new token after a 401, the metadata server, the cost of a
//! listing in requests, a download that does not match its `X-Goog-Hash`, and hostile
//! listings (a huge page, odd names, a repeating `pageToken`). The contract suite on
//! fake-gcs-server is in `tests/storage_contract.rs`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chartroom::storage::google::{GoogleSettings, GoogleStorage, Source};
use chartroom::storage::{Storage, StorageError};
use futures_util::StreamExt;
use md5::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PRIVATE_KEY: &str = include_str!("gcs/keys/test-sa.pem");
const PUBLIC_KEY: &str = include_str!("gcs/keys/test-sa.pub");
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";

struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn json(status: u16, v: serde_json::Value) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: v.to_string().into_bytes(),
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1; stops when dropped.
struct Local {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Local {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Local {
    async fn start(handler: Handler) -> Local {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = l.accept().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 65536];
                    let head_end = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.split("\r\n");
                    let mut first = lines.next().unwrap_or("").split(' ');
                    let method = first.next().unwrap_or("").to_string();
                    let target = first.next().unwrap_or("").to_string();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = buf[head_end + 4..].to_vec();
                    while body.len() < len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    let (path, qs) = target.split_once('?').unwrap_or((&target, ""));
                    let query = qs
                        .split('&')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').unwrap_or((p, ""));
                            (decode(k), decode(v))
                        })
                        .collect();
                    let r = handler(Request {
                        method,
                        path: path.to_string(),
                        query,
                        headers,
                        body,
                    });
                    let mut out = format!(
                        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                        r.status,
                        r.body.len()
                    );
                    for (k, v) in &r.headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = sock.write_all(out.as_bytes()).await;
                    let _ = sock.write_all(&r.body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Local { port, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// What the fake service saw and how it behaves.
#[derive(Default)]
struct State {
    /// Tokens issued, in order ("tok-1", ...).
    issued: Vec<String>,
    /// Tokens the storage API refuses with 401.
    revoked: Vec<String>,
    /// Claims of every assertion received (checked already).
    claims: Vec<serde_json::Value>,
    /// `expires_in` of issued tokens.
    lifetime: u64,
    /// Bearer tokens of storage requests, in order.
    bearers: Vec<String>,
    list_requests: u64,
    /// Object names listed (one listing, paged by `maxResults`).
    objects: Vec<String>,
    /// Every page answers with this token (a broken server).
    repeat_token: Option<String>,
    /// The body of every media download, and the MD5 its X-Goog-Hash names.
    media: (Vec<u8>, Vec<u8>),
    token_error: Option<(u16, String)>,
    /// Every listing answers all names in one page, whatever `maxResults` says.
    one_page: bool,
}

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

/// The token endpoint and the storage API in one server.
fn service(state: Arc<Mutex<State>>, token_uri: Arc<Mutex<String>>) -> Handler {
    Arc::new(move |r: Request| {
        let mut st = state.lock().unwrap();
        if r.path == "/token" {
            if let Some((s, body)) = st.token_error.clone() {
                return json(s, serde_json::json!({"error": body}));
            }
            let form: HashMap<String, String> = String::from_utf8_lossy(&r.body)
                .split('&')
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (decode(k), decode(v)))
                .collect();
            assert_eq!(
                form.get("grant_type").map(String::as_str),
                Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
            );
            let jwt = form.get("assertion").expect("assertion");
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            let aud = token_uri.lock().unwrap().clone();
            v.set_audience(&[aud.as_str()]);
            v.set_required_spec_claims(&["exp", "aud", "iss"]);
            let data = match jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v) {
                Ok(d) => d,
                Err(e) => return json(400, serde_json::json!({"error": format!("bad jwt: {e}")})),
            };
            assert_eq!(data.header.kid.as_deref(), Some("key-1"));
            st.claims.push(data.claims);
        } else if r.path == "/computeMetadata/v1/instance/service-accounts/default/token" {
            if r.headers.get("metadata-flavor").map(String::as_str) != Some("Google") {
                return json(403, serde_json::json!({"error": "no Metadata-Flavor"}));
            }
        } else {
            return storage(&mut st, r);
        }
        let t = format!("tok-{}", st.issued.len() + 1);
        st.issued.push(t.clone());
        let lifetime = if st.lifetime == 0 { 3600 } else { st.lifetime };
        json(
            200,
            serde_json::json!({"access_token": t, "expires_in": lifetime, "token_type": "Bearer"}),
        )
    })
}

fn storage(st: &mut State, r: Request) -> Response {
    let bearer = r
        .headers
        .get("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    st.bearers.push(bearer.clone());
    if !st.issued.contains(&bearer) || st.revoked.contains(&bearer) {
        return json(
            401,
            serde_json::json!({"error": {"code": 401, "message": "Invalid Credentials"}}),
        );
    }
    if r.method == "GET" && r.path == "/storage/v1/b/charts/o" {
        st.list_requests += 1;
        let mut max: usize = r
            .query
            .get("maxResults")
            .and_then(|v| v.parse().ok())
            .unwrap();
        if st.one_page {
            max = usize::MAX / 2;
        }
        let start: usize = r
            .query
            .get("pageToken")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let prefix = r.query.get("prefix").cloned().unwrap_or_default();
        let items: Vec<_> = st
            .objects
            .iter()
            .skip(start)
            .take(max)
            .map(|n| {
                serde_json::json!({"name": format!("{prefix}{n}"), "size": "1",
                    "updated": "2024-01-01T00:00:00.5Z", "generation": "1"})
            })
            .collect();
        let next = match &st.repeat_token {
            Some(t) => Some(t.clone()),
            None => (start + max < st.objects.len()).then(|| (start + max).to_string()),
        };
        return json(
            200,
            serde_json::json!({"items": items, "nextPageToken": next}),
        );
    }
    if r.method == "GET" && r.query.get("alt").map(String::as_str) == Some("media") {
        let (body, md5) = st.media.clone();
        return Response {
            status: 200,
            headers: vec![(
                "x-goog-hash".into(),
                format!("crc32c=AAAAAA==,md5={}", b64(&md5)),
            )],
            body,
        };
    }
    json(
        404,
        serde_json::json!({"error": {"code": 404, "message": "No such object"}}),
    )
}

struct Fixture {
    state: Arc<Mutex<State>>,
    server: Local,
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn start() -> Fixture {
        let state = Arc::new(Mutex::new(State::default()));
        let uri = Arc::new(Mutex::new(String::new()));
        let server = Local::start(service(state.clone(), uri.clone())).await;
        *uri.lock().unwrap() = format!("{}/token", server.url());
        Fixture {
            state,
            server,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a service-account file naming `email`; returns its path.
    fn key_file(&self, email: &str) -> std::path::PathBuf {
        let p = self.dir.path().join("sa.json");
        let v = serde_json::json!({
            "type": "service_account",
            "project_id": "test",
            "private_key_id": "key-1",
            "private_key": PRIVATE_KEY,
            "client_email": email,
            "token_uri": format!("{}/token", self.server.url()),
        });
        std::fs::write(&p, v.to_string()).unwrap();
        p
    }

    fn storage(&self, source: Source) -> GoogleStorage {
        let mut s = GoogleSettings::new("charts", source);
        s.endpoint = self.server.url();
        s.attempts = 1;
        GoogleStorage::new(s).unwrap()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

#[tokio::test]
async fn token_exchange_against_a_local_token_endpoint() {
    let f = Fixture::start().await;
    let sa = f.key_file("charts@test.iam.gserviceaccount.com");
    let s = f.storage(Source::ServiceAccount(sa));
    s.list("").await.unwrap();
    s.list("").await.unwrap();
    assert_eq!(s.token_fetches(), 1, "a valid token is kept");
    let st = f.st();
    assert_eq!(st.bearers, ["tok-1", "tok-1"]);
    let c = &st.claims[0];
    assert_eq!(c["iss"], "charts@test.iam.gserviceaccount.com");
    assert_eq!(c["scope"], SCOPE);
    assert_eq!(c["aud"], format!("{}/token", f.server.url()));
    let (iat, exp) = (c["iat"].as_u64().unwrap(), c["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, 3600);
    let now = chartroom::timefmt::now_ns() as u64 / 1_000_000_000;
    assert!(iat.abs_diff(now) < 60, "iat {iat}, now {now}");
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    let f = Fixture::start().await;
    f.st().lifetime = 2;
    let s = f.storage(Source::ServiceAccount(f.key_file("a@b")));
    s.list("").await.unwrap();
    // Renewed when half a 2 s lifetime is left, before the service would refuse it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.list("").await.unwrap();
    assert_eq!(s.token_fetches(), 2);
    assert_eq!(f.st().bearers, ["tok-1", "tok-2"]);
}

#[tokio::test]
async fn a_refused_token_is_fetched_again_from_a_rotated_file() {
    let f = Fixture::start().await;
    let sa = f.key_file("old@test");
    let s = f.storage(Source::ServiceAccount(sa));
    s.list("").await.unwrap();
    // The token is revoked and the key file rotated: the 401 brings a new token, made with
    // the file as it is now.
    f.st().revoked.push("tok-1".into());
    f.key_file("new@test");
    s.list("").await.unwrap();
    {
        let st = f.st();
        assert_eq!(st.bearers, ["tok-1", "tok-1", "tok-2"]);
        assert_eq!(st.claims[1]["iss"], "new@test");
    }
    // A service that refuses every token: one more try, then an error naming the source.
    f.st().revoked.push("tok-2".into());
    f.st().revoked.push("tok-3".into());
    let e = s.list("").await.err().unwrap();
    let msg = e.to_string();
    assert!(matches!(e, StorageError::Unavailable(_)), "{msg}");
    assert!(
        msg.contains("sa.json") && msg.contains("Invalid Credentials"),
        "{msg}"
    );
    assert_eq!(s.token_fetches(), 3);
}

#[tokio::test]
async fn bad_credentials_are_named() {
    let f = Fixture::start().await;
    f.st().token_error = Some((400, "invalid_grant".into()));
    let s = f.storage(Source::ServiceAccount(f.key_file("a@b")));
    let e = s.check().await.err().unwrap().to_string();
    assert!(e.contains("sa.json") && e.contains("invalid_grant"), "{e}");
    assert!(s.problem().is_some_and(|p| p.contains("invalid_grant")));
    // A file that is no service-account key is refused at start.
    let bad = f.dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"client_email":"a@b","private_key":"nope"}"#).unwrap();
    let mut st = GoogleSettings::new("charts", Source::ServiceAccount(bad));
    st.endpoint = f.server.url();
    let e = GoogleStorage::new(st).err().unwrap().to_string();
    assert!(e.contains("bad.json") && e.contains("RSA"), "{e}");
}

#[tokio::test]
async fn the_metadata_server_gives_tokens() {
    let f = Fixture::start().await;
    let s = f.storage(Source::Metadata(f.server.url()));
    s.list("").await.unwrap();
    assert_eq!(f.st().bearers, ["tok-1"]);
    assert!(f.st().claims.is_empty(), "no JWT on that path");
}

#[tokio::test]
async fn a_listing_costs_one_request_per_page() {
    let f = Fixture::start().await;
    f.st().objects = (0..2500).map(|i| format!("c-{i:05}.tgz")).collect();
    let s = f.storage(Source::Metadata(f.server.url()));
    let l = s.list("").await.unwrap();
    assert_eq!(l.len(), 2500);
    assert_eq!(f.st().list_requests, 3, "1,000 names a page");
    assert_eq!(s.stats().lists, 3);
    assert_eq!(l[0].modified_ns, 1_704_067_200_500_000_000);
}

#[tokio::test]
async fn a_download_that_does_not_match_its_hash_is_refused() {
    let f = Fixture::start().await;
    let good = b"chart bytes".to_vec();
    let md5 = md5::Md5::digest(&good).to_vec();
    f.st().media = (good.clone(), md5.clone());
    let s = f.storage(Source::Metadata(f.server.url()));
    assert_eq!(s.get("a.tgz").await.unwrap(), good);
    // Damaged on the way: the MD5 of X-Goog-Hash is not that of the bytes.
    f.st().media = (b"chart bytez".to_vec(), md5);
    let s = f.storage(Source::Metadata(f.server.url()));
    let e = s.get("a.tgz").await.err().unwrap().to_string();
    assert!(e.contains("does not match"), "{e}");
    let mut o = s.get_stream("a.tgz").await.unwrap();
    let mut last = None;
    while let Some(c) = o.stream.next().await {
        last = Some(c);
    }
    assert!(
        matches!(last, Some(Err(_))),
        "the stream ends with an error"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile listings.

#[tokio::test]
async fn hostile_a_repeating_page_token_ends_the_listing() {
    let f = Fixture::start().await;
    f.st().objects = (0..3).map(|i| format!("{i}.tgz")).collect();
    f.st().repeat_token = Some("again".into());
    let mut set = GoogleSettings::new("charts", Source::Metadata(f.server.url()));
    set.endpoint = f.server.url();
    set.page_size = 2;
    let s = GoogleStorage::new(set).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), s.list(""))
        .await
        .expect("the listing ends")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("repeats its pageToken"), "{e}");
    assert_eq!(f.st().list_requests, 2);
}

#[tokio::test]
async fn hostile_a_huge_page_and_odd_names() {
    let f = Fixture::start().await;
    // One page of 50,000 names (more than the 1,000 asked for), some of them odd: names in
    // deeper "directories" are skipped, the others kept as they are.
    let mut names: Vec<String> = (0..50_000).map(|i| format!("c-{i:05}.tgz")).collect();
    names.push("deeper/x.tgz".into());
    names.push("spaces and %2F and ?q=#frag.tgz".into());
    names.push("ünïcödé-€.tgz".into());
    f.st().objects = names;
    f.st().one_page = true;
    let mut set = GoogleSettings::new("charts", Source::Metadata(f.server.url()));
    set.endpoint = f.server.url();
    set.page_size = 1000;
    let s = GoogleStorage::new(set).unwrap();
    let l = s.list("").await.unwrap();
    assert_eq!(l.len(), 50_002);
    assert!(
        l.iter()
            .any(|o| o.name == "spaces and %2F and ?q=#frag.tgz")
    );
    assert!(l.iter().any(|o| o.name == "ünïcödé-€.tgz"));
    assert!(!l.iter().any(|o| o.name.contains('/')));
    assert_eq!(f.st().list_requests, 1);
}
