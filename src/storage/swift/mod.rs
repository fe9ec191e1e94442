//! OpenStack Swift storage (`storage.backend: openstack`), over Swift's HTTP API with reqwest.
//!
//! - **Names.** An object path `a/b.tgz` is the Swift object `<prefix>/a/b.tgz` in the container.
//!   [`Storage::list`] lists one "directory" with `delimiter=/` (deeper names come back folded
//!   into `subdir` entries, which are skipped), 10,000 names a page, paged with `marker`; a page
//!   shorter than the limit is the last, so an unchanged repository of up to 9,999 charts costs
//!   one request.
//! - **Times.** `modified_ns` comes from the listing's `last_modified` or, for one object, from
//!   `X-Timestamp`: the same instant, parsed exactly (see [`time`]), so an object that did not
//!   change never looks changed. The second-rounded `Last-Modified` header is not used for it.
//! - **Writes.** A PUT carries the MD5 as `ETag`, so Swift refuses (422) a body damaged on the
//!   way and stores nothing; an object is replaced whole or not at all. `put_if_absent` adds
//!   `If-None-Match: *` (412 when the object exists). Swift checks that condition when the PUT
//!   starts, so two PUTs that overlap can both pass it; the later one (by Swift's timestamp)
//!   is what stays. After every PUT the object is read back with HEAD: if its ETag is not ours,
//!   another writer won, and `put_if_absent` reports [`StorageError::AlreadyExists`] while
//!   `put` returns a `modified_ns` that matches no listing, so the index re-reads the object at
//!   its next refresh. Either way every instance's index converges on the bytes Swift kept.
//! - **Faults.** Every request has a timeout (`connect_timeout`, and `timeout` for the answer
//!   and between two reads of a body). Connection errors, timeouts, 5xx, 408 and 429 are
//!   retried with exponential backoff and jitter (all calls here are idempotent: GET, HEAD,
//!   PUT of whole objects, DELETE); when the tries are used up the call fails with
//!   [`StorageError::Unavailable`], which the API answers with 503, and [`Storage::problem`]
//!   says what is wrong until a call succeeds again. One call, all its tries and pauses
//!   included, ends by `request_timeout` (`storage.requesttimeout`, 30 s); after a call got no
//!   answer at all, calls fail at once for `remote::DOWN_RETRY`, then one goes out again
//!   (see `remote::bounded`). A 401 drops the token and logs in again
//!   (twice at most per call). Objects read recently are kept in a small memory cache
//!   (`cache_bytes`) that serves reads only while Swift cannot be reached. A retried DELETE
//!   that finds nothing, or a retried conditional PUT that finds its own bytes, counts as done.
//!
//! **Several chartroom instances on one container** need no coordination beyond Swift's own:
//! each keeps its index by listing (a refresh downloads only names whose size or time
//! changed), uploads are whole-object PUTs, and conflicting ones are settled as described under
//! *Writes*. The state file (`chartroom-state.json`) is only a cache of parsed index entries
//! keyed by each object's (size, time): every instance writes it whole with one PUT (Swift
//! replaces objects atomically, so a reader gets one writer's complete file, never a mix), and
//! every instance reconciles what it reads with a listing before using it. A state file
//! written by the other instance, older or newer, can therefore cost downloads but never put a
//! wrong entry in an index; the last writer wins and nothing needs a lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

pub mod auth;
pub mod time;

pub use auth::{AuthConfig, Secret};

pub(crate) use super::remote::error_text;
use super::remote::{
    self, Answer, Call, Failed, Head, Problem, RequestCounters, RequestStats, SharedCache, bump,
    content_type, enc, header, lock_cache, retryable_status,
};
use super::{ObjectMeta, ObjectStream, Result, Storage, StorageError, check_path, join};
use crate::config::StorageConfig;

