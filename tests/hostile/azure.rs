//! A hostile Blob service (a canned HTTP server on loopback) against the Azure backend: a huge
//! listing page with odd names, a listing that repeats its marker, damaged XML, a body that
//! does not match its Content-MD5, a service that answers 500 forever and one that never
//! answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chartroom::storage::azure::{AzureSettings, AzureStorage, Credential};
use chartroom::storage::{Secret, Storage, StorageError};
use futures_util::StreamExt;

/// A server answering every request with `answer(method, path_and_query)`: status, headers,
/// body. Counts requests.
fn canned<F>(answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(&str, &str) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/acct", l.local_addr().unwrap());
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
                    let (status, headers, body) = answer(&method, &target);
                    let mut head = format!("HTTP/1.1 {status} X\r\n");
                    for (k, v) in headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    let len = if method == "HEAD" { 0 } else { body.len() };
                    if !head.to_ascii_lowercase().contains("content-length") {
                        head.push_str(&format!("content-length: {len}\r\n"));
                    }
                    head.push_str("\r\n");
                    if c.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    if method != "HEAD" && c.write_all(&body).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, n)
}

fn storage(endpoint: &str) -> AzureStorage {
    let mut s = AzureSettings::new(
        "acct",
        "charts",
        Credential::SharedKey(Secret::Value("a2V5".into())),
    );
    s.endpoint = endpoint.to_string();
    s.backoff = Duration::from_millis(10);
    s.timeout = Duration::from_millis(500);
    s.request_timeout = Duration::from_secs(2);
    AzureStorage::new(s).unwrap()
}

fn blob_xml(name: &str, size: u64) -> String {
    format!(
        "<Blob><Name>{name}</Name><Properties>\
         <Last-Modified>Thu, 26 Nov 2026 10:12:23 GMT</Last-Modified>\
         <Content-Length>{size}</Content-Length></Properties></Blob>"
    )
}

#[tokio::test]
async fn a_huge_listing_page_with_odd_names() {
    let mut doc = String::from("<?xml version=\"1.0\"?><EnumerationResults><Blobs>");
    for i in 0..50_000u64 {
        doc.push_str(&blob_xml(
            &format!("ünï &amp; &lt;x&gt; \u{1f600} {i}.tgz"),
            i,
        ));
    }
    // Deeper names and control characters written as references are passed on, not fatal.
    doc.push_str(&blob_xml("sub/deeper.tgz", 1));
    doc.push_str(&blob_xml("ctl&#x1;char.tgz", 1));
    doc.push_str("</Blobs><NextMarker/></EnumerationResults>");
    let doc = Arc::new(doc);
    let d = doc.clone();
    let (url, n) = canned(move |_, _| (200, vec![], d.as_bytes().to_vec()));
    let list = storage(&url).list("").await.unwrap();
    assert_eq!(list.len(), 50_001, "deeper names are left out");
    assert!(
        list.iter()
            .any(|o| o.name == "ünï & <x> \u{1f600} 49999.tgz")
    );
    assert!(list.iter().any(|o| o.name == "ctl\u{1}char.tgz"));
    assert_eq!(n.load(Ordering::SeqCst), 1, "one request for one page");
}

#[tokio::test]
async fn a_listing_that_repeats_its_marker_ends() {
    let (url, n) = canned(|_, _| {
        let doc = format!(
            "<EnumerationResults><Blobs>{}</Blobs><NextMarker>same</NextMarker>\
             </EnumerationResults>",
            blob_xml("a.tgz", 1)
        );
        (200, vec![], doc.into_bytes())
    });
    let e = storage(&url).list("").await.unwrap_err().to_string();
    assert!(e.contains("repeats its marker"), "{e}");
    assert_eq!(n.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn damaged_listings_are_errors_not_short_listings() {
    for bad in [
        "<EnumerationResults><Blobs><Blob><Name>a</Name></Blob></Blobs>",
        "<html>proxy error</html>",
        "",
        "<EnumerationResults><Blobs><Blob><Name>a</Name><Properties>\
         <Content-Length>x</Content-Length></Properties></Blob></Blobs></EnumerationResults>",
    ] {
        let (url, _) = canned(move |_, _| (200, vec![], bad.as_bytes().to_vec()));
        let e = storage(&url).list("").await.unwrap_err();
        assert!(matches!(e, StorageError::Io { .. }), "{bad:?}: {e}");
    }
}

#[tokio::test]
async fn a_body_that_does_not_match_its_md5_is_never_taken_for_whole() {
    // Content-MD5 of "right", body "wrong".
    let md5 = "fE8pQHiTwzSmy3qHvwRcDQ==";
    let (url, n) = canned(move |_, _| {
        (
            200,
            vec![("content-md5".into(), md5.into())],
            b"wrong".to_vec(),
        )
    });
    let s = storage(&url);
    let e = s.get("a.tgz").await.unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
    assert_eq!(
        n.load(Ordering::SeqCst),
        3,
        "tried again, up to the attempts"
    );
    let mut st = s.get_stream("a.tgz").await.unwrap().stream;
    let mut failed = false;
    while let Some(chunk) = st.next().await {
        if chunk.is_err() {
            failed = true;
        }
    }
    assert!(failed, "the stream ends with an error");
}

#[tokio::test]
async fn a_service_answering_500_forever_fails_within_the_deadline() {
    let (url, n) = canned(|_, _| {
        (
            500,
            vec![],
            b"<Error><Code>InternalError</Code><Message>boom</Message></Error>".to_vec(),
        )
    });
    let s = storage(&url);
    let t = Instant::now();
    let e = s.put("a.tgz", Bytes::from_static(b"x")).await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains("InternalError"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(n.load(Ordering::SeqCst), 3);
    assert!(s.problem().is_some());
}

#[tokio::test]
async fn a_service_that_never_answers_fails_within_the_deadline() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/acct", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
    let mut s = AzureSettings::new(
        "acct",
        "charts",
        Credential::SharedKey(Secret::Value("a2V5".into())),
    );
    s.endpoint = url;
    s.timeout = Duration::from_millis(300);
    s.backoff = Duration::from_millis(10);
    s.attempts = 10;
    s.request_timeout = Duration::from_secs(1);
    let st = AzureStorage::new(s).unwrap();
    let t = Instant::now();
    let e = st
        .put_if_absent("a-1.0.0.tgz", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // Known down now: the next call is refused at once.
    let t = Instant::now();
    let e = st.list("").await.unwrap_err();
    assert!(
        matches!(&e, StorageError::Unavailable(m) if m.contains("not sent")),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_millis(500));
}
