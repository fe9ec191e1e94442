//! Every route and rule of the HTTP API, handled in-process on local storage.

mod common;

use common::{Server, chart, prov, tgz};
use http::{Method, StatusCode};

#[tokio::test]
async fn service_routes() {
    let s = Server::new(&[]).await;
    let r = s.get("/").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type").as_deref(), Some("text/html"));
    assert!(r.text().starts_with("<!DOCTYPE html>"));
    let r = s.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({"healthy": true}));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert!(r.header("x-request-id").is_some_and(|v| v.len() == 36));
    let r = s
        .req(Method::GET, "/health", vec![], &[("x-request-id", "abc")])
        .await;
    assert_eq!(r.header("x-request-id").as_deref(), Some("abc"));
    let r = s.get("/info").await;
    assert_eq!(r.json()["version"], env!("CARGO_PKG_VERSION"));
    for (m, p) in [
        (Method::GET, "/health/"),
        (Method::GET, "/nope"),
        (Method::OPTIONS, "/index.yaml"),
        (Method::PUT, "/api/charts"),
        (Method::GET, "/artifacthub-repo.yml"),
    ] {
        let r = s.req(m.clone(), p, vec![], &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {p}");
        assert_eq!(r.json(), serde_json::json!({"error": "not found"}));
    }
}