/// Everything the Swift backend needs; [`SwiftSettings::from_config`] fills it from the
/// configuration, tests set it directly.
#[derive(Debug, Clone)]
pub struct SwiftSettings {
    pub container: String,
    /// Object name prefix inside the container (leading, trailing and doubled `/` dropped).
    pub prefix: String,
    /// PEM bundle of extra CA certificates (empty: the system's only).
    pub cacert: String,
    pub auth: AuthConfig,
    pub connect_timeout: Duration,
    /// Limit for an answer, and for the pause between two reads of a body.
    pub timeout: Duration,
    /// Limit for one call, all its tries and pauses included (plus 1 s per whole MiB sent).
    pub request_timeout: Duration,
    /// Tries of one call, the first included.
    pub attempts: u32,
    /// Pause before the second try; it doubles with each further try (with jitter).
    pub backoff: Duration,
    /// Names per listing request (Swift's maximum is 10,000).
    pub page_size: usize,
    /// Memory for recently read objects, served while Swift is unreachable (0: no cache).
    pub cache_bytes: usize,
}

impl SwiftSettings {
    pub fn new(container: &str, auth: AuthConfig) -> SwiftSettings {
        SwiftSettings {
            container: container.to_string(),
            prefix: String::new(),
            cacert: String::new(),
            auth,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            request_timeout: remote::REQUEST_TIMEOUT,
            attempts: 3,
            backoff: Duration::from_millis(250),
            page_size: 10_000,
            cache_bytes: 32 << 20,
        }
    }

    /// Settings for a `StorageConfig::OpenStack`; credentials come from the environment
    /// variables the configuration captured, or from the key/password files.
    pub fn from_config(cfg: &StorageConfig) -> Result<SwiftSettings> {
        let StorageConfig::OpenStack {
            container,
            prefix,
            region,
            cacert,
            auth,
            keyfile,
            passwordfile,
            connect_timeout,
            timeout,
            request_timeout,
            retries,
            env,
        } = cfg
        else {
            return Err(config_error("not an openstack storage configuration"));
        };
        let get = |k: &str| env.get(k);
        let auth = AuthConfig::from_env(auth, region, keyfile, passwordfile, &get)
            .map_err(config_error)?;
        let mut s = SwiftSettings::new(container, auth);
        s.prefix = prefix.clone();
        s.connect_timeout = *connect_timeout;
        s.timeout = *timeout;
        s.request_timeout = *request_timeout;
        s.attempts = retries + 1;
        s.cacert = if cacert.is_empty() {
            get("OS_CACERT").unwrap_or_default()
        } else {
            cacert.clone()
        };
        Ok(s)
    }
}

fn config_error(msg: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: "openstack".into(),
        message: msg.to_string(),
    }
}

/// Counts of requests sent to Swift (every try counts), for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SwiftStats {
    pub logins: u64,
    /// Tokens Swift rejected (401), each followed by a new login.
    pub reauths: u64,
    pub requests: RequestStats,
}

pub struct SwiftStorage {
    s: SwiftSettings,
    client: reqwest::Client,
    auth: auth::Authenticator,
    counters: RequestCounters,
    reauths: AtomicU64,
    cache: SharedCache,
    /// The last "unavailable" error, cleared by the next answer from Swift.
    problem: Problem,
}

#[derive(Deserialize)]
struct ListEntry {
    name: Option<String>,
    subdir: Option<String>,
    bytes: Option<u64>,
    last_modified: Option<String>,
}

impl SwiftStorage {
    pub fn new(mut s: SwiftSettings) -> Result<SwiftStorage> {
        s.prefix = remote::clean_prefix(&s.prefix)
            .ok_or_else(|| config_error(format!("invalid prefix {:?}", s.prefix)))?;
        if s.container.is_empty() || s.container.contains('/') {
            return Err(config_error(format!(
                "invalid container name {:?}",
                s.container
            )));
        }
        s.attempts = s.attempts.max(1);
        s.page_size = s.page_size.clamp(1, 10_000);
        let client =
            remote::http_client(s.connect_timeout, s.timeout, &s.cacert).map_err(config_error)?;
        let auth = auth::Authenticator::new(s.auth.clone(), client.clone(), s.timeout);
        Ok(SwiftStorage {
            cache: remote::ReadCache::shared(s.cache_bytes),
            s,
            client,
            auth,
            counters: RequestCounters::default(),
            reauths: AtomicU64::new(0),
            problem: Problem::default(),
        })
    }

