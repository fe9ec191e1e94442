//! Shared helpers for the integration tests: chart packages built in memory and a server
//! handled in-process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chartroom::api::App;
use chartroom::config;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};

/// A name made unique with a random suffix (`name-1a2b3c4d`), for object prefixes.
pub fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// Runs `f` until it succeeds or `limit` passes.
pub async fn eventually<F, Fut>(limit: std::time::Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if f().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A gzip'd tar with the given (path, contents) entries.
pub fn tgz(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        if path.len() <= 100 {
            // Raw name field: the tar crate refuses `..` components, but hostile tests need
            // archives holding exactly such names (a chart named `..`).
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            builder.append(&h, body.as_bytes()).unwrap();
        } else {
            h.set_cksum();
            builder.append_data(&mut h, path, body.as_bytes()).unwrap();
        }
    }
    let tar = builder.into_inner().unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &tar).unwrap();
    enc.finish().unwrap()
}

/// A minimal valid chart package.
pub fn chart(name: &str, version: &str) -> Vec<u8> {
    let chart_yaml =
        format!("apiVersion: v2\nname: {name}\nversion: {version}\ndescription: test chart\n");
    tgz(&[
        (&format!("{name}/Chart.yaml"), &chart_yaml),
        (&format!("{name}/values.yaml"), "replicas: 1\n"),
        (&format!("{name}/templates/pod.yaml"), "kind: Pod\n"),
    ])
}

/// A provenance file naming a chart (unsigned; chartroom does not check signatures).
pub fn prov(name: &str, version: &str) -> Vec<u8> {
    format!(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\napiVersion: v2\nname: {name}\nversion: {version}\n\n...\nfiles:\n  {name}-{version}.tgz: sha256:00\n-----BEGIN PGP SIGNATURE-----\n\nwsBcBAEBCgAQBQJ\n-----END PGP SIGNATURE-----\n"
    )
    .into_bytes()
}

pub struct Server {
    pub app: Arc<App>,
    pub root: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn yaml(&self) -> serde_json::Value {
        serde_norway::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not YAML ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

impl Server {
    /// A server on a fresh temporary directory with the given extra command-line options.
    pub async fn new(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let mut s = Server::on(&root, extra).await;
        s._dir = Some(dir);
        s
    }

    /// A server around an application built elsewhere (on another backend).
    pub fn with_app(app: Arc<App>) -> Server {
        Server {
            app,
            root: PathBuf::new(),
            _dir: None,
        }
    }

    /// A server on an existing storage directory.
    pub async fn on(root: &Path, extra: &[&str]) -> Server {
        let mut args: Vec<String> = vec![
            "--storage".into(),
            "local".into(),
            "--storage-local-rootdir".into(),
            root.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let parsed = config::parse_args(&args).unwrap();
        let cfg = config::load(&parsed, &|_| None, None).unwrap();
        let registry = chartroom::daemon::build_registry(&cfg).await.unwrap();
        Server {
            app: Arc::new(App::new(&cfg, registry)),
            root: root.to_path_buf(),
            _dir: None,
        }
    }

    pub async fn req(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from(body))).unwrap();
        let resp = self.app.handle(req).await;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, vec![], &[]).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.req(Method::HEAD, path, vec![], &[]).await
    }

    pub async fn post(&self, path: &str, body: Vec<u8>) -> Resp {
        self.req(Method::POST, path, body, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, vec![], &[]).await
    }

    /// POSTs a multipart form of (field, file name, bytes) parts.
    pub async fn post_form(&self, path: &str, parts: &[(&str, &str, &[u8])]) -> Resp {
        let boundary = "XchartroomBoundaryX";
        let mut body = Vec::new();
        for (field, file, data) in parts {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let ct = format!("multipart/form-data; boundary={boundary}");
        self.req(Method::POST, path, body, &[("content-type", &ct)])
            .await
    }

    /// Reconciles every loaded repository with storage now (what the cache interval does).
    pub async fn refresh(&self) {
        self.app.registry.load().refresh_all().await.unwrap();
    }

    /// Names of the chart versions in an index, as "name-version".
    pub async fn index_versions(&self, path: &str) -> Vec<String> {
        let r = self.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v = r.yaml();
        let mut out = Vec::new();
        if let Some(entries) = v["entries"].as_object() {
            for (name, list) in entries {
                for e in list.as_array().unwrap() {
                    out.push(format!("{name}-{}", e["version"].as_str().unwrap()));
                }
            }
        }
        out
    }
}
