//! Hostile input: memory (issue 13 items 4, 5 and 15). Tar extension-header bombs (GNU long
//! names and links, PAX records), the per-file and per-chart limits with their exact errors,
//! billion laughs in Chart.yaml and values.yaml, `/health` while a values bomb is being refused,
//! and `/api/charts` windows served from shared bytes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chartroom::api::App;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::common::{Server, chart, tgz};

const FILE_LIMIT_MSG: &str = "(maximum decompressed file size, max-decompressed-file-size)";
const CHART_LIMIT_MSG: &str = "(maximum decompressed chart size, max-decompressed-chart-size)";

/// A 512-byte ustar header with a valid checksum.
fn header(name: &str, typeflag: u8, size: u64) -> Vec<u8> {
    let mut b = vec![0u8; 512];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..108].copy_from_slice(b"0000644\0");
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[156] = typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

fn pad(t: &mut Vec<u8>) {
    t.resize(t.len().div_ceil(512) * 512, 0);
}

fn entry(t: &mut Vec<u8>, name: &str, typeflag: u8, data: &[u8]) {
    t.extend_from_slice(&header(name, typeflag, data.len() as u64));
    t.extend_from_slice(data);
    pad(t);
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, data).unwrap();
    enc.finish().unwrap()
}

fn chart_yaml(name: &str) -> String {
    format!("apiVersion: v2\nname: {name}\nversion: 1.0.0\n")
}

/// A PAX record `<len> key=value\n`.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut n = body.len() + 1;
    while format!("{n}{body}").len() != n {
        n += 1;
    }
    format!("{n}{body}")
}

async fn error_of(s: &Server, body: Vec<u8>) -> (StatusCode, String) {
    let r = s.post("/api/charts", body).await;
    let msg = r.json()["error"].as_str().unwrap_or_default().to_string();
    (r.status, msg)
}