    /// Builds the backend for a `StorageConfig::OpenStack`.
    pub fn from_config(cfg: &StorageConfig) -> Result<SwiftStorage> {
        SwiftStorage::new(SwiftSettings::from_config(cfg)?)
    }

    pub fn settings(&self) -> &SwiftSettings {
        &self.s
    }

    pub async fn stats(&self) -> SwiftStats {
        SwiftStats {
            logins: self.auth.logins().await,
            reauths: self.reauths.load(Ordering::Relaxed),
            requests: self.counters.snapshot(),
        }
    }

    fn key(&self, path: &str) -> Result<String> {
        check_path(path)?;
        Ok(join(&self.s.prefix, path))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, remote::ReadCache> {
        lock_cache(&self.cache)
    }

    fn url(&self, base: &str, key: Option<&str>, query: &[(&str, &str)]) -> String {
        let mut u = format!("{base}/{}", enc(&self.s.container));
        if let Some(k) = key {
            for seg in k.split('/') {
                u.push('/');
                u.push_str(&enc(seg));
            }
        }
        for (i, (k, v)) in query.iter().enumerate() {
            u.push(if i == 0 { '?' } else { '&' });
            u.push_str(k);
            u.push('=');
            u.push_str(&enc(v));
        }
        u
    }

    fn describe_call(&self, call: &Call<'_>) -> String {
        match call.key {
            Some(k) => format!("swift {} {}/{k}", call.method, self.s.container),
            None => format!("swift {} container {}", call.method, self.s.container),
        }
    }

    /// Sends a call, logging in as needed, retrying what can be retried, all within
    /// `request_timeout`; fails at once while Swift is known not to answer. Returns Swift's
    /// answer for anything but 401 and retryable statuses.
    async fn execute(&self, call: &Call<'_>) -> Result<Answer> {
        let what = self.describe_call(call);
        let limit = call.deadline(self.s.request_timeout);
        remote::bounded(&self.problem, &what, limit, |deadline| {
            self.execute_inner(call, deadline)
        })
        .await
    }

    async fn execute_inner(
        &self,
        call: &Call<'_>,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<Answer, Failed> {
        let mut attempt = 1u32;
        let mut reauths = 0u32;
        let mut ambiguous = false;
        loop {
            // Whether this try got no answer at all (from Swift, or from its auth service).
            let mut unanswered = true;
            let failure = match self.auth.token().await {
                Err(f) if !f.retryable => {
                    return Err(Failed::answered(StorageError::Unavailable(f.message)));
                }
                Err(f) => f.message,
                Ok(tok) => {
                    let url = self.url(&tok.storage_url, call.key, call.query);
                    let mut rb = self
                        .client
                        .request(call.method.clone(), &url)
                        .header("X-Auth-Token", &tok.value);
                    for (k, v) in call.headers {
                        rb = rb.header(*k, *v);
                    }
                    if let Some(b) = &call.body {
                        // Explicit, or an empty body goes without one (Swift: 411).
                        rb = rb
                            .header(http::header::CONTENT_LENGTH, b.len())
                            .body(b.clone());
                    }
                    self.counters.count(&call.method, call.key.is_some());
                    let limit = remote::try_limit(call.time_limit(self.s.timeout), deadline);
                    let sent = remote::send(rb, limit, call.streamed).await;
                    match sent {
                        Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                            if reauths < 2 {
                                reauths += 1;
                                bump(&self.reauths);
                                crate::debug!("swift token rejected; logging in again",
                                    "call" => &self.describe_call(call));
                                self.auth.invalidate(&tok).await;
                                continue;
                            }
                            return Err(Failed::answered(StorageError::Unavailable(format!(
                                "{}: Swift rejects the token it gave (401)",
                                self.describe_call(call)
                            ))));
                        }
                        Ok(resp) if retryable_status(resp.status()) => {
                            ambiguous = true;
                            unanswered = false;
                            format!("{}", resp.status())
                        }
                        Ok(resp) => return Ok(Answer { resp, ambiguous }),
                        Err((connect, msg)) => {
                            ambiguous |= !connect;
                            msg
                        }
                    }
                }
            };
            let give_up = |note: &str| Failed {
                error: StorageError::Unavailable(format!(
                    "{}: {failure} (after {attempt} tries{note})",
                    self.describe_call(call)
                )),
                unanswered,
            };
            if attempt >= self.s.attempts {
                return Err(give_up(""));
            }
            crate::debug!("swift call failed; retrying", "call" => &self.describe_call(call),
                "error" => failure.as_str(), "attempt" => attempt);
            if !remote::pause(self.s.backoff, attempt, deadline).await {
                return Err(give_up(
                    "; no time left for another (storage.requesttimeout)",
                ));
            }
            bump(&self.counters.retries);
            attempt += 1;
        }
    }

