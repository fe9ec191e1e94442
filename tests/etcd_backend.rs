//! The etcd backend against a real etcd (`tests/etcd/harness.rs`): create-if-absent races
//! with exactly one winner, one range request per listing page, modification times kept
//! across an etcd restart (and per object, not per listed prefix as ChartMuseum's backend
//! gave them), objects above the request limit refused clearly (by chartroom, and by etcd),
//! endpoints tried in order, an object deleted directly in etcd, etcd frozen (SIGSTOP):
//! 503-class errors within the deadline, cached reads, recovery; and TLS with client
//! certificates from a throw-away CA.

#[path = "etcd/harness.rs"]
mod etcd_harness;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use chartroom::storage::etcd::EtcdStorage;
use chartroom::storage::{Storage, StorageError};
use etcd_harness::EtcdHarness;

fn unique(p: &str) -> String {
    format!("{p}-{:08x}", rand::random::<u32>())
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A raw gateway call, as another client of etcd would make it.
async fn gateway(h: &EtcdHarness, op: &str, body: serde_json::Value) -> serde_json::Value {
    let text = reqwest::Client::new()
        .post(format!("{}/v3/{op}", h.endpoint()))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_against_etcd() {
    if !etcd_harness::available() {
        return;
    }
    let mut h = EtcdHarness::start().await;
    eprintln!("etcd started in {:.1} s", h.start_time.as_secs_f64());
    create_if_absent_has_one_winner(&h).await;
    one_range_request_per_page(&h).await;
    oversize_objects_are_refused_clearly(&h).await;
    endpoints_are_tried_in_order(&h).await;
    a_delete_made_in_etcd_is_seen(&h).await;
    times_are_kept_per_object_and_across_restarts(&mut h).await;
    a_frozen_etcd_is_answered_within_the_deadline(&h).await;
}

async fn create_if_absent_has_one_winner(h: &EtcdHarness) {
    let prefix = unique("race");
    // Two instances on one prefix, racing for the same names.
    let a = Arc::new(h.storage(&prefix));
    let b = Arc::new(h.storage(&prefix));
    for i in 0..20 {
        let name = format!("c-{i}.tgz");
        let (ra, rb) = tokio::join!(
            a.put_if_absent(&name, Bytes::from(format!("a{i}"))),
            b.put_if_absent(&name, Bytes::from(format!("b{i}")))
        );
        let winner = match (&ra, &rb) {
            (Ok(_), Err(StorageError::AlreadyExists(_))) => format!("a{i}"),
            (Err(StorageError::AlreadyExists(_)), Ok(_)) => format!("b{i}"),
            other => panic!("{name}: not exactly one winner: {other:?}"),
        };
        assert_eq!(a.get(&name).await.unwrap(), winner.as_bytes());
        assert_eq!(b.get(&name).await.unwrap(), winner.as_bytes());
    }
    assert_eq!(a.list("").await.unwrap().len(), 20);
}

async fn one_range_request_per_page(h: &EtcdHarness) {
    let mut s = h.settings(&unique("pages"));
    s.page_size = 4;
    let st = EtcdStorage::new(s).unwrap();
    for i in 0..10 {
        st.put(&format!("c-{i}.tgz"), Bytes::from(vec![b'x'; 1000]))
            .await
            .unwrap();
    }
    // Objects one level down are not part of the root listing.
    st.put("tenant/d.tgz", Bytes::from_static(b"d"))
        .await
        .unwrap();
    let before = st.stats();
    let listed = st.list("").await.unwrap();
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|o| o.size == 1000));
    let after = st.stats();
    // 11 metadata keys, 4 a page: 3 requests; no object read.
    assert_eq!(after.lists - before.lists, 3);
    assert_eq!(after.gets, before.gets);
    let before = st.stats();
    assert_eq!(st.list("tenant").await.unwrap().len(), 1);
    assert_eq!(st.stats().lists - before.lists, 1);
}

async fn oversize_objects_are_refused_clearly(h: &EtcdHarness) {
    // chartroom's own check, at etcd's default limit: nothing is sent.
    let mut s = h.settings(&unique("big"));
    s.max_request_bytes = chartroom::storage::etcd::MAX_REQUEST_BYTES;
    let st = EtcdStorage::new(s).unwrap();
    let e = st
        .put("big-1.0.0.tgz", Bytes::from(vec![7u8; 1_600_000]))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StorageError::TooLarge(_)), "{msg}");
    assert!(msg.contains("storage.etcd.maxrequestbytes"), "{msg}");
    assert_eq!(st.stats().puts, 0);
    // Just under: stored.
    st.put("fits-1.0.0.tgz", Bytes::from(vec![7u8; 1_500_000]))
        .await
        .unwrap();
    // etcd's own refusal (a limit set above the server's): named, not retried.
    let mut s = h.settings(&unique("big"));
    s.max_request_bytes = 64 << 20;
    s.attempts = 3;
    let st = EtcdStorage::new(s).unwrap();
    let e = st
        .put(
            "bigger-1.0.0.tgz",
            Bytes::from(vec![7u8; etcd_harness::MAX_REQUEST_BYTES as usize + 1000]),
        )
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StorageError::TooLarge(_)), "{msg}");
    assert!(msg.contains("too large"), "{msg}");
    assert_eq!(st.stats().retries, 0, "{msg}");
    assert!(st.list("").await.unwrap().is_empty());
}