/// An extension header (each of `L`, `K`, `x`, `g`) that declares 250 MiB is refused on its
/// declared size, before anything of it is read: the tar crate read such headers into memory
/// whole. The upload here carries only 1 MiB of the announced data (the bench sends it all).
#[tokio::test]
async fn extension_header_bombs_are_refused_by_their_size() {
    let s = Server::new(&[]).await;
    for (t, what) in [
        (b'L', "GNU long name"),
        (b'K', "GNU long link name"),
        (b'x', "PAX records"),
        (b'g', "PAX global records"),
    ] {
        let mut tar = header("././@LongLink", t, 250 << 20);
        tar.extend(std::iter::repeat_n(b'a', 1 << 20));
        let (status, msg) = error_of(&s, gz(&tar)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert_eq!(
            msg,
            format!(
                "tar extension header ({what}) in the chart package is larger than 5242880 bytes {FILE_LIMIT_MSG}"
            )
        );
    }
    // With a small limit, the whole header sent: the same refusal, naming the configured value.
    let s = Server::new(&["--max-decompressed-file-size", "4096"]).await;
    let mut tar = Vec::new();
    entry(&mut tar, "././@LongLink", b'L', &vec![b'n'; 8192]);
    entry(&mut tar, "c/Chart.yaml", b'0', chart_yaml("c").as_bytes());
    let (status, msg) = error_of(&s, gz(&tar)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        msg,
        format!(
            "tar extension header (GNU long name) in the chart package is larger than 4096 bytes {FILE_LIMIT_MSG}"
        )
    );
    let mut tar = Vec::new();
    let pax = pax_record("path", &format!("c/{}", "p".repeat(5000)));
    entry(&mut tar, "PaxHeaders/x", b'x', pax.as_bytes());
    entry(&mut tar, "c/x", b'0', b"");
    let (_, msg) = error_of(&s, gz(&tar)).await;
    assert_eq!(
        msg,
        format!(
            "tar extension header (PAX records) in the chart package is larger than 4096 bytes {FILE_LIMIT_MSG}"
        )
    );
}

/// Long names within the limits are read as Helm reads them: GNU long names (as the tar crate
/// and GNU tar write them), PAX `path` records (as Python and Go write them), ustar prefixes.
#[tokio::test]
async fn long_names_within_the_limits_work() {
    let s = Server::new(&[]).await;
    let long = format!("templates/{}.yaml", "t".repeat(180));
    let pkg = tgz(&[
        ("long/Chart.yaml", &chart_yaml("long")),
        (&format!("long/{long}"), "kind: Pod\n"),
    ]);
    assert_eq!(s.post("/api/charts", pkg).await.status, StatusCode::CREATED);
    let r = s.get("/api/charts/long/1.0.0/templates").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["templates"][0]["name"], long);

    let mut tar = Vec::new();
    let pax_name = format!("pax/templates/{}.yaml", "p".repeat(200));
    entry(
        &mut tar,
        "PaxHeaders/0",
        b'x',
        pax_record("path", "pax/Chart.yaml").as_bytes(),
    );
    entry(&mut tar, "ignored", b'0', chart_yaml("pax").as_bytes());
    entry(
        &mut tar,
        "PaxHeaders/1",
        b'x',
        pax_record("path", &pax_name).as_bytes(),
    );
    entry(&mut tar, "ignored-too", b'0', b"kind: Pod\n");
    tar.extend_from_slice(&[0; 1024]);
    let r = s.post("/api/charts", gz(&tar)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = s.get("/api/charts/pax/1.0.0/templates").await;
    assert_eq!(
        r.json()["templates"][0]["name"],
        pax_name.trim_start_matches("pax/")
    );
}

/// The per-file limit applies to every file (Helm refuses a chart with any file over it), and
/// exactly the limit is accepted.
#[tokio::test]
async fn per_file_limit_exact() {
    let s = Server::new(&["--max-decompressed-file-size", "1000"]).await;
    let ok = tgz(&[
        ("c/Chart.yaml", &chart_yaml("c")),
        ("c/templates/big.yaml", &"x".repeat(1000)),
    ]);
    assert_eq!(s.post("/api/charts", ok).await.status, StatusCode::CREATED);
    let over = tgz(&[
        ("d/Chart.yaml", &chart_yaml("d")),
        ("d/files/big.bin", &"x".repeat(1001)),
    ]);
    assert_eq!(
        error_of(&s, over).await,
        (
            StatusCode::BAD_REQUEST,
            format!(
                "file \"d/files/big.bin\" in the chart package is larger than 1000 bytes {FILE_LIMIT_MSG}"
            )
        )
    );
    // Helm's default: 5 MiB.
    let s = Server::new(&[]).await;
    let mut tar = Vec::new();
    entry(&mut tar, "e/Chart.yaml", b'0', chart_yaml("e").as_bytes());
    tar.extend_from_slice(&header("e/huge", b'0', (5 << 20) + 1));
    let (_, msg) = error_of(&s, gz(&tar)).await;
    assert_eq!(
        msg,
        format!(
            "file \"e/huge\" in the chart package is larger than 5242880 bytes {FILE_LIMIT_MSG}"
        )
    );
}

/// The per-chart limit counts the whole tar stream, extension headers included.
#[tokio::test]
async fn per_chart_limit_exact() {
    let s = Server::new(&["--max-decompressed-chart-size", "20000"]).await;
    let small = chart("small", "1.0.0");
    assert_eq!(
        s.post("/api/charts", small).await.status,
        StatusCode::CREATED
    );
    let body = "y".repeat(4000);
    let files: Vec<(String, &str)> = (0..6)
        .map(|i| (format!("big/templates/t{i}.yaml"), body.as_str()))
        .collect();
    let mut list: Vec<(&str, &str)> = vec![(
        "big/Chart.yaml",
        "apiVersion: v2\nname: big\nversion: 1.0.0\n",
    )];
    list.extend(files.iter().map(|(p, b)| (p.as_str(), *b)));
    assert_eq!(
        error_of(&s, tgz(&list)).await,
        (
            StatusCode::BAD_REQUEST,
            format!("chart package decompresses to more than 20000 bytes {CHART_LIMIT_MSG}")
        )
    );
    // Zero-size entries cost their headers: a flood of them is refused too.
    let mut tar = Vec::new();
    entry(
        &mut tar,
        "flood/Chart.yaml",
        b'0',
        chart_yaml("flood").as_bytes(),
    );
    for i in 0..100 {
        entry(&mut tar, &format!("flood/e{i}"), b'0', b"");
    }
    assert_eq!(
        error_of(&s, gz(&tar)).await.1,
        format!("chart package decompresses to more than 20000 bytes {CHART_LIMIT_MSG}")
    );
}

/// YAML whose aliases expand to far more than its text: `width` items, then `aliases`
/// references to them.
fn laughs(width: usize, aliases: usize) -> String {
    let mut y = String::from("lol: &a [");
    for i in 0..width {
        y.push_str(if i == 0 { "1" } else { ",1" });
    }
    y.push_str("]\nlols: [");
    for i in 0..aliases {
        y.push_str(if i == 0 { "*a" } else { ",*a" });
    }
    y.push_str("]\n");
    y
}

/// A billion laughs in Chart.yaml gets its own error, not "too large" for the package.
#[tokio::test]
async fn billion_laughs_in_chart_yaml() {
    let s = Server::new(&[]).await;
    let text = format!("{}{}", chart_yaml("laughs"), laughs(1000, 2000));
    let pkg = tgz(&[("laughs/Chart.yaml", &text)]);
    assert_eq!(
        error_of(&s, pkg).await,
        (
            StatusCode::BAD_REQUEST,
            "Chart.yaml: the parsed YAML would take more than 41943040 bytes (aliases expanded; \
             8 times max-decompressed-file-size)"
                .to_string()
        )
    );
    // A Chart.yaml over 1 MiB is refused as such.
    let big = format!(
        "{}description: {}\n",
        chart_yaml("big"),
        "d".repeat(1 << 20)
    );
    let (status, msg) = error_of(&s, tgz(&[("big/Chart.yaml", &big)])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(msg, "Chart.yaml is larger than 1048576 bytes");
}

async fn get(app: &App, path: &str) -> (StatusCode, Bytes) {
    let req = Request::get(path).body(Full::new(Bytes::new())).unwrap();
    let resp = app.handle(req).await;
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// A values.yaml bomb: `/templates` refuses it with 422 and says why, `/values` serves the
/// stored text, and meanwhile `/health` answers within 100 ms on a single-threaded runtime
/// (the daemon's): the parsing runs off the runtime thread.
#[tokio::test(flavor = "current_thread")]
async fn values_bomb_keeps_health_answering() {
    let s = Server::new(&[]).await;
    let values = laughs(1000, 3000);
    let pkg = tgz(&[
        ("bomb/Chart.yaml", &chart_yaml("bomb")),
        ("bomb/values.yaml", &values),
        ("bomb/templates/a.yaml", "kind: Pod\n"),
    ]);
    assert!(pkg.len() < 40_000, "{} bytes", pkg.len());
    assert_eq!(s.post("/api/charts", pkg).await.status, StatusCode::CREATED);

    let app: Arc<App> = s.app.clone();
    let work = tokio::spawn(async move {
        let t = get(&app, "/api/charts/bomb/1.0.0/templates").await;
        let v = get(&app, "/api/charts/bomb/1.0.0/values").await;
        (t, v)
    });
    // Each probe is timed from when it is due (after a 5 ms pause) to its answer: a runtime
    // thread busy with the bomb delays the wake-up as it would delay a client's request.
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while !work.is_finished() {
        let pause = Duration::from_millis(5);
        let t = Instant::now();
        tokio::time::sleep(pause).await;
        let (status, _) = get(&s.app, "/health").await;
        worst = worst.max(t.elapsed().saturating_sub(pause));
        probes += 1;
        assert_eq!(status, StatusCode::OK);
    }
    let ((ts, tbody), (vs, vbody)) = work.await.unwrap();
    assert!(probes >= 1);
    assert!(
        worst < Duration::from_millis(100),
        "/health took {worst:?} while a values bomb was parsed ({probes} probes)"
    );
    assert_eq!(ts, StatusCode::UNPROCESSABLE_ENTITY);
    let err: serde_json::Value = serde_json::from_slice(&tbody).unwrap();
    assert_eq!(
        err["error"],
        "values.yaml: the parsed YAML would take more than 41943040 bytes (aliases expanded; \
         8 times max-decompressed-file-size)"
    );
    assert_eq!(vs, StatusCode::OK);
    assert_eq!(vbody, values.as_bytes());
}

/// A smaller answer limit: `/templates` of a chart whose templates would not fit is 422.
#[tokio::test]
async fn templates_answer_is_bounded() {
    let s = Server::new(&[
        "--max-decompressed-chart-size",
        "46000",
        "--max-decompressed-file-size",
        "10000",
    ])
    .await;
    // 4 templates of 9,900 bytes fit in the package (about 44.5 kB of tar stream), not in the
    // answer once base64-encoded (about 53 kB).
    let t = "z".repeat(9900);
    let pkg = tgz(&[
        ("wide/Chart.yaml", &chart_yaml("wide")),
        ("wide/templates/a.yaml", &t),
        ("wide/templates/b.yaml", &t),
        ("wide/templates/c.yaml", &t),
        ("wide/templates/d.yaml", &t),
    ]);
    assert_eq!(s.post("/api/charts", pkg).await.status, StatusCode::CREATED);
    let r = s.get("/api/charts/wide/1.0.0/templates").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        r.json()["error"],
        "the answer would be larger than 46000 bytes (max-decompressed-chart-size)"
    );
}

/// Configuration: the limits must be positive whole numbers.
#[test]
fn limits_must_be_positive() {
    for bad in ["0", "-1", "lots"] {
        let args = chartroom::config::parse_args(&[
            "--max-decompressed-file-size".to_string(),
            bad.to_string(),
        ]);
        let err = match args {
            Err(e) => e.to_string(),
            Ok(a) => chartroom::config::load(&a, &|_| None, None)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default(),
        };
        assert!(
            err.contains("maxdecompressedfilesize") || err.contains("max-decompressed-file-size"),
            "{bad}: {err}"
        );
    }
}

/// `GET /api/charts` windows are slices of one prepared buffer: two requests, with or without
/// offset/limit, share its bytes (memory per response does not grow with concurrency), and the
/// answer changes after an upload.
#[tokio::test]
async fn api_charts_served_from_shared_bytes() {
    let s = Server::new(&[]).await;
    for i in 0..5 {
        let r = s
            .post("/api/charts", chart(&format!("c{i}"), "1.0.0"))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let whole = s.get("/api/charts").await;
    let again = s.get("/api/charts").await;
    assert_eq!(whole.body, again.body);
    let w = s.get("/api/charts?offset=1&limit=2").await.json();
    let names: Vec<&String> = w.as_object().unwrap().keys().collect();
    assert_eq!(names, ["c1", "c2"]);
    assert_eq!(
        s.get("/api/charts?offset=9").await.text(),
        "{}",
        "a window past the end is an empty object"
    );
    let req = Request::get("/api/charts?offset=1&limit=2")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = s.app.handle(req).await;
    let exact = http_body::Body::size_hint(resp.body()).exact();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(exact, Some(body.len() as u64), "Content-Length is known");
    s.post("/api/charts", chart("c9", "1.0.0")).await;
    assert!(s.get("/api/charts").await.json().get("c9").is_some());
}
