//! Hostile input: uploads (issue 13, items 6, 7, 8, 10 and 11): names that storage cannot keep
//! or list, names too long for a file system, concurrent uploads and deletes of one version,
//! and temporary files left by a crash.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chartroom::api::App;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::Digest;

use crate::common::{Server, chart, prov, tgz};

/// One request to an application shared between tasks.
async fn call(app: Arc<App>, method: Method, path: String, body: Vec<u8>) -> (StatusCode, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = app.handle(req).await;
    let (parts, body) = resp.into_parts();
    (parts.status, body.collect().await.unwrap().to_bytes())
}

/// A package of `name` `version` whose bytes differ with `variant`.
fn variant(name: &str, version: &str, variant: usize) -> Vec<u8> {
    let chart_yaml = format!(
        "apiVersion: v2\nname: {name}\nversion: {version}\ndescription: variant {variant}\n"
    );
    tgz(&[(&format!("{name}/Chart.yaml"), &chart_yaml)])
}

fn sha256_file(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|d| hex::encode(sha2::Sha256::digest(&d)))
}

/// What the index says about one version (its digest, or `None`) agrees with the file on disk.
async fn check_agreement(s: &Server, name: &str, version: &str, round: usize) {
    let r = s.get(&format!("/api/charts/{name}/{version}")).await;
    let file = s.root.join(format!("{name}-{version}.tgz"));
    let on_disk = sha256_file(&file);
    let indexed = match r.status {
        StatusCode::OK => Some(r.json()["digest"].as_str().unwrap().to_string()),
        StatusCode::NOT_FOUND => None,
        other => panic!("round {round}: GET version answered {other}: {}", r.text()),
    };
    assert_eq!(
        indexed, on_disk,
        "round {round}: the index (left) and the stored file (right) disagree"
    );
}

/// Rounds of 3 concurrent uploads and 2 concurrent deletes of one version (and, every fourth
/// round, a refresh): after each round the index describes what the disk holds, and no request
/// got a 500.
async fn race_rounds(s: &Server, rounds: usize, query: &str) {
    let (name, version) = ("race", "1.0.0");
    let packages: Vec<Vec<u8>> = (0..3).map(|i| variant(name, version, i)).collect();
    for round in 0..rounds {
        let mut tasks = Vec::new();
        for p in &packages {
            let app = s.app.clone();
            let body = p.clone();
            let path = format!("/api/charts{query}");
            tasks.push(tokio::spawn(async move {
                ("upload", call(app, Method::POST, path, body).await)
            }));
        }
        for _ in 0..2 {
            let app = s.app.clone();
            let path = format!("/api/charts/{name}/{version}");
            tasks.push(tokio::spawn(async move {
                ("delete", call(app, Method::DELETE, path, vec![]).await)
            }));
        }
        if round % 4 == 3 {
            let app = s.app.clone();
            tasks.push(tokio::spawn(async move {
                let _ = app.registry.load().refresh_all().await;
                ("refresh", (StatusCode::OK, Bytes::new()))
            }));
        }
        for t in tasks {
            let (what, (status, body)) = t.await.unwrap();
            let text = String::from_utf8_lossy(&body);
            match what {
                "upload" => assert!(
                    status == StatusCode::CREATED || status == StatusCode::CONFLICT,
                    "round {round}: upload answered {status}: {text}"
                ),
                "delete" => assert!(
                    status == StatusCode::OK || status == StatusCode::NOT_FOUND,
                    "round {round}: delete answered {status}: {text}"
                ),
                _ => {}
            }
        }
        check_agreement(s, name, version, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_delete_refresh_race_keeps_index_and_disk_agreeing() {
    let s = Server::new(&[]).await;
    race_rounds(&s, 300, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forced_upload_delete_race_keeps_index_and_disk_agreeing() {
    let s = Server::new(&[]).await;
    race_rounds(&s, 300, "?force").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overwrite_upload_delete_race_keeps_index_and_disk_agreeing() {
    let s = Server::new(&["--allow-overwrite"]).await;
    race_rounds(&s, 300, "").await;
}