async fn endpoints_are_tried_in_order(h: &EtcdHarness) {
    let closed = etcd_harness::pick_port();
    let mut s = h.settings(&unique("endpoints"));
    s.endpoints = vec![format!("http://127.0.0.1:{closed}"), h.endpoint()];
    s.attempts = 1;
    let st = EtcdStorage::new(s).unwrap();
    st.put("a.tgz", Bytes::from_static(b"a")).await.unwrap();
    assert_eq!(st.get("a.tgz").await.unwrap(), &b"a"[..]);
    assert!(st.problem().is_none());
    // Only the closed endpoint: unavailable, named.
    let mut s = h.settings(&unique("endpoints"));
    s.endpoints = vec![format!("http://127.0.0.1:{closed}")];
    s.attempts = 1;
    let e = EtcdStorage::new(s).unwrap().check().await.unwrap_err();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(e.to_string().contains(&closed.to_string()), "{e}");
}

async fn a_delete_made_in_etcd_is_seen(h: &EtcdHarness) {
    let prefix = unique("direct");
    let st = h.storage(&prefix);
    st.put("a-1.0.0.tgz", Bytes::from_static(b"a"))
        .await
        .unwrap();
    st.put("b-1.0.0.tgz", Bytes::from_static(b"b"))
        .await
        .unwrap();
    // Another client deletes both keys of a-1.0.0.tgz.
    let base = st.base().to_string();
    for key in [
        format!("{base}/a-1.0.0.tgz"),
        format!("{base}/.chartroom-meta/a-1.0.0.tgz"),
    ] {
        let r = gateway(
            h,
            "kv/deleterange",
            serde_json::json!({"key": b64(key.as_bytes())}),
        )
        .await;
        assert_eq!(r["deleted"], "1", "{r}");
    }
    let names: Vec<String> = st
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["b-1.0.0.tgz"]);
    assert!(matches!(
        st.get("a-1.0.0.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    assert!(matches!(
        st.delete("a-1.0.0.tgz").await,
        Err(StorageError::NotFound(_))
    ));
    // Bytes changed behind chartroom's back do not pass the checksum.
    let r = gateway(
        h,
        "kv/put",
        serde_json::json!({"key": b64(format!("{base}/b-1.0.0.tgz").as_bytes()), "value": b64(b"B")}),
    )
    .await;
    assert!(r.get("header").is_some(), "{r}");
    let mut s = h.settings(&prefix);
    s.attempts = 1;
    let e = EtcdStorage::new(s)
        .unwrap()
        .get("b-1.0.0.tgz")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
}