#[tokio::test]
async fn empty_index_layout() {
    let s = Server::new(&[]).await;
    let r = s.get("/index.yaml").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-yaml")
    );
    let text = r.text();
    assert!(
        text.starts_with("apiVersion: v1\nentries: {}\ngenerated: \""),
        "{text}"
    );
    assert!(text.ends_with("serverInfo: {}\n"), "{text}");
    let r = s.head("/index.yaml").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn upload_download_and_describe() {
    let s = Server::new(&[]).await;
    let pkg = chart("mychart", "0.1.0");
    let r = s.post("/api/charts", pkg.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json(), serde_json::json!({"saved": true}));
    // Stored under the name from Chart.yaml, whole.
    assert_eq!(
        std::fs::read(s.root.join("mychart-0.1.0.tgz")).unwrap(),
        pkg
    );
    for v in ["0.2.0", "1.0.0-rc.1", "0.10.0"] {
        assert_eq!(
            s.post("/api/charts", chart("mychart", v)).await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        s.post("/api/charts", chart("other", "1.0.0")).await.status,
        StatusCode::CREATED
    );

    let idx = s.get("/index.yaml").await.yaml();
    let versions: Vec<&str> = idx["entries"]["mychart"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0-rc.1", "0.10.0", "0.2.0", "0.1.0"]);
    let first = &idx["entries"]["mychart"][3];
    assert_eq!(first["urls"][0], "charts/mychart-0.1.0.tgz");
    assert_eq!(first["apiVersion"], "v2");
    assert_eq!(first["description"], "test chart");
    let digest = chartroom::repository::sha256_hex(&pkg);
    assert_eq!(first["digest"], digest.as_str());
    assert!(first["created"].as_str().unwrap().ends_with('Z'));

    let r = s.get("/charts/mychart-0.1.0.tgz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-tar")
    );
    assert_eq!(r.body.to_vec(), pkg);
    let r = s.head("/charts/mychart-0.1.0.tgz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), Some(pkg.len().to_string()));
    let r = s.get("/charts/fakechart-0.1.0.tgz").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "object not found");
    assert_eq!(
        s.get("/charts/mychart-0.1.0.tgz.prov").await.status,
        StatusCode::NOT_FOUND
    );
    let r = s.get("/charts/fakechart-0.1.0.bad").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json()["error"], "unsupported file extension");

    // API reads.
    let all = s.get("/api/charts").await.json();
    assert_eq!(all.as_object().unwrap().len(), 2);
    assert_eq!(all["mychart"].as_array().unwrap().len(), 4);
    let r = s.get("/api/charts?offset=1&limit=5").await.json();
    assert_eq!(r.as_object().unwrap().keys().collect::<Vec<_>>(), ["other"]);
    let r = s.get("/api/charts?limit=1").await.json();
    assert_eq!(
        r.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["mychart"]
    );
    for (q, msg) in [
        (
            "offset=-1&limit=5",
            "offset is not a valid non-negative integer",
        ),
        (
            "offset=&limit=5",
            "offset is not a valid non-negative integer",
        ),
        ("limit=0", "limit is not a valid positive integer"),
        ("limit=x", "limit is not a valid positive integer"),
    ] {
        let r = s.get(&format!("/api/charts?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.json()["error"], msg);
    }
    let r = s.get("/api/charts/mychart").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json().as_array().unwrap().len(), 4);
    let r = s.get("/api/charts/fakechart").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "chart not found");
    assert_eq!(s.head("/api/charts/mychart").await.status, StatusCode::OK);
    assert_eq!(
        s.head("/api/charts/fakechart").await.status,
        StatusCode::NOT_FOUND
    );

    let r = s.get("/api/charts/mychart/0.1.0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["digest"], digest.as_str());
    // latest skips prereleases; constraints pick the newest match.
    assert_eq!(
        s.get("/api/charts/mychart/latest").await.json()["version"],
        "0.10.0"
    );
    assert_eq!(
        s.get("/api/charts/mychart/~0.2").await.json()["version"],
        "0.2.0"
    );
    assert_eq!(
        s.get("/api/charts/mychart/%3E0.1.0%2C%3C0.10.0")
            .await
            .json()["version"],
        "0.2.0"
    );
    let r = s.get("/api/charts/mychart/0.1.1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json()["error"],
        "no chart version found for mychart-0.1.1"
    );
    let r = s.get("/api/charts/fakechart/0.1.0").await;
    assert_eq!(r.json()["error"], "no chart name found");
    assert_eq!(
        s.head("/api/charts/mychart/0.1.0").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.head("/api/charts/mychart/latest").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.head("/api/charts/mychart/0.1.1").await.status,
        StatusCode::NOT_FOUND
    );

    let r = s.get("/api/charts/mychart/0.1.0/templates").await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["templates"][0]["name"], "templates/pod.yaml");
    assert_eq!(v["templates"][0]["data"], "a2luZDogUG9kCg==");
    assert_eq!(v["values"], serde_json::json!({"replicas": 1}));
    assert_eq!(
        s.get("/api/charts/mychart/latest/templates").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/api/charts/mychart/0.1.1/templates").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/charts/fakechart/0.1.0/templates").await.status,
        StatusCode::NOT_FOUND
    );
    let r = s.get("/api/charts/mychart/0.1.0/values").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/yaml")
    );
    assert_eq!(r.text(), "replicas: 1\n");
    assert_eq!(
        s.get("/api/charts/fakechart/0.1.0/values").await.status,
        StatusCode::NOT_FOUND
    );
    let novalues = tgz(&[("nv/Chart.yaml", "name: nv\nversion: 1.0.0\n")]);
    assert_eq!(
        s.post("/api/charts", novalues).await.status,
        StatusCode::CREATED
    );
    let r = s.get("/api/charts/nv/1.0.0/values").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "values.yaml not found");
    assert_eq!(
        s.get("/api/charts/nv/1.0.0/templates").await.json()["values"],
        serde_json::Value::Null
    );
}

