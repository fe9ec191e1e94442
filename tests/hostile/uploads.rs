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

fn error_of(r: &crate::common::Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

/// Item 6: a chart whose name starts with a dot would be a hidden file: refused with a 400
/// that names the rule, by every upload route; nothing is stored.
#[tokio::test]
async fn dot_names_are_refused_at_upload() {
    let s = Server::new(&[]).await;
    let r = s.post("/api/charts", chart(".hid", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        error_of(&r).contains("must not start with '.'"),
        "{}",
        r.text()
    );
    let r = s
        .post_form(
            "/api/charts",
            &[("chart", "c.tgz", &chart(".hid", "1.0.0"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = s.post("/api/prov", prov(".hid", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(
        error_of(&r).contains("must not start with '.'"),
        "{}",
        r.text()
    );
    assert!(!s.root.join(".hid-1.0.0.tgz").exists());
    assert!(!s.root.join(".hid-1.0.0.tgz.prov").exists());
}

/// Item 6: a dot-named chart put into storage by other means (a ChartMuseum directory taken
/// over) is listed, and stays through a refresh and a restart.
#[tokio::test]
async fn dot_named_charts_in_storage_survive_refresh_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".hid-1.0.0.tgz"), chart(".hid", "1.0.0")).unwrap();
    let s = Server::on(dir.path(), &[]).await;
    assert_eq!(s.index_versions("/index.yaml").await, [".hid-1.0.0"]);
    s.refresh().await;
    assert_eq!(s.index_versions("/index.yaml").await, [".hid-1.0.0"]);
    s.app.registry.load().save_states().await;
    drop(s);
    let s = Server::on(dir.path(), &[]).await;
    assert_eq!(s.index_versions("/index.yaml").await, [".hid-1.0.0"]);
    let r = s.delete("/api/charts/.hid/1.0.0").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(s.index_versions("/index.yaml").await.is_empty());
}

/// Item 7: the longest file names a file system keeps are stored and survive a refresh and a
/// restart; a longer one is a 400 that names the limit, by every upload route.
#[tokio::test]
async fn long_names_are_stored_and_too_long_names_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::on(dir.path(), &[]).await;
    // 230 characters (the case: a 240-byte file name); 245 (a 255-byte file name,
    // the longest there is).
    let mut kept = Vec::new();
    for len in [230, 245] {
        let name = "n".repeat(len);
        let r = s.post("/api/charts", chart(&name, "1.0.0")).await;
        assert_eq!(r.status, StatusCode::CREATED, "{len}: {}", r.text());
        let r = s.get(&format!("/charts/{name}-1.0.0.tgz")).await;
        assert_eq!(r.status, StatusCode::OK);
        kept.push(format!("{name}-1.0.0"));
    }
    // Its provenance file would be 260 bytes long: refused, the chart stays.
    let name = "n".repeat(245);
    let r = s.post("/api/prov", prov(&name, "1.0.0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("255 bytes"), "{}", r.text());
    // One byte more: a 256-byte file name.
    let name = "n".repeat(246);
    let r = s.post("/api/charts", chart(&name, "1.0.0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(error_of(&r).contains("255 bytes"), "{}", r.text());
    let r = s
        .post_form("/api/charts", &[("chart", "c.tgz", &chart(&name, "1.0.0"))])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Characters count as their UTF-8 bytes: 82 × 3 bytes + "-1.0.0.tgz" = 256 bytes.
    let r = s.post("/api/charts", chart(&"€".repeat(82), "1.0.0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Reads of a too-long name are a client error too, not a storage failure.
    let r = s.get(&format!("/charts/{name}-1.0.0.tgz")).await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let r = s.delete(&format!("/api/charts/{name}/1.0.0")).await;
    assert!(r.status.is_client_error(), "{}", r.status);

    kept.sort();
    s.refresh().await;
    let mut listed = s.index_versions("/index.yaml").await;
    listed.sort();
    assert_eq!(listed, kept);
    s.app.registry.load().save_states().await;
    drop(s);
    let s = Server::on(dir.path(), &[]).await;
    let mut listed = s.index_versions("/index.yaml").await;
    listed.sort();
    assert_eq!(listed, kept);
}

fn set_age(path: &Path, secs: u64) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(secs))
        .unwrap();
}

/// Item 10: temporary files a crash left behind (in the temporary directory, and beside
/// their target as earlier versions wrote them) are removed at start once stale; fresh ones
/// (an upload in flight) and charts are not touched.
#[tokio::test]
async fn stale_temporary_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let tmp = root.join(chartroom::storage::local::TEMP_DIR);
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(root.join("org")).unwrap();
    let stale = [
        tmp.join("1111111111111111.tmp"),
        root.join(".c-1.0.0.tgz.tmp-1111111111111111"),
        root.join("org/.c-1.0.0.tgz.tmp-2222222222222222"),
    ];
    let fresh = [
        tmp.join("3333333333333333.tmp"),
        root.join(".c-1.0.0.tgz.tmp-3333333333333333"),
    ];
    for p in stale.iter().chain(&fresh) {
        std::fs::write(p, vec![0u8; 4096]).unwrap();
    }
    std::fs::write(root.join("c-1.0.0.tgz"), chart("c", "1.0.0")).unwrap();
    for p in stale.iter().chain([&root.join("c-1.0.0.tgz")]) {
        set_age(p, 3600);
    }
    let s = Server::on(root, &[]).await;
    for p in &stale {
        assert!(!p.exists(), "{} stayed", p.display());
    }
    for p in &fresh {
        assert!(p.exists(), "{} removed", p.display());
    }
    assert_eq!(s.index_versions("/index.yaml").await, ["c-1.0.0"]);
    // An upload leaves nothing behind in the temporary directory.
    let r = s.post("/api/charts", chart("d", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(left, [fresh[0].clone()]);
}

mod names {
    use super::*;
    use proptest::prelude::*;

    /// The names `..` and `.` (which the property below can draw) are refused as Helm refuses them.
    #[tokio::test]
    async fn charts_named_dot_and_dot_dot_are_refused() {
        let s = Server::new(&[]).await;
        let r = s.post("/api/charts", chart("..", "1.0.0")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
        let error = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains("name \"..\" is invalid"), "{error}");
        let r = s.post("/api/charts", chart(".", "1.0.0")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Any chart name: stored (201) exactly when its file name is at most 255 bytes long
        /// and does not start with '.'; otherwise a 400 naming the rule. Never a 500.
        #[test]
        fn upload_names_are_stored_or_refused_by_rule(
            first in prop_oneof![Just("."), Just("a"), Just("é"), Just("€")],
            rest in proptest::collection::vec(
                prop_oneof![1 => Just("b"), 1 => Just("é"), 2 => Just("€"), 1 => Just(".")],
                0..200,
            ),
        ) {
            let name = format!("{first}{}", rest.concat());
            let file = format!("{name}-1.0.0.tgz");
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async {
                let s = Server::new(&[]).await;
                let r = s.post("/api/charts", chart(&name, "1.0.0")).await;
                let error = r.json()["error"].as_str().unwrap_or_default().to_string();
                if name.starts_with('.') {
                    prop_assert_eq!(r.status, StatusCode::BAD_REQUEST);
                    prop_assert!(
                        error.contains("must not start with '.'")
                            // `.` and `..` as the archive's top directory: refused as Helm
                            // refuses them, before the name rule is reached.
                            || (name == ".." && error.contains("is invalid"))
                            || (name == "." && error.contains("Chart.yaml file is missing")),
                        "{}", error
                    );
                } else if file.len() > 255 {
                    prop_assert_eq!(r.status, StatusCode::BAD_REQUEST);
                    prop_assert!(error.contains("the limit is 255 bytes"), "{}", error);
                } else {
                    prop_assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
                    prop_assert!(s.root.join(&file).exists());
                    s.refresh().await;
                    prop_assert_eq!(s.index_versions("/index.yaml").await, vec![format!("{name}-1.0.0")]);
                }
                Ok(())
            })?;
        }
    }
}