    fn unexpected(&self, what: &str, resp: &reqwest::Response) -> StorageError {
        StorageError::Io {
            path: what.to_string(),
            message: format!("Swift answered {}", resp.status()),
        }
    }

    fn reads(&self) -> remote::Reads<'_> {
        remote::Reads {
            service: "swift",
            cache: &self.cache,
            problem: &self.problem,
            counters: &self.counters,
            attempts: self.s.attempts,
            backoff: self.s.backoff,
        }
    }

    async fn write(&self, path: &str, data: Bytes, if_absent: bool) -> Result<ObjectMeta> {
        let key = self.key(path)?;
        let md5 = hex::encode(Md5::digest(&data));
        let mut headers: Vec<(&'static str, &str)> =
            vec![("ETag", md5.as_str()), ("Content-Type", content_type(path))];
        if if_absent {
            headers.push(("If-None-Match", "*"));
        }
        let ans = self
            .execute(&Call {
                headers: &headers,
                body: Some(data.clone()),
                ..Call::new(Method::PUT, Some(&key))
            })
            .await?;
        let status = ans.resp.status();
        let last_modified = header(&ans.resp, "last-modified").map(str::to_string);
        match status {
            s if s.is_success() => {}
            StatusCode::PRECONDITION_FAILED if if_absent => {
                // A try that timed out may have stored our bytes: then the upload is done.
                if !(ans.ambiguous && self.head_etag(&key).await.as_deref() == Some(&md5)) {
                    return Err(StorageError::AlreadyExists(path.to_string()));
                }
            }
            StatusCode::UNPROCESSABLE_ENTITY => {
                return Err(StorageError::Io {
                    path: key,
                    message: "Swift refused the upload: checksum mismatch (422)".into(),
                });
            }
            StatusCode::NOT_FOUND => {
                return Err(StorageError::Io {
                    path: key,
                    message: format!("container {} not found", self.s.container),
                });
            }
            _ => return Err(self.unexpected(&key, &ans.resp)),
        }
        // Read the object back: its listing time, and whether our bytes are what stayed.
        remote::settle_write(
            self,
            &self.cache,
            &key,
            path,
            data,
            if_absent,
            &md5,
            last_modified.as_deref(),
        )
        .await
    }

    async fn head_etag(&self, key: &str) -> Option<String> {
        self.head(key, true).await.ok().and_then(|h| h.etag)
    }

    /// HEAD of one object; with `newest`, Swift asks every replica and answers with the newest
    /// (right after a write, a replica that missed it must not answer).
    async fn head(&self, key: &str, newest: bool) -> Result<Head> {
        let ans = self
            .execute(&Call {
                headers: if newest { &[("X-Newest", "true")] } else { &[] },
                ..Call::new(Method::HEAD, Some(key))
            })
            .await?;
        let resp = &ans.resp;
        match resp.status() {
            s if s.is_success() => Ok(Head {
                size: header(resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                etag: <SwiftStorage as remote::Service>::body_md5(resp),
                modified_ns: header(resp, "x-timestamp").and_then(time::parse_x_timestamp),
            }),
            StatusCode::NOT_FOUND => Err(StorageError::NotFound(key.to_string())),
            _ => Err(self.unexpected(key, resp)),
        }
    }

    /// The listing time of one object (for Swift-compatible servers without `X-Timestamp`).
    async fn listed_time(&self, key: &str) -> Result<Option<i64>> {
        let page = self.list_page(key, "", 1, false).await?;
        Ok(page
            .into_iter()
            .find(|e| e.name.as_deref() == Some(key))
            .and_then(|e| e.last_modified)
            .and_then(|t| time::parse_iso8601(&t)))
    }

    async fn list_page(
        &self,
        prefix: &str,
        marker: &str,
        limit: usize,
        delimiter: bool,
    ) -> Result<Vec<ListEntry>> {
        let limit = limit.to_string();
        let mut query: Vec<(&str, &str)> = vec![("format", "json"), ("limit", &limit)];
        if !prefix.is_empty() {
            query.push(("prefix", prefix));
        }
        if delimiter {
            query.push(("delimiter", "/"));
        }
        if !marker.is_empty() {
            query.push(("marker", marker));
        }
        let ans = self
            .execute(&Call {
                query: &query,
                headers: &[("Accept", "application/json")],
                ..Call::new(Method::GET, None)
            })
            .await?;
        let resp = ans.resp;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NO_CONTENT => return Ok(Vec::new()),
            StatusCode::NOT_FOUND => {
                return Err(StorageError::Io {
                    path: self.s.container.clone(),
                    message: format!("container {} not found", self.s.container),
                });
            }
            _ => return Err(self.unexpected(&self.s.container, &resp)),
        }
        let body = resp.bytes().await.map_err(|e| {
            StorageError::Unavailable(format!(
                "swift GET container {}: {}",
                self.s.container,
                error_text(&e)
            ))
        })?;
        serde_json::from_slice(&body).map_err(|e| StorageError::Io {
            path: self.s.container.clone(),
            message: format!("listing is not the expected JSON: {e}"),
        })
    }
}