async fn times_are_kept_per_object_and_across_restarts(h: &mut EtcdHarness) {
    let prefix = unique("times");
    let st = h.storage(&prefix);
    let t0 = chartroom::timefmt::now_ns();
    let a = st
        .put("t/a-1.0.0.tgz", Bytes::from_static(b"a"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = st
        .put("t/b-1.0.0.tgz", Bytes::from_static(b"bb"))
        .await
        .unwrap();
    let t1 = chartroom::timefmt::now_ns();
    // Times of the writes, to the nanosecond, each its own (ChartMuseum gave every object
    // of a listing the listed prefix's time, or the key's revision as seconds since 1970).
    assert!(t0 <= a.modified_ns && a.modified_ns < b.modified_ns && b.modified_ns <= t1);
    assert!(b.modified_ns - a.modified_ns >= 1_000_000_000);
    let listed = st.list("t").await.unwrap();
    assert_eq!(listed, vec![a.clone(), b.clone()]);
    assert_eq!(st.stat("t/a-1.0.0.tgz").await.unwrap(), a);
    // Across an etcd restart and a new instance: the same times.
    h.stop_server();
    h.start_server().await;
    let st = h.storage(&prefix);
    assert_eq!(st.list("t").await.unwrap(), vec![a.clone(), b]);
    // A replacement gets a new time.
    let a2 = st
        .put("t/a-1.0.0.tgz", Bytes::from_static(b"A"))
        .await
        .unwrap();
    assert!(a2.modified_ns > a.modified_ns);
}

async fn a_frozen_etcd_is_answered_within_the_deadline(h: &EtcdHarness) {
    let mut s = h.settings(&unique("frozen"));
    s.timeout = Duration::from_secs(1);
    s.request_timeout = Duration::from_secs(3);
    s.backoff = Duration::from_millis(100);
    let st = EtcdStorage::new(s).unwrap();
    st.put("a-1.0.0.tgz", Bytes::from_static(b"a"))
        .await
        .unwrap();
    assert_eq!(st.get("a-1.0.0.tgz").await.unwrap(), &b"a"[..]);
    h.signal(libc::SIGSTOP);
    let t = Instant::now();
    let e = st
        .put("b-1.0.0.tgz", Bytes::from_static(b"b"))
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
    assert!(took < Duration::from_secs(5), "{took:?}: {e}");
    assert!(st.problem().is_some());
    // Reads served from the cache meanwhile; the next write fails at once.
    assert_eq!(st.get("a-1.0.0.tgz").await.unwrap(), &b"a"[..]);
    let t = Instant::now();
    assert!(st.put("c.tgz", Bytes::from_static(b"c")).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(1));
    h.signal(libc::SIGCONT);
    // Recovery without a restart: a probe goes out after the pause, then all is well.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match st.put("b-1.0.0.tgz", Bytes::from_static(b"b")).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    }
    assert!(st.problem().is_none());
    assert_eq!(st.list("").await.unwrap().len(), 2);
}

/// An https endpoint requiring client certificates from a throw-away CA: works with the CA
/// and a client pair, fails (named) without the client pair or without the CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_over_tls_with_client_certificates() {
    if !etcd_harness::available() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let tls = etcd_harness::make_tls(certs.path());
    let h = EtcdHarness::start_tls(tls).await;
    let prefix = unique("tls");
    let st = h.storage(&prefix);
    st.put_if_absent("a-1.0.0.tgz", Bytes::from_static(b"a"))
        .await
        .unwrap();
    assert_eq!(st.get("a-1.0.0.tgz").await.unwrap(), &b"a"[..]);
    let mut s = h.settings(&prefix);
    s.certfile.clear();
    s.keyfile.clear();
    s.attempts = 1;
    let e = EtcdStorage::new(s).unwrap().check().await.unwrap_err();
    assert!(!matches!(e, StorageError::NotFound(_)), "{e}");
    let mut s = h.settings(&prefix);
    s.cafile.clear();
    s.attempts = 1;
    let e = EtcdStorage::new(s).unwrap().check().await.unwrap_err();
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    // A key file that is not one is named at start.
    let mut s = h.settings(&prefix);
    s.keyfile = s.cafile.clone();
    let e = EtcdStorage::new(s).err().unwrap();
    assert!(e.to_string().contains("storage.etcd.certfile"), "{e}");
}

fn etcd_config(extra: &[&str]) -> Result<chartroom::config::Config, String> {
    let mut args: Vec<String> = vec!["--storage".into(), "etcd".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args = chartroom::config::parse_args(&args).map_err(|e| e.to_string())?;
    chartroom::config::load(&args, &|_| None, None).map_err(|e| e.to_string())
}

/// ChartMuseum's keys and defaults: endpoint `http://localhost:2379`, comma-separated
/// endpoints, certificate and key together; the chartroom-only limits.
#[test]
fn etcd_configuration() {
    use chartroom::config::StorageConfig;
    let cfg = etcd_config(&[]).unwrap();
    let StorageConfig::Etcd {
        endpoints,
        prefix,
        max_request_bytes,
        retries,
        ..
    } = &cfg.storage
    else {
        panic!("{:?}", cfg.storage)
    };
    assert_eq!(endpoints, &["http://localhost:2379"]);
    assert_eq!(prefix, "");
    assert_eq!(
        *max_request_bytes,
        chartroom::storage::etcd::MAX_REQUEST_BYTES
    );
    assert_eq!(*retries, 2);
    let st = EtcdStorage::from_config(&cfg.storage).unwrap();
    assert_eq!(st.base(), "/chart_backend_bucket");
    let cfg = etcd_config(&[
        "--storage-etcd-endpoint",
        "http://127.0.0.1:1, http://127.0.0.1:2,",
        "--storage-etcd-prefix",
        "/chart_backend_bucket/",
    ])
    .unwrap();
    let StorageConfig::Etcd { endpoints, .. } = &cfg.storage else {
        panic!()
    };
    assert_eq!(endpoints, &["http://127.0.0.1:1", "http://127.0.0.1:2"]);
    let st = EtcdStorage::from_config(&cfg.storage).unwrap();
    assert_eq!(st.base(), "/chart_backend_bucket");
    assert!(st.describe().starts_with("etcd:/chart_backend_bucket"));
    let e = etcd_config(&["--storage-etcd-certfile", "/tmp/c.pem"]).unwrap_err();
    assert!(e.contains("storage.etcd.keyfile"), "{e}");
    let e = etcd_config(&["--storage-etcd-endpoint", " , "]).unwrap_err();
    assert!(e.contains("--storage-etcd-endpoint"), "{e}");
    let cfg = etcd_config(&["--storage-etcd-endpoint", "ftp://x"]).unwrap();
    assert!(EtcdStorage::from_config(&cfg.storage).is_err());
}
