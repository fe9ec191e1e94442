//! The Azure Blob backend against Azurite (`tests/azure/harness.rs`): a rejected key named in
//! the error and in `problem()` (for `/health`) without retries, a key file rotated while
//! running picked up at the next rejection, a SAS token instead of a key, a missing container,
//! and the request counters (one listing per page).

#[path = "azure/harness.rs"]
mod azure_harness;

use std::time::{Duration, Instant};

use azure_harness::{ACCOUNT, AzureHarness, KEY};
use base64::Engine;
use bytes::Bytes;
use chartroom::storage::azure::{AzureSettings, AzureStorage, Credential};
use chartroom::storage::{Secret, Storage, StorageError};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Azure answers a bad signature with `AuthenticationFailed`, Azurite with
/// `AuthorizationFailure`.
fn rejected(msg: &str) -> bool {
    msg.contains("403")
        && (msg.contains("AuthenticationFailed") || msg.contains("AuthorizationFailure"))
}

fn unique(p: &str) -> String {
    format!("{p}-{:08x}", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_backend_against_azurite() {
    if !azure_harness::available() {
        return;
    }
    let h = AzureHarness::start().await;
    eprintln!("azurite started in {:.1} s", h.start_time.as_secs_f64());
    a_wrong_key_is_named_and_not_retried(&h).await;
    a_rotated_key_file_is_picked_up(&h).await;
    a_sas_token_works(&h).await;
    a_missing_container_is_named(&h).await;
    one_listing_per_page(&h).await;
}

async fn a_wrong_key_is_named_and_not_retried(h: &AzureHarness) {
    let mut s = h.settings(&unique("wrong"));
    s.credential = Credential::SharedKey(Secret::Value(b64(b"not the key")));
    s.attempts = 5;
    let st = AzureStorage::new(s).unwrap();
    let t = Instant::now();
    let e = st
        .put("a-1.0.0.tgz", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StorageError::Unavailable(_)), "{msg}");
    assert!(rejected(&msg), "{msg}");
    assert!(msg.contains(ACCOUNT), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(2), "403 is not retried");
    assert_eq!(st.stats().puts, 1);
    let problem = st.problem().unwrap();
    assert!(rejected(&problem), "{problem}");
    let e = st.check().await.unwrap_err().to_string();
    assert!(rejected(&e), "{e}");
}

async fn a_rotated_key_file_is_picked_up(h: &AzureHarness) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, format!("{}\n", b64(b"an old key"))).unwrap();
    let mut s = h.settings(&unique("rotate"));
    s.credential = Credential::SharedKey(Secret::File(file.clone()));
    let st = AzureStorage::new(s).unwrap();
    let e = st.list("").await.unwrap_err().to_string();
    assert!(rejected(&e), "{e}");
    // The operator writes the right key: the next rejection re-reads the file.
    std::fs::write(&file, format!("{KEY}\n")).unwrap();
    st.put("a-1.0.0.tgz", Bytes::from_static(b"abc"))
        .await
        .unwrap();
    assert_eq!(st.get("a-1.0.0.tgz").await.unwrap(), "abc");
    assert!(st.problem().is_none());
}

/// An account SAS (version 2021-08-06) for the blob service, signed with the dev key.
fn account_sas(perms: &str) -> String {
    use chartroom::storage::s3::sigv4::hmac_sha256;
    let (sv, ss, srt, se) = ("2021-08-06", "b", "sco", "2099-01-01T00:00:00Z");
    let to_sign = format!("{ACCOUNT}\n{perms}\n{ss}\n{srt}\n\n{se}\n\n\n{sv}\n\n");
    let key = base64::engine::general_purpose::STANDARD
        .decode(KEY)
        .unwrap();
    let sig = b64(&hmac_sha256(&key, to_sign.as_bytes()));
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!(
        "?sv={sv}&ss={ss}&srt={srt}&sp={perms}&se={}&sig={}",
        enc(se),
        enc(&sig)
    )
}

async fn a_sas_token_works(h: &AzureHarness) {
    let mut s = h.settings(&unique("sas"));
    s.credential = Credential::Sas(Secret::Value(account_sas("rwdlac")));
    let st = AzureStorage::new(s.clone()).unwrap();
    st.put_if_absent("a-1.0.0.tgz", Bytes::from_static(b"sas"))
        .await
        .unwrap();
    assert!(matches!(
        st.put_if_absent("a-1.0.0.tgz", Bytes::from_static(b"again"))
            .await,
        Err(StorageError::AlreadyExists(_))
    ));
    assert_eq!(st.list("").await.unwrap()[0].name, "a-1.0.0.tgz");
    assert_eq!(st.get("a-1.0.0.tgz").await.unwrap(), "sas");
    st.delete("a-1.0.0.tgz").await.unwrap();
    // A read-only token: uploads are refused, and the refusal is named.
    s.credential = Credential::Sas(Secret::Value(account_sas("rl")));
    let ro = AzureStorage::new(s).unwrap();
    assert!(ro.list("").await.unwrap().is_empty());
    let e = ro
        .put("b-1.0.0.tgz", Bytes::from_static(b"x"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("403"), "{e}");
}

async fn a_missing_container_is_named(h: &AzureHarness) {
    let mut s = h.settings("");
    s.container = "no-such-container".into();
    let st = AzureStorage::new(s).unwrap();
    let e = st.check().await.unwrap_err().to_string();
    assert!(e.contains("container no-such-container not found"), "{e}");
    let e = st.get("a.tgz").await.unwrap_err().to_string();
    assert!(e.contains("not found") && e.contains("container"), "{e}");
}

async fn one_listing_per_page(h: &AzureHarness) {
    let mut s = h.settings(&unique("pages"));
    s.page_size = 4;
    let st = AzureStorage::new(s).unwrap();
    for i in 0..10 {
        st.put(&format!("c-{i}.tgz"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    let before = st.stats();
    assert_eq!(st.list("").await.unwrap().len(), 10);
    let after = st.stats();
    assert_eq!(after.lists - before.lists, 3, "10 names, 4 a page");
    assert_eq!(after.gets, before.gets);
}

#[test]
fn settings_debug_hides_the_key() {
    let s = AzureSettings::new(
        ACCOUNT,
        "charts",
        Credential::SharedKey(Secret::Value(KEY.into())),
    );
    assert!(!format!("{s:?}").contains(KEY));
}