#[tokio::test]
async fn bad_uploads_change_nothing() {
    let s = Server::new(&["--max-upload-size", "4096"]).await;
    let no_chart_yaml = tgz(&[("c/values.yaml", "a: 1\n")]);
    let not_tar = {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(
            &mut enc,
            b"this is not a tar archive at all, just text. "
                .repeat(20)
                .as_slice(),
        )
        .unwrap();
        enc.finish().unwrap()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", vec![], "empty"),
        ("not gzip", b"hello world".to_vec(), "gzip"),
        ("not tar", not_tar, "tar"),
        ("no Chart.yaml", no_chart_yaml, "Chart.yaml"),
        (
            "no name",
            tgz(&[("c/Chart.yaml", "version: 1.0.0\n")]),
            "name is required",
        ),
        (
            "no version",
            tgz(&[("c/Chart.yaml", "name: c\n")]),
            "version is required",
        ),
        (
            "bad version",
            tgz(&[("c/Chart.yaml", "name: c\nversion: one\n")]),
            "version \"one\" is invalid",
        ),
        (
            "traversal name",
            tgz(&[(
                "c/Chart.yaml",
                "name: \"../../../../charts/org2/repo2/evil\"\nversion: 0.1.0\n",
            )]),
            "name",
        ),
        (
            "dotdot name",
            tgz(&[("c/Chart.yaml", "name: \"..\"\nversion: 0.1.0\n")]),
            "name",
        ),
        (
            "bad yaml",
            tgz(&[("c/Chart.yaml", "name: [unclosed\n")]),
            "Chart.yaml",
        ),
        (
            "bad type",
            tgz(&[("c/Chart.yaml", "name: c\nversion: 1.0.0\ntype: weird\n")]),
            "type",
        ),
    ];
    for (what, body, needle) in cases {
        let r = s.post("/api/charts", body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{what}: {msg:?} lacks {needle:?}");
        let r = s
            .post_form("/api/charts", &[("chart", "x.tgz", &body)])
            .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "multipart {what}: {}",
            r.text()
        );
    }
    // Oversize: 413 text/plain and the connection closed.
    let big: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let r = s.post("/api/charts", big.clone()).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.text(), "request too large");
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    assert_eq!(
        s.post("/api/prov", big.clone()).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        s.post_form("/api/charts", &[("chart", "x.tgz", &big)])
            .await
            .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // Bad provenance files.
    let r = s.post("/api/prov", vec![]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid provenance file");
    let r = s
        .post(
            "/api/prov",
            b"-----BEGIN PGP SIGNED MESSAGE-----\nname: x\n".to_vec(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let evil = prov("../../../../charts/org2/repo2/evil", "0.1.0");
    let r = s.post("/api/prov", evil.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("improperly formatted")
    );
    let r = s
        .post_form("/api/charts", &[("prov", "x.prov", &evil)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Wrong file in a field, unknown fields.
    let pkg = chart("mychart", "0.1.0");
    assert_eq!(
        s.post_form(
            "/api/charts",
            &[("chart", "p.prov", &prov("mychart", "0.1.0"))]
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.post_form("/api/charts", &[("prov", "c.tgz", &pkg)])
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let r = s
        .post_form("/api/charts", &[("unknown", "c.tgz", &pkg)])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error"],
        "no package or provenance file found in form fields chart and prov"
    );
    // Nothing reached storage and the index is still empty.
    let stored: Vec<_> = std::fs::read_dir(&s.root)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "chartroom-state.json")
        .collect();
    assert!(stored.is_empty(), "storage changed: {stored:?}");
    assert!(s.index_versions("/index.yaml").await.is_empty());
}

#[tokio::test]
async fn provenance_files() {
    let s = Server::new(&[]).await;
    let p = prov("mychart", "0.1.0");
    let r = s.post("/api/prov", p.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(
        std::fs::read(s.root.join("mychart-0.1.0.tgz.prov")).unwrap(),
        p
    );
    let r = s.post("/api/prov", p.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "file already exists");
    assert_eq!(
        s.post("/api/prov?force", p.clone()).await.status,
        StatusCode::CREATED
    );
    let r = s.get("/charts/mychart-0.1.0.tgz.prov").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/pgp-signature")
    );
    assert_eq!(r.body.to_vec(), p);
    // Chart and provenance in one form; prov-only forms work too.
    let pkg = chart("signed", "1.0.0");
    let sp = prov("signed", "1.0.0");
    let r = s
        .post_form(
            "/api/charts",
            &[("chart", "a.tgz", &pkg), ("prov", "a.prov", &sp)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(std::fs::read(s.root.join("signed-1.0.0.tgz")).unwrap(), pkg);
    assert_eq!(
        std::fs::read(s.root.join("signed-1.0.0.tgz.prov")).unwrap(),
        sp
    );
    let r = s
        .post_form(
            "/api/charts",
            &[("chart", "a.tgz", &pkg), ("prov", "a.prov", &sp)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "chart already exists");
    // Deleting the chart deletes its provenance file.
    assert_eq!(
        s.delete("/api/charts/signed/1.0.0").await.status,
        StatusCode::OK
    );
    assert!(!s.root.join("signed-1.0.0.tgz.prov").exists());
    let r = s.post_form("/api/charts", &[("prov", "a.prov", &sp)]).await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn overwrite_rules() {
    // Default: 409 without ?force, replace with ?force (any value).
    let s = Server::new(&[]).await;
    let v1 = chart("c", "1.0.0");
    let v1b = tgz(&[(
        "c/Chart.yaml",
        "name: c\nversion: 1.0.0\ndescription: second\n",
    )]);
    assert_eq!(
        s.post("/api/charts", v1.clone()).await.status,
        StatusCode::CREATED
    );
    let r = s.post("/api/charts", v1b.clone()).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "file already exists");
    assert_eq!(std::fs::read(s.root.join("c-1.0.0.tgz")).unwrap(), v1);
    assert_eq!(
        s.post("/api/charts?force=false", v1b.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(std::fs::read(s.root.join("c-1.0.0.tgz")).unwrap(), v1b);
    let idx = s.get("/index.yaml").await.yaml();
    assert_eq!(idx["entries"]["c"].as_array().unwrap().len(), 1);
    assert_eq!(idx["entries"]["c"][0]["description"], "second");
    let r = s
        .post_form("/api/charts?force", &[("chart", "c.tgz", &v1)])
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    // --disable-force-overwrite: ?force is refused.
    let s = Server::new(&["--disable-force-overwrite"]).await;
    assert_eq!(
        s.post("/api/charts", v1.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/charts?force", v1b.clone()).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(std::fs::read(s.root.join("c-1.0.0.tgz")).unwrap(), v1);

    // --allow-overwrite: replace without asking.
    let s = Server::new(&["--allow-overwrite"]).await;
    assert_eq!(
        s.post("/api/charts", v1.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/charts", v1b.clone()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post_form("/api/charts", &[("chart", "c.tgz", &v1)])
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(s.index_versions("/index.yaml").await, ["c-1.0.0"]);
}

#[tokio::test]
async fn delete_rules() {
    let s = Server::new(&[]).await;
    assert_eq!(
        s.post("/api/charts", chart("c", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    let r = s.delete("/api/charts/c/1.0.0").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!({"deleted": true}));
    assert!(!s.root.join("c-1.0.0.tgz").exists());
    assert!(s.index_versions("/index.yaml").await.is_empty());
    assert_eq!(
        s.get("/api/charts/c/1.0.0").await.status,
        StatusCode::NOT_FOUND
    );
    let r = s.delete("/api/charts/c/1.0.0").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // The error never shows server-side paths.
    assert!(
        !r.text().contains(&s.root.display().to_string()),
        "{}",
        r.text()
    );

    let s = Server::new(&["--disable-delete"]).await;
    assert_eq!(
        s.post("/api/charts", chart("c", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    let r = s.delete("/api/charts/c/1.0.0").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "not found");
    assert!(s.root.join("c-1.0.0.tgz").exists());
}

#[tokio::test]
async fn disabled_api() {
    let s = Server::new(&["--disable-api"]).await;
    for (m, p) in [
        (Method::GET, "/api/charts"),
        (Method::GET, "/api/charts/c"),
        (Method::GET, "/api/charts/c/1.0.0"),
        (Method::POST, "/api/charts"),
        (Method::POST, "/api/prov"),
        (Method::DELETE, "/api/charts/c/1.0.0"),
    ] {
        let body = if m == Method::POST {
            chart("c", "1.0.0")
        } else {
            vec![]
        };
        let r = s.req(m.clone(), p, body, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {p}");
    }
    assert_eq!(s.get("/index.yaml").await.status, StatusCode::OK);
}

#[tokio::test]
async fn basic_auth() {
    let s = Server::new(&[
        "--basic-auth-user",
        "testuser",
        "--basic-auth-pass",
        "testpass",
    ])
    .await;
    let good = "Basic dGVzdHVzZXI6dGVzdHBhc3M="; // testuser:testpass
    assert_eq!(s.get("/health").await.status, StatusCode::OK);
    assert_eq!(s.get("/info").await.status, StatusCode::OK);
    for (m, p) in [
        (Method::GET, "/"),
        (Method::GET, "/index.yaml"),
        (Method::GET, "/api/charts"),
        (Method::POST, "/api/charts"),
    ] {
        let r = s.req(m.clone(), p, vec![], &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {p}");
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Basic realm=\"ChartMuseum\"")
        );
        assert_eq!(r.json()["error"], "unauthorized");
        let r = s
            .req(
                m.clone(),
                p,
                vec![],
                &[("authorization", "Basic dGVzdHVzZXI6d3Jvbmc=")],
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {p} wrong password");
    }
    assert_eq!(
        s.req(
            Method::GET,
            "/index.yaml",
            vec![],
            &[("authorization", good)]
        )
        .await
        .status,
        StatusCode::OK
    );
    let r = s
        .req(
            Method::POST,
            "/api/charts",
            chart("c", "1.0.0"),
            &[("authorization", good)],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // Unknown routes are 404 before auth.
    assert_eq!(s.get("/nope").await.status, StatusCode::NOT_FOUND);

    let s = Server::new(&[
        "--basic-auth-user",
        "u",
        "--basic-auth-pass",
        "p",
        "--auth-anonymous-get",
    ])
    .await;
    assert_eq!(s.get("/index.yaml").await.status, StatusCode::OK);
    assert_eq!(s.head("/api/charts/x").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.post("/api/charts", chart("c", "1.0.0")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.delete("/api/charts/c/1.0.0").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn context_path() {
    let s = Server::new(&["--context-path", "my/crazy/path/"]).await;
    assert_eq!(s.get("/index.yaml").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/my/crazy/path").await.status, StatusCode::OK);
    assert_eq!(s.get("/my/crazy/path/health").await.status, StatusCode::OK);
    assert_eq!(
        s.post("/my/crazy/path/api/charts", chart("c", "1.0.0"))
            .await
            .status,
        StatusCode::CREATED
    );
    let r = s.get("/my/crazy/path/index.yaml").await;
    let v = r.yaml();
    assert_eq!(v["serverInfo"]["contextPath"], "/my/crazy/path");
    assert_eq!(v["entries"]["c"][0]["urls"][0], "charts/c-1.0.0.tgz");
    assert_eq!(
        s.get("/my/crazy/path/charts/c-1.0.0.tgz").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/my/crazy/pathx/charts/c-1.0.0.tgz").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn chart_url_and_json_index() {
    let s = Server::new(&[
        "--chart-url",
        "https://charts.example.org/",
        "--context-path",
        "/cm",
        "--depth",
        "1",
    ])
    .await;
    assert_eq!(
        s.post("/cm/api/team/charts", chart("c", "1.0.0"))
            .await
            .status,
        StatusCode::CREATED
    );
    let v = s.get("/cm/team/index.yaml").await.yaml();
    assert_eq!(
        v["entries"]["c"][0]["urls"][0],
        "https://charts.example.org/cm/team/charts/c-1.0.0.tgz"
    );
    // The templates route still finds the file with absolute URLs.
    assert_eq!(
        s.get("/cm/api/team/charts/c/1.0.0/templates").await.status,
        StatusCode::OK
    );

    let s = Server::new(&["--json-index"]).await;
    assert_eq!(
        s.post("/api/charts", chart("c", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    let r = s.get("/index.yaml").await;
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-yaml")
    );
    let v = r.json();
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["entries"]["c"][0]["version"], "1.0.0");
}

#[tokio::test]
async fn multitenancy_depth_one_and_two() {
    let s = Server::new(&["--depth", "1"]).await;
    assert_eq!(
        s.post("/api/org1/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/org2/charts", chart("b", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert!(s.root.join("org1/a-1.0.0.tgz").exists());
    assert_eq!(s.index_versions("/org1/index.yaml").await, ["a-1.0.0"]);
    assert_eq!(s.index_versions("/org2/index.yaml").await, ["b-1.0.0"]);
    assert!(s.index_versions("/org3/index.yaml").await.is_empty());
    assert_eq!(
        s.get("/org1/charts/a-1.0.0.tgz").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.get("/org2/charts/a-1.0.0.tgz").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.get("/api/org1/charts/a/1.0.0").await.status,
        StatusCode::OK
    );
    assert_eq!(s.get("/index.yaml").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/org1/health").await.status, StatusCode::OK);
    assert_eq!(s.get("/org1/").await.status, StatusCode::OK);
    // A tenant called "api" is a repository for index paths.
    assert_eq!(s.get("/api/index.yaml").await.status, StatusCode::OK);
    assert_eq!(
        s.delete("/api/org1/charts/a/1.0.0").await.status,
        StatusCode::OK
    );
    assert!(s.index_versions("/org1/index.yaml").await.is_empty());
    // Tenant segments can never leave the storage root.
    for p in [
        "/%2e%2e/index.yaml",
        "/..%2f/index.yaml",
        "/%2e%2e/charts/x.tgz",
    ] {
        let r = s.get(p).await;
        assert!(
            r.status == StatusCode::BAD_REQUEST || r.status == StatusCode::NOT_FOUND,
            "{p}: {}",
            r.status
        );
    }
    let r = s.post("/api/%2e%2e/charts", chart("evil", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(!s.root.parent().unwrap().join("evil-1.0.0.tgz").exists());

    let s = Server::new(&["--depth", "2"]).await;
    assert_eq!(
        s.post("/api/org1/repoa/charts", chart("a", "1.0.0"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert!(s.root.join("org1/repoa/a-1.0.0.tgz").exists());
    assert_eq!(
        s.index_versions("/org1/repoa/index.yaml").await,
        ["a-1.0.0"]
    );
    assert_eq!(
        s.get("/org1/index.yaml").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(s.get("/index.yaml").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.get("/org1/repoa/charts/a-1.0.0.tgz").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn dynamic_depth() {
    let s = Server::new(&["--depth-dynamic"]).await;
    assert_eq!(
        s.post("/api/charts", chart("root", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/one/charts", chart("a", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.post("/api/one/two/charts", chart("b", "1.0.0"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(s.index_versions("/index.yaml").await, ["root-1.0.0"]);
    assert_eq!(s.index_versions("/one/index.yaml").await, ["a-1.0.0"]);
    assert_eq!(s.index_versions("/one/two/index.yaml").await, ["b-1.0.0"]);
    assert_eq!(
        s.get("/one/two/charts/b-1.0.0.tgz").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn artifacthub_ids() {
    let s = Server::new(&["--artifact-hub-repo-id", "depth0"]).await;
    let r = s.get("/artifacthub-repo.yml").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "repositoryID: depth0\n");
    let s = Server::new(&["--depth", "1", "--artifact-hub-repo-id", "org=depth1"]).await;
    assert_eq!(
        s.get("/org/artifacthub-repo.yml").await.text(),
        "repositoryID: depth1\n"
    );
    let r = s.get("/other/artifacthub-repo.yml").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["error"], "Artifact Hub repository ID not found");
}

#[tokio::test]
async fn storage_limits() {
    let s = Server::new(&["--max-storage-objects", "1", "--allow-overwrite"]).await;
    assert_eq!(
        s.post("/api/charts", chart("c", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    // The state file counts as an object only once written; re-uploads are fine either way.
    assert_eq!(
        s.post("/api/charts", chart("c", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    let r = s.post("/api/charts", chart("d", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(r.json()["error"], "repo has reached storage limit");
    assert!(!s.root.join("d-1.0.0.tgz").exists());

    let s = Server::new(&["--per-chart-limit", "2"]).await;
    for (n, v) in [
        ("svc", "0.0.1"),
        ("c", "0.0.1"),
        ("c", "0.2.0"),
        ("c", "0.1.0"),
    ] {
        assert_eq!(
            s.post("/api/charts", chart(n, v)).await.status,
            StatusCode::CREATED
        );
    }
    assert_eq!(
        s.post("/api/prov", prov("c", "0.0.1")).await.status,
        StatusCode::CREATED
    );
    let mut got = s.index_versions("/index.yaml").await;
    got.sort();
    assert_eq!(got, ["c-0.1.0", "c-0.2.0", "svc-0.0.1"]);
    assert!(!s.root.join("c-0.0.1.tgz").exists());
    // A later upload of a version below the two kept would be removed at once: refused.
    let r = s.post("/api/charts", chart("c", "0.0.5")).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(
        r.json()["error"],
        "per-chart-limit: c keeps its 2 highest versions and 0.0.5 is lower than 0.1.0"
    );
    assert!(!s.root.join("c-0.0.5.tgz").exists());
    // A version between the two kept is stored and the lowest goes.
    assert_eq!(
        s.post("/api/charts", chart("c", "0.1.5")).await.status,
        StatusCode::CREATED
    );
    let mut got = s.index_versions("/index.yaml").await;
    got.sort();
    assert_eq!(got, ["c-0.1.5", "c-0.2.0", "svc-0.0.1"]);
    assert!(!s.root.join("c-0.1.0.tgz").exists());

    // Full repository and an existing file without overwrite: 409 comes first, as ChartMuseum.
    let s = Server::new(&["--max-storage-objects", "1"]).await;
    assert_eq!(
        s.post("/api/charts", chart("c", "1.0.0")).await.status,
        StatusCode::CREATED
    );
    let r = s.post("/api/charts", chart("c", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "file already exists");
    let r = s.post("/api/prov", prov("c", "1.0.0")).await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
}

#[tokio::test]
async fn cors_header_on_api_only() {
    let s = Server::new(&["--cors-alloworigin", "https://ui.example"]).await;
    assert_eq!(
        s.get("/api/charts")
            .await
            .header("access-control-allow-origin")
            .as_deref(),
        Some("https://ui.example")
    );
    assert_eq!(
        s.get("/index.yaml")
            .await
            .header("access-control-allow-origin"),
        None
    );
}

#[tokio::test]
async fn custom_form_field_names() {
    let s = Server::new(&[
        "--chart-post-form-field-name",
        "package",
        "--prov-post-form-field-name",
        "signature",
    ])
    .await;
    let (pkg, sig) = (chart("c", "1.0.0"), prov("c", "1.0.0"));
    let r = s
        .post_form(
            "/api/charts",
            &[
                ("package", "c.tgz", &pkg),
                ("signature", "c.tgz.prov", &sig),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(std::fs::read(s.root.join("c-1.0.0.tgz")).unwrap(), pkg);
    assert_eq!(std::fs::read(s.root.join("c-1.0.0.tgz.prov")).unwrap(), sig);
    assert_eq!(s.index_versions("/index.yaml").await, ["c-1.0.0"]);
    // The default names are accepted as well, as ChartMuseum does.
    let r = s
        .post_form("/api/charts", &[("chart", "d.tgz", &chart("d", "1.0.0"))])
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // Other names are not.
    let r = s
        .post_form("/api/charts", &[("pkg", "e.tgz", &chart("e", "1.0.0"))])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json()["error"],
        "no package or provenance file found in form fields package and signature"
    );
}
