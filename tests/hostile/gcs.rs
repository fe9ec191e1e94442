//! A hostile Cloud Storage (a canned HTTP server on loopback) against the Google backend:
//! damaged listings, a service that answers 500 forever and one that never answers, and token
//! endpoints that never answer or answer garbage. (A huge listing page, odd names and a
//! repeating `pageToken` are in tests/gcs_backend.rs.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chartroom::storage::google::{GoogleSettings, GoogleStorage, Source};
use chartroom::storage::{Storage, StorageError};

/// A server answering every request with `answer(method, path_and_query)`; counts requests.
fn canned<F>(answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(&str, &str) -> (u16, Vec<u8>) + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { continue };
            let answer = answer.clone();
            let count = count.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(c.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or("").to_string();
                    let target = parts.next().unwrap_or("").to_string();
                    let mut len = 0usize;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = answer(&method, &target);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if c.write_all(head.as_bytes()).is_err() || c.write_all(&body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, n)
}

/// A port that accepts connections and never answers.
fn silent() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
    url
}

fn settings(endpoint: &str, source: Source) -> GoogleSettings {
    let mut s = GoogleSettings::new("charts", source);
    s.endpoint = endpoint.to_string();
    s.backoff = Duration::from_millis(10);
    s.timeout = Duration::from_millis(500);
    s.request_timeout = Duration::from_secs(2);
    s
}

fn storage(endpoint: &str) -> GoogleStorage {
    GoogleStorage::new(settings(endpoint, Source::Anonymous)).unwrap()
}

#[tokio::test]
async fn damaged_listings_are_errors_not_short_listings() {
    for bad in [
        r#"{"items":[{"name":"a.tgz","size":"1"}"#,
        "<html>proxy error</html>",
        "",
        r#"{"items":[{"name":"a.tgz","size":"x"}]}"#,
        r#"{"items":[{"size":"1"}]}"#,
        r#"{"items":"nope"}"#,
    ] {
        let (url, _) = canned(move |_, _| (200, bad.as_bytes().to_vec()));
        let e = storage(&url).list("").await.unwrap_err();
        assert!(matches!(e, StorageError::Io { .. }), "{bad:?}: {e}");
    }
}

#[tokio::test]
async fn a_service_answering_500_forever_fails_within_the_deadline() {
    let (url, n) = canned(|_, _| {
        (
            500,
            br#"{"error":{"code":500,"message":"backendError"}}"#.to_vec(),
        )
    });
    let s = storage(&url);
    let t = Instant::now();
    let e = s.put("a.tgz", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("backendError"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(n.load(Ordering::SeqCst), 3);
    assert!(s.problem().is_some());
}

#[tokio::test]
async fn a_service_that_never_answers_fails_within_the_deadline() {
    let mut set = settings(&silent(), Source::Anonymous);
    set.timeout = Duration::from_millis(300);
    set.attempts = 10;
    set.request_timeout = Duration::from_secs(1);
    let st = GoogleStorage::new(set).unwrap();
    let t = Instant::now();
    let e = st
        .put_if_absent("a-1.0.0.tgz", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let t = Instant::now();
    let e = st.list("").await.unwrap_err();
    assert!(
        matches!(&e, StorageError::Unavailable(m) if m.contains("not sent")),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_millis(500));
}

#[tokio::test]
async fn a_token_endpoint_that_never_answers_costs_one_deadline() {
    let (url, n) = canned(|_, _| (200, b"{}".to_vec()));
    let st = GoogleStorage::new(settings(&url, Source::Metadata(silent()))).unwrap();
    let t = Instant::now();
    let e = st.list("").await.unwrap_err().to_string();
    assert!(
        e.contains("no access token") && e.contains("metadata server"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(n.load(Ordering::SeqCst), 0, "nothing sent without a token");
}

#[tokio::test]
async fn token_endpoints_answering_garbage_are_named() {
    for (status, body) in [
        (200, "<html>captive portal</html>".to_string()),
        (200, r#"{"access_token":""}"#.to_string()),
        (
            200,
            format!(r#"{{"access_token":"{}","#, "t".repeat(1 << 20)),
        ),
        (500, "x".repeat(100_000)),
    ] {
        let (meta, _) = canned(move |_, _| (status, body.clone().into_bytes()));
        let (url, n) = canned(|_, _| (200, b"{}".to_vec()));
        let st = GoogleStorage::new(settings(&url, Source::Metadata(meta))).unwrap();
        let e = st.list("").await.unwrap_err().to_string();
        assert!(e.contains("no access token"), "{e}");
        assert!(
            e.len() < 2000,
            "the error quotes at most a little of the answer"
        );
        assert_eq!(n.load(Ordering::SeqCst), 0);
    }
}
