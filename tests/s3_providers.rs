//! The S3-compatible clouds under ChartMuseum's keys (`storage.backend: alibaba`, `tencent`,
//! `baidu`, `oracle`) against a real S3 server (SeaweedFS, `tests/s3/harness.rs`) with the
//! endpoint overridden: each configures the S3 backend from its own keys and credential
//! variables, and stores, lists, reads, creates-if-absent and deletes through it; then
//! chartroom serves a chart uploaded through each. Not tried against the providers themselves.

#[path = "s3/harness.rs"]
mod s3_harness;

mod common;

use std::sync::Arc;

use bytes::Bytes;
use chartroom::api::App;
use chartroom::config;
use chartroom::repository::Registry;
use chartroom::storage::s3::S3Storage;
use chartroom::storage::{Storage, StorageError};
use common::{Server, chart};
use http::StatusCode;
use s3_harness::S3Harness;

/// (backend, endpoint flag, extra flags, credential variables).
const PROVIDERS: [(&str, &str, &[&str], [&str; 2]); 4] = [
    (
        "alibaba",
        "--storage-alibaba-endpoint",
        &["--storage-alibaba-sse=AES256"],
        [
            "ALIBABA_CLOUD_ACCESS_KEY_ID",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        ],
    ),
    (
        "tencent",
        "--storage-tencent-endpoint",
        &[],
        [
            "TENCENT_CLOUD_COS_SECRET_ID",
            "TENCENT_CLOUD_COS_SECRET_KEY",
        ],
    ),
    (
        "baidu",
        "--storage-baidu-endpoint",
        &[],
        ["BAIDU_CLOUD_ACCESS_KEY_ID", "BAIDU_CLOUD_ACCESS_KEY_SECRET"],
    ),
    (
        "oracle",
        "--storage-oracle-endpoint",
        &["--storage-oracle-compartmentid=ocid1.compartment.oc1..test"],
        ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"],
    ),
];

fn load(h: &S3Harness, name: &str, prefix: &str) -> config::Config {
    let (_, flag, extra, [id, secret]) = PROVIDERS.iter().find(|p| p.0 == name).copied().unwrap();
    let mut argv: Vec<String> = vec![
        format!("--storage={name}"),
        format!("--storage-{name}-bucket={}", s3_harness::BUCKET),
        format!("--storage-{name}-prefix={prefix}"),
        format!("{flag}={}", h.endpoint()),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let args = config::parse_args(&argv).unwrap();
    let env = [
        (id.to_string(), s3_harness::ACCESS_KEY.to_string()),
        (secret.to_string(), s3_harness::SECRET_KEY.to_string()),
    ];
    let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    config::load(&args, &lookup, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_compatible_clouds_on_seaweedfs() {
    if !s3_harness::available() {
        return;
    }
    let h = S3Harness::start().await;
    for (name, ..) in PROVIDERS {
        let prefix = format!("{name}-{:08x}", rand::random::<u32>());
        let cfg = load(&h, name, &prefix);
        let s = Arc::new(S3Storage::from_config(&cfg.storage).unwrap());
        assert!(
            s.describe().starts_with(&format!("{name}:charts/{prefix}")),
            "{}",
            s.describe()
        );
        s.check().await.unwrap();
        let m = s
            .put_if_absent("a-1.0.0.tgz", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert!(matches!(
            s.put_if_absent("a-1.0.0.tgz", Bytes::from_static(b"x"))
                .await,
            Err(StorageError::AlreadyExists(_))
        ));
        assert_eq!(s.list("").await.unwrap(), [m]);
        assert_eq!(s.get("a-1.0.0.tgz").await.unwrap(), "abc");
        s.delete("a-1.0.0.tgz").await.unwrap();
        assert!(s.list("").await.unwrap().is_empty());
        // chartroom on it: an upload is served back, and lands under the provider's prefix.
        let registry = Registry::new(s.clone(), chartroom::api::repo_settings(&cfg));
        registry.repo("").await.unwrap();
        let server = Server::with_app(Arc::new(App::new(&cfg, registry)));
        let pkg = chart("demo", "1.2.3");
        let r = server.post("/api/charts", pkg.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.text());
        let r = server.get("/charts/demo-1.2.3.tgz").await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body, pkg);
        let direct = h.storage(&prefix);
        assert_eq!(direct.get("demo-1.2.3.tgz").await.unwrap(), pkg, "{name}");
        eprintln!("{name}: ok");
    }
}
