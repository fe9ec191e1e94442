//! One function per endpoint.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use super::route::Endpoint;
use super::{ApiError, App, Body, empty, full, json_response};
use crate::chart::{self, Metadata};
use crate::config::Config;
use crate::keylock::{KeyGuard, KeyLock};
use crate::repository::{Registry, Repo, sha256_hex};
use crate::storage::{StorageError, join};

const WELCOME: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>chartroom</title>\n</head>\n<body>\n\
<h1>chartroom</h1>\n<p>This is a Helm chart repository. Add it with\n\
<code>helm repo add &lt;name&gt; &lt;this URL&gt;</code>.</p>\n</body>\n</html>\n";

pub(super) struct Ctx<'a> {
    pub app: &'a App,
    pub cfg: &'a Config,
    pub registry: &'a Arc<Registry>,
    pub repo_key: &'a str,
    pub force: bool,
    pub query: &'a str,
    pub content_type: &'a str,
    pub body: Bytes,
}

type Result<T> = std::result::Result<T, ApiError>;

fn with_type(mut resp: Response<Body>, ct: &'static str) -> Response<Body> {
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

fn ok_body(data: impl Into<Bytes>, ct: &'static str) -> Response<Body> {
    with_type(Response::new(full(data)), ct)
}

fn head_only(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

impl Ctx<'_> {
    pub async fn run(self, endpoint: Endpoint) -> Result<Response<Body>> {
        match endpoint {
            Endpoint::Welcome => Ok(ok_body(WELCOME, "text/html")),
            Endpoint::Health => self.health(),
            Endpoint::Info => Ok(json_response(
                StatusCode::OK,
                format!("{{\"version\":\"{}\"}}", super::VERSION),
            )),
            Endpoint::ArtifactHub => self.artifacthub(),
            // Answered by `App::handle` before dispatching (it needs the request's headers).
            Endpoint::Metrics => Err(ApiError::RouteNotFound),
            Endpoint::Index { head: true } => Ok(head_only(StatusCode::OK)),
            Endpoint::Index { head: false } => self.index().await,
            Endpoint::ChartFile { file, head } => self.chart_file(&file, head).await,
            Endpoint::ListCharts => self.list_charts().await,
            Endpoint::ChartVersions { name, head } => self.chart_versions(&name, head).await,
            Endpoint::ChartVersion {
                name,
                version,
                head,
            } => self.chart_version(&name, &version, head).await,
            Endpoint::Templates { name, version } => self.templates(&name, &version).await,
            Endpoint::Values { name, version } => self.values(&name, &version).await,
            Endpoint::UploadChart => self.upload().await,
            Endpoint::UploadProv => self.upload_prov_raw().await,
            Endpoint::Delete { name, version } => self.delete(&name, &version).await,
        }
    }

    fn health(&self) -> Result<Response<Body>> {
        let live = self.registry.storage.problem();
        let refreshed = self.app.storage_problem.load();
        let problem = live.unwrap_or_else(|| refreshed.as_str().to_string());
        if problem.is_empty() {
            Ok(json_response(StatusCode::OK, "{\"healthy\":true}"))
        } else {
            let body = serde_json::json!({
                "healthy": false,
                "error": problem,
                "storage": self.registry.storage.describe(),
            });
            Ok(json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                body.to_string(),
            ))
        }
    }

    fn artifacthub(&self) -> Result<Response<Body>> {
        match self.cfg.artifact_hub_ids.get(self.repo_key) {
            Some(id) => {
                let yaml = serde_norway::to_string(&serde_json::json!({ "repositoryID": id }))
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                Ok(ok_body(yaml, "application/x-yaml"))
            }
            None => Err(ApiError::NotFound(
                "Artifact Hub repository ID not found".into(),
            )),
        }
    }

    async fn repo(&self) -> Result<Arc<Repo>> {
        let repo = self.registry.repo(self.repo_key).await?;
        if self.cfg.always_regenerate {
            repo.refresh(self.registry.storage.as_ref(), &self.registry.settings)
                .await?;
        }
        Ok(repo)
    }

    async fn index(&self) -> Result<Response<Body>> {
        let repo = self.repo().await?;
        let pieces = repo.index().pieces();
        Ok(with_type(
            Response::new(pieces_body(pieces.parts())),
            "application/x-yaml",
        ))
    }

    async fn chart_file(&self, file: &str, head: bool) -> Result<Response<Body>> {
        let ct = if file.ends_with(".tgz") {
            "application/x-tar"
        } else if file.ends_with(".tgz.prov") {
            "application/pgp-signature"
        } else {
            return Err(ApiError::BadExtension);
        };
        if !chart::is_plain_file_name(file) {
            return Err(ApiError::NotFound("object not found".into()));
        }
        let path = join(self.repo_key, file);
        let storage = &self.registry.storage;
        let (size, body) = if head {
            (storage.stat(&path).await?.size, empty())
        } else {
            use futures_util::TryStreamExt;
            use http_body_util::BodyExt;
            let obj = storage.get_stream(&path).await?;
            let frames = obj.stream.map_ok(http_body::Frame::data);
            (obj.size, http_body_util::StreamBody::new(frames).boxed())
        };
        let mut r = Response::new(body);
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        Ok(r)
    }

    async fn list_charts(&self) -> Result<Response<Body>> {
        let mut offset: Option<usize> = None;
        let mut limit: Option<usize> = None;
        for pair in self.query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "offset" => {
                    offset = Some(v.parse().map_err(|_| {
                        ApiError::BadRequest("offset is not a valid non-negative integer".into())
                    })?)
                }
                "limit" => {
                    let n: usize = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        ApiError::BadRequest("limit is not a valid positive integer".into())
                    })?;
                    limit = Some(n);
                }
                _ => {}
            }
        }
        let repo = self.repo().await?;
        // Prepared bytes, rebuilt once per change; a window is slices of them, so a response
        // holds no copy of its own however many are in flight.
        let prepared = repo.index().charts_json();
        let pieces = prepared.window(offset.unwrap_or(0), limit.unwrap_or(usize::MAX));
        let mut resp = json_response(StatusCode::OK, Bytes::new());
        *resp.body_mut() = slices_body(pieces);
        Ok(resp)
    }

    async fn chart_versions(&self, name: &str, head: bool) -> Result<Response<Body>> {
        let repo = self.repo().await?;
        let body = repo.index().chart_json(name);
        match (body, head) {
            (Some(_), true) => Ok(head_only(StatusCode::OK)),
            (Some(b), false) => Ok(json_response(StatusCode::OK, b)),
            (None, true) => Ok(head_only(StatusCode::NOT_FOUND)),
            (None, false) => Err(ApiError::NotFound("chart not found".into())),
        }
    }

    async fn lookup(&self, name: &str, version: &str) -> Result<Arc<crate::index::Entry>> {
        let repo = self.repo().await?;
        let found = repo.index().lookup(name, version);
        found.map_err(|e| ApiError::NotFound(e.to_string()))
    }

    async fn chart_version(&self, name: &str, version: &str, head: bool) -> Result<Response<Body>> {
        match (self.lookup(name, version).await, head) {
            (Ok(_), true) => Ok(head_only(StatusCode::OK)),
            (Ok(e), false) => Ok(json_response(StatusCode::OK, e.json_bytes())),
            (Err(_), true) => Ok(head_only(StatusCode::NOT_FOUND)),
            (Err(e), false) => Err(e),
        }
    }

    /// Reads a stored version's package and runs `f` on it off the runtime thread (gated, see
    /// [`chart::parse_off_thread`]). A limit hit is 422 (the stored chart cannot be shown
    /// within this server's limits; asking again will not help), another failure 500.
    async fn with_package<T: Send + 'static>(
        &self,
        name: &str,
        version: &str,
        f: fn(&[u8], &chart::Limits) -> std::result::Result<T, chart::ChartError>,
    ) -> Result<T> {
        let entry = self.lookup(name, version).await?;
        let data = self
            .registry
            .storage
            .get(&join(self.repo_key, &entry.file))
            .await?;
        let limits = self.cfg.chart_limits;
        chart::parse_off_thread(move || f(&data, &limits))
            .await
            .map_err(|e| {
                if e.is_limit() {
                    ApiError::Unprocessable(e.to_string())
                } else {
                    ApiError::Internal(e.to_string())
                }
            })
    }

    async fn templates(&self, name: &str, version: &str) -> Result<Response<Body>> {
        let body = self
            .with_package(name, version, chart::templates_json)
            .await?;
        Ok(json_response(StatusCode::OK, body))
    }

    async fn values(&self, name: &str, version: &str) -> Result<Response<Body>> {
        match self.with_package(name, version, chart::read_values).await? {
            Some(v) => Ok(ok_body(v, "application/yaml")),
            None => Err(ApiError::NotFound("values.yaml not found".into())),
        }
    }

    fn overwrite_allowed(&self) -> bool {
        self.cfg.allow_overwrite || (self.force && !self.cfg.disable_force_overwrite)
    }

    async fn check_storage_limit(&self, file: &str) -> Result<()> {
        let max = self.cfg.max_storage_objects;
        if max == 0 {
            return Ok(());
        }
        let objects = self.registry.storage.list(self.repo_key).await?;
        if objects.len() >= max {
            // As ChartMuseum: an existing file is a conflict before it is a full repository.
            match (
                objects.iter().any(|o| o.name == file),
                self.overwrite_allowed(),
            ) {
                (true, true) => {}
                (true, false) => return Err(ApiError::Conflict("file already exists".into())),
                (false, _) => return Err(ApiError::StorageLimit),
            }
        }
        Ok(())
    }

    /// With `per-chart-limit` N, a chart keeps its N highest versions. An upload of a version
    /// below all of them would be removed again at once: it is refused rather than answered
    /// "saved".
    fn check_per_chart_limit(&self, repo: &Repo, meta: &Metadata) -> Result<()> {
        let limit = self.cfg.per_chart_limit;
        if limit == 0 {
            return Ok(());
        }
        let idx = repo.index();
        let Some(list) = idx.chart_versions(&meta.name) else {
            return Ok(());
        };
        if list.len() < limit || list.iter().any(|e| e.version == meta.version) {
            return Ok(());
        }
        let lowest_kept = &list[limit - 1].version;
        if crate::version::cmp_desc(&meta.version, lowest_kept) == std::cmp::Ordering::Greater {
            return Err(ApiError::ChartLimit(format!(
                "per-chart-limit: {} keeps its {limit} highest versions and {} is lower than {lowest_kept}",
                meta.name, meta.version
            )));
        }
        Ok(())
    }

    /// Stores one object, creating it only if absent unless overwriting is allowed.
    async fn store(
        &self,
        file: &str,
        data: Bytes,
        conflict: &str,
    ) -> Result<crate::storage::ObjectMeta> {
        let storage = &self.registry.storage;
        let path = join(self.repo_key, file);
        let res = if self.overwrite_allowed() {
            storage.put(&path, data).await
        } else {
            storage.put_if_absent(&path, data).await
        };
        res.map_err(|e| match e {
            StorageError::AlreadyExists(_) => ApiError::Conflict(conflict.into()),
            other => ApiError::Storage(other),
        })
    }

    async fn upload(&self) -> Result<Response<Body>> {
        let media = self
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if media == "multipart/form-data" {
            return self.upload_multipart().await;
        }
        let body = self.body.clone();
        let limits = self.cfg.chart_limits;
        let meta =
            chart::parse_off_thread(move || chart::read_metadata_with(&body, &limits)).await?;
        let file = meta.file_name();
        check_upload_file_name(&file)?;
        self.check_storage_limit(&file).await?;
        let repo = self.registry.repo_in_use(self.repo_key).await?;
        let held = self.lock_file(&file).await;
        self.store_chart(&repo, &meta, self.body.clone(), "file already exists")
            .await?;
        drop(held);
        self.apply_per_chart_limit(&repo, &meta.name).await;
        Ok(saved())
    }

    /// Holds the lock of one chart file of this repository (see [`FILE_LOCKS`]).
    async fn lock_file(&self, file: &str) -> KeyGuard<'static> {
        let key = format!(
            "{}\0{}",
            self.registry.storage.describe(),
            join(self.repo_key, file)
        );
        FILE_LOCKS.lock(&key).await
    }

    /// Stores a chart and records it in the index. The caller holds the chart file's lock
    /// ([`Ctx::lock_file`]) and applies the per-chart limit once it let go of it.
    async fn store_chart(
        &self,
        repo: &Arc<Repo>,
        meta: &Metadata,
        data: Bytes,
        conflict: &str,
    ) -> Result<()> {
        self.check_per_chart_limit(repo, meta)?;
        let file = meta.file_name();
        let digest = {
            let data = data.clone();
            chart::off_thread(move || sha256_hex(&data)).await
        };
        let stored = self.store(&file, data, conflict).await?;
        repo.record_upload(meta, &digest, &stored);
        Ok(())
    }

    /// Keeps at most `per-chart-limit` versions of a chart: the lowest versions go, with their
    /// provenance files.
    async fn apply_per_chart_limit(&self, repo: &Arc<Repo>, name: &str) {
        let limit = self.cfg.per_chart_limit;
        if limit == 0 {
            return;
        }
        let extra: Vec<String> = {
            let idx = repo.index();
            match idx.chart_versions(name) {
                Some(list) if list.len() > limit => {
                    list[limit..].iter().map(|e| e.file.clone()).collect()
                }
                _ => return,
            }
        };
        for file in extra {
            let storage = &self.registry.storage;
            let _held = self.lock_file(&file).await;
            match storage.delete(&repo.path(&file)).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {
                    let _ = storage.delete(&repo.path(&format!("{file}.prov"))).await;
                    repo.record_delete(&file);
                    crate::info!("removed old version (per-chart-limit)", "repo" => repo.key.as_str(), "file" => &file);
                }
                Err(e) => {
                    crate::warn!("cannot remove old version", "file" => &file, "error" => &e.to_string())
                }
            }
        }
    }

    async fn upload_multipart(&self) -> Result<Response<Body>> {
        let boundary = multer::parse_boundary(self.content_type)
            .map_err(|e| ApiError::BadRequest(format!("bad multipart request: {e}")))?;
        let body = self.body.clone();
        let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
        let mut form = multer::Multipart::new(stream, boundary);
        let chart_fields = ["chart", self.cfg.chart_field.as_str()];
        let prov_fields = ["prov", self.cfg.prov_field.as_str()];
        let mut chart_data: Option<Bytes> = None;
        let mut prov_data: Option<Bytes> = None;
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(ApiError::BadRequest(format!("bad multipart request: {e}"))),
            };
            let name = field.name().unwrap_or("").to_string();
            let is_chart = chart_fields.contains(&name.as_str());
            let is_prov = prov_fields.contains(&name.as_str());
            let data = field
                .bytes()
                .await
                .map_err(|e| ApiError::BadRequest(format!("bad multipart request: {e}")))?;
            if is_chart && chart_data.is_none() {
                chart_data = Some(data);
            } else if is_prov && prov_data.is_none() {
                prov_data = Some(data);
            }
        }
        if chart_data.is_none() && prov_data.is_none() {
            return Err(ApiError::BadRequest(format!(
                "no package or provenance file found in form fields {} and {}",
                self.cfg.chart_field, self.cfg.prov_field
            )));
        }
        let meta = match &chart_data {
            Some(d) => {
                let d = d.clone();
                let limits = self.cfg.chart_limits;
                Some(chart::parse_off_thread(move || chart::read_metadata_with(&d, &limits)).await?)
            }
            None => None,
        };
        let prov_file = match &prov_data {
            Some(d) => Some(
                chart::provenance_file_name(d)
                    .map_err(|_| ApiError::BadRequest("invalid provenance file".into()))?,
            ),
            None => None,
        };
        for f in meta
            .iter()
            .map(Metadata::file_name)
            .chain(prov_file.clone())
        {
            check_upload_file_name(&f)?;
        }
        let repo = self.registry.repo_in_use(self.repo_key).await?;
        let storage = &self.registry.storage;
        if !self.overwrite_allowed() {
            if let Some(pf) = &prov_file {
                match storage.get(&repo.path(pf)).await {
                    Ok(_) => return Err(ApiError::Conflict("chart already exists".into())),
                    Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if let Some(f) = meta.as_ref().map(Metadata::file_name) {
            self.check_storage_limit(&f).await?;
        }
        // The chart file's lock (of the chart the provenance file belongs to, when only that
        // comes) is held until both files are stored or the chart is taken back.
        let chart_file = match (&meta, &prov_file) {
            (Some(m), _) => m.file_name(),
            (None, Some(pf)) => pf.strip_suffix(".prov").unwrap_or(pf).to_string(),
            (None, None) => String::new(),
        };
        let held = self.lock_file(&chart_file).await;
        if let (Some(meta), Some(data)) = (&meta, chart_data) {
            self.store_chart(&repo, meta, data, "chart already exists")
                .await?;
        }
        if let (Some(pf), Some(data)) = (prov_file, prov_data) {
            if let Err(e) = self.store(&pf, data, "chart already exists").await {
                // Do not leave a chart without the provenance file that came with it.
                if let Some(meta) = &meta {
                    let file = meta.file_name();
                    if !self.overwrite_allowed() && storage.delete(&repo.path(&file)).await.is_ok()
                    {
                        repo.record_delete(&file);
                    }
                }
                return Err(e);
            }
        }
        drop(held);
        if let Some(meta) = &meta {
            self.apply_per_chart_limit(&repo, &meta.name).await;
        }
        Ok(saved())
    }

    async fn upload_prov_raw(&self) -> Result<Response<Body>> {
        let file = chart::provenance_file_name(&self.body)
            .map_err(|_| ApiError::BadRequest("invalid provenance file".into()))?;
        check_upload_file_name(&file)?;
        self.check_storage_limit(&file).await?;
        // With the chart's lock, so that a delete of the chart removes both or neither.
        let _held = self
            .lock_file(file.strip_suffix(".prov").unwrap_or(&file))
            .await;
        self.store(&file, self.body.clone(), "file already exists")
            .await?;
        Ok(saved())
    }

    async fn delete(&self, name: &str, version: &str) -> Result<Response<Body>> {
        let file = format!("{name}-{version}.tgz");
        if !chart::is_plain_file_name(&file) {
            return Err(ApiError::BadRequest(format!(
                "{file} is improperly formatted"
            )));
        }
        let repo = self.registry.repo(self.repo_key).await?;
        let storage = &self.registry.storage;
        let _held = self.lock_file(&file).await;
        match storage.delete(&repo.path(&file)).await {
            Ok(()) => {}
            Err(StorageError::NotFound(_)) => {
                return Err(ApiError::NotFound(format!(
                    "chart not found: {name}-{version}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
        let _ = storage.delete(&repo.path(&format!("{file}.prov"))).await;
        repo.record_delete(&file);
        Ok(json_response(StatusCode::OK, "{\"deleted\":true}"))
    }
}

/// A body made of shared byte slices sent one after the other, with its exact length.
struct Slices {
    parts: Arc<[Bytes]>,
    next: usize,
}

impl http_body::Body for Slices {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::result::Result<http_body::Frame<Bytes>, std::io::Error>>> {
        while let Some(b) = self.parts.get(self.next).cloned() {
            self.next += 1;
            if !b.is_empty() {
                return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(b))));
            }
        }
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.parts[self.next.min(self.parts.len())..]
            .iter()
            .all(Bytes::is_empty)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let rest = &self.parts[self.next.min(self.parts.len())..];
        http_body::SizeHint::with_exact(rest.iter().map(|b| b.len() as u64).sum())
    }
}

fn slices_body(pieces: Vec<Bytes>) -> Body {
    pieces_body(pieces.into())
}

fn pieces_body(parts: Arc<[Bytes]>) -> Body {
    use http_body_util::BodyExt;
    Slices { parts, next: 0 }.boxed()
}

/// The longest file name a stored chart or provenance file may have, in bytes (the limit of
/// common file systems, `NAME_MAX`), so that an upload storage could not keep is a 400.
pub const MAX_FILE_NAME_BYTES: usize = crate::storage::local::NAME_MAX;

/// Per stored chart file: held by an upload from the write to the index update, and by a
/// delete from the removal to the index update, so that after every request the index
/// describes what storage holds. Keyed by backend and path; an entry lives only while used.
static FILE_LOCKS: std::sync::LazyLock<KeyLock> = std::sync::LazyLock::new(KeyLock::new);

/// Checks a file name an upload would store: a plain name, not hidden (a leading `.`), and
/// not longer than [`MAX_FILE_NAME_BYTES`].
fn check_upload_file_name(file: &str) -> Result<()> {
    if !chart::is_plain_file_name(file) {
        return Err(ApiError::BadRequest(format!(
            "{file} is improperly formatted"
        )));
    }
    if file.starts_with('.') {
        return Err(ApiError::BadRequest(format!(
            "{file}: a chart name must not start with '.' (such files are hidden)"
        )));
    }
    if file.len() > MAX_FILE_NAME_BYTES {
        return Err(ApiError::BadRequest(format!(
            "file name {}... is {} bytes long; the limit is {MAX_FILE_NAME_BYTES} bytes \
             (<name>-<version>.tgz and .tgz.prov)",
            file.chars().take(40).collect::<String>(),
            file.len()
        )));
    }
    Ok(())
}

fn saved() -> Response<Body> {
    json_response(StatusCode::CREATED, "{\"saved\":true}")
}