impl remote::Service for SwiftStorage {
    const NAME: &'static str = "Swift";

    fn reads(&self) -> remote::Reads<'_> {
        SwiftStorage::reads(self)
    }

    fn execute(&self, call: &Call<'_>) -> impl Future<Output = Result<Answer>> + Send {
        SwiftStorage::execute(self, call)
    }

    async fn refused(&self, key: &str, resp: reqwest::Response) -> StorageError {
        match resp.status() {
            StatusCode::NOT_FOUND => StorageError::NotFound(key.to_string()),
            _ => self.unexpected(key, &resp),
        }
    }

    /// The MD5 an answer's ETag promises for the body, when it is a plain object's.
    fn body_md5(resp: &reqwest::Response) -> Option<String> {
        if header(resp, "x-static-large-object").is_some()
            || header(resp, "x-object-manifest").is_some()
        {
            return None;
        }
        remote::md5_etag(header(resp, "etag")?)
    }
}

impl remote::ObjectReads for SwiftStorage {
    fn head(&self, key: &str, after_write: bool) -> impl Future<Output = Result<Head>> + Send {
        SwiftStorage::head(self, key, after_write)
    }

    fn listed_time(&self, key: &str) -> impl Future<Output = Result<Option<i64>>> + Send {
        SwiftStorage::listed_time(self, key)
    }
}

