//! A hostile etcd gateway (a canned HTTP server on loopback) against the etcd backend: a
//! listing that repeats its page forever, a page with keys outside the range, non-UTF-8 keys
//! and bad metadata, damaged JSON, values that do not match their checksum, a gateway that
//! answers 500 forever.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use chartroom::storage::etcd::{EtcdSettings, EtcdStorage};
use chartroom::storage::{Storage, StorageError};
use serde_json::{Value, json};

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A gateway answering every request with `answer(path, request body)`: status and body.
/// Counts requests.
fn canned<F>(answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(&str, &Value) -> (u16, Vec<u8>) + Send + Sync + 'static,
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
                    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
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
                    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (status, out) = answer(&target, &req);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        out.len()
                    );
                    if c.write_all(head.as_bytes()).is_err() || c.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, n)
}

fn storage(url: &str) -> EtcdStorage {
    let mut s = EtcdSettings::new(&[url]);
    s.prefix = "p".into();
    s.attempts = 3;
    s.backoff = Duration::from_millis(10);
    s.timeout = Duration::from_secs(2);
    s.request_timeout = Duration::from_secs(5);
    EtcdStorage::new(s).unwrap()
}

fn meta(data: &[u8]) -> String {
    use sha2::Digest;
    json!({"size": data.len(), "mtime_ns": 1, "sha256": hex::encode(sha2::Sha256::digest(data))})
        .to_string()
}

#[tokio::test]
async fn a_listing_that_repeats_its_page_ends() {
    let key = b"/p/.chartroom-meta/a.tgz";
    let m = meta(b"a");
    let (url, n) = canned(move |_, _| {
        let body = json!({"header":{"revision":"5"},"more":true,
            "kvs":[{"key": b64(key), "value": b64(m.as_bytes())}]});
        (200, body.to_string().into_bytes())
    });
    let e = storage(&url).list("").await.unwrap_err();
    assert!(matches!(e, StorageError::Io { .. }), "{e}");
    assert!(
        n.load(Ordering::SeqCst) <= 2,
        "{} requests",
        n.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn odd_keys_and_bad_metadata_are_skipped() {
    let good = meta(b"a");
    let (url, _) = canned(move |_, _| {
        let kv = |k: &[u8], v: &[u8]| json!({"key": b64(k), "value": b64(v)});
        let body = json!({"header":{"revision":"5"},"kvs":[
            kv(b"/p/.chartroom-meta/\xff\xfe.tgz", good.as_bytes()),
            kv(b"/p/.chartroom-meta/deep/x.tgz", good.as_bytes()),
            kv(b"/p/.chartroom-meta/bad.tgz", b"{\"size\":\"no\"}"),
            kv(b"/p/.chartroom-meta/..", good.as_bytes()),
            kv(b"/p/.chartroom-meta/ok.tgz", good.as_bytes()),
        ]});
        (200, body.to_string().into_bytes())
    });
    let listed = storage(&url).list("").await.unwrap();
    let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["ok.tgz"]);
}

#[tokio::test]
async fn damaged_answers_are_errors() {
    for body in [
        &b"{\"kvs\":[{\"key\":\"!!\"}]}"[..],
        b"not json",
        b"{\"responses\":[{\"nothing\":{}}]}",
        b"[]",
    ] {
        let body = body.to_vec();
        let (url, _) = canned(move |_, _| (200, body.clone()));
        let st = storage(&url);
        // A JSON object with none of a range's fields is an empty range.
        match st.list("").await {
            Err(StorageError::Io { .. }) => {}
            Ok(l) => assert!(l.is_empty()),
            Err(e) => panic!("{e}"),
        }
        assert!(st.get("a.tgz").await.is_err());
        assert!(st.put("a.tgz", Bytes::from_static(b"a")).await.is_err());
        assert!(st.delete("a.tgz").await.is_err());
    }
}

#[tokio::test]
async fn values_that_do_not_match_their_checksum_are_refused() {
    let m = meta(b"a");
    let (url, n) = canned(move |_, _| {
        let body = json!({"succeeded": true, "responses":[
            {"response_range":{"kvs":[{"key": b64(b"/p/a.tgz"), "value": b64(b"b")}]}},
            {"response_range":{"kvs":[{"key": b64(b"/p/.chartroom-meta/a.tgz"), "value": b64(m.as_bytes())}]}},
        ]});
        (200, body.to_string().into_bytes())
    });
    let e = storage(&url).get("a.tgz").await.unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert_eq!(n.load(Ordering::SeqCst), 3, "tried as often as allowed");
}

#[tokio::test]
async fn a_gateway_failing_forever_is_unavailable_after_the_tries() {
    let (url, n) = canned(|_, _| (500, b"{\"error\":\"boom\",\"code\":2}".to_vec()));
    let st = storage(&url);
    let e = st.check().await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("boom"), "{e}");
    assert_eq!(n.load(Ordering::SeqCst), 3);
    assert!(st.problem().is_some());
}