#[async_trait]
impl Storage for SwiftStorage {
    fn describe(&self) -> String {
        let mut d = format!("openstack:{}", self.s.container);
        if !self.s.prefix.is_empty() {
            d.push('/');
            d.push_str(&self.s.prefix);
        }
        format!("{d} (auth {})", self.s.auth.endpoint())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = remote::list_prefix(&self.s.prefix, prefix)?;
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let page = self
                .list_page(&full, &marker, self.s.page_size, true)
                .await?;
            let n = page.len();
            for e in page {
                let Some(name) = e.name else {
                    if let Some(sub) = e.subdir {
                        marker = sub;
                    }
                    continue;
                };
                let rel = name.strip_prefix(&full).unwrap_or(&name);
                let keep = !rel.is_empty() && !rel.contains('/');
                let meta = match (
                    keep,
                    e.bytes,
                    e.last_modified.as_deref().and_then(time::parse_iso8601),
                ) {
                    (true, Some(size), Some(ns)) => Some(ObjectMeta {
                        name: rel.to_string(),
                        size,
                        modified_ns: ns,
                    }),
                    (true, _, _) => {
                        crate::warn!("skipping a listing entry without size or time",
                            "object" => name.as_str());
                        None
                    }
                    _ => None,
                };
                out.extend(meta);
                marker = name;
            }
            if n < self.s.page_size {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let key = self.key(path)?;
        remote::get(self, &key, path).await
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        let key = self.key(path)?;
        remote::get_stream(self, key, path).await
    }

    async fn stat(&self, path: &str) -> Result<ObjectMeta> {
        let key = self.key(path)?;
        remote::stat(self, &key, path).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.write(path, data, false).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.write(path, data, true).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        self.cache().remove(&key);
        let ans = self.execute(&Call::new(Method::DELETE, Some(&key))).await?;
        // Again: a read that finished meanwhile may have put the old bytes back.
        self.cache().remove(&key);
        match ans.resp.status() {
            s if s.is_success() => Ok(()),
            // An earlier try that timed out may have deleted it.
            StatusCode::NOT_FOUND if ans.ambiguous => Ok(()),
            StatusCode::NOT_FOUND => Err(StorageError::NotFound(path.to_string())),
            _ => Err(self.unexpected(&key, &ans.resp)),
        }
    }

    fn problem(&self) -> Option<String> {
        self.problem.get()
    }

    fn request_stats(&self) -> Option<RequestStats> {
        Some(self.counters.snapshot())
    }

    async fn check(&self) -> Result<()> {
        let ans = self.execute(&Call::new(Method::HEAD, None)).await?;
        match ans.resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(StorageError::Io {
                path: self.s.container.clone(),
                message: format!("container {} not found", self.s.container),
            }),
            StatusCode::FORBIDDEN => Err(StorageError::Io {
                path: self.s.container.clone(),
                message: format!("no access to container {} (403)", self.s.container),
            }),
            _ => Err(self.unexpected(&self.s.container, &ans.resp)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_retries_come_from_the_configuration() {
        let argv: Vec<String> = [
            "--storage=openstack",
            "--storage-openstack-container=c",
            "--storage-openstack-auth=v1",
            "--storage-openstack-connect-timeout=2s",
            "--storage-openstack-timeout=90s",
            "--storage-openstack-retries=0",
            "--storage-request-timeout=45s",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args = crate::config::parse_args(&argv).unwrap();
        let env = |k: &str| match k {
            "ST_AUTH" => Some("http://127.0.0.1:9/auth/v1.0".to_string()),
            "ST_USER" => Some("t:u".to_string()),
            "ST_KEY" => Some("k".to_string()),
            _ => None,
        };
        let cfg = crate::config::load(&args, &env, None).unwrap();
        let s = SwiftSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(s.connect_timeout, Duration::from_secs(2));
        assert_eq!(s.timeout, Duration::from_secs(90));
        assert_eq!(s.attempts, 1);
        assert_eq!(s.request_timeout, Duration::from_secs(45));
    }

    #[test]
    fn bad_settings_are_refused() {
        let auth = AuthConfig::V1(auth::V1Config {
            url: "http://127.0.0.1:1/auth/v1.0".into(),
            user: "u".into(),
            key: Secret::Value("k".into()),
        });
        let mut s = SwiftSettings::new("charts", auth);
        s.cacert = "/nonexistent/ca.pem".into();
        let e = SwiftStorage::new(s.clone()).err().unwrap().to_string();
        assert!(
            e.contains("cannot read CA bundle /nonexistent/ca.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ca.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        s.cacert = f.display().to_string();
        let e = SwiftStorage::new(s.clone()).err().unwrap().to_string();
        assert!(e.contains("ca.pem"), "{e}");
        s.cacert.clear();
        s.container = "a/b".into();
        assert!(SwiftStorage::new(s.clone()).is_err());
        s.container = "charts".into();
        s.prefix = "/x//y/".into();
        let ok = SwiftStorage::new(s).unwrap();
        assert_eq!(ok.settings().prefix, "x/y");
        assert_eq!(
            ok.describe(),
            "openstack:charts/x/y (auth http://127.0.0.1:1/auth/v1.0)"
        );
    }

    #[test]
    fn unconfirmed_times_never_match_a_listing() {
        let ns = remote::unconfirmed_ns(Some("Tue, 24 Nov 2026 00:12:21 GMT"));
        assert_eq!(ns % 1000, 1);
    }
}
