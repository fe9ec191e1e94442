//! Google Cloud Storage (`storage.backend: google`), over the JSON API with reqwest and OAuth
//! tokens from [`auth`].
//!
//! - **Names.** An object path `a/b.tgz` is the object `<prefix>/a/b.tgz` in the bucket; the
//!   whole name is one percent-encoded URL segment (`/` as `%2F`), as the JSON API wants.
//!   [`Storage::list`] lists one "directory" with `objects.list`, `delimiter=/`, up to 1,000
//!   names a page, paged with the `pageToken`: an unchanged repository of up to 1,000 charts
//!   costs one request.
//! - **Times.** `updated`, to the millisecond, the same in a listing and in the object's
//!   metadata.
//! - **Writes.** A multipart upload (metadata and bytes in one request) carries the MD5 in its
//!   metadata, which the service checks. `put_if_absent` adds `ifGenerationMatch=0`: the
//!   service answers 412 when the object exists, atomically. After every upload the object's
//!   metadata is read back: if its generation is not the one the upload answered, another
//!   writer won (`remote::settle_write`).
//! - **Reads.** A media download (`alt=media`) is streamed and checked at its end against the
//!   MD5 of its `X-Goog-Hash` header (the CRC32C there is not checked: no CRC32C crate is in
//!   the dependencies, and the MD5 covers the same damage for objects written in one piece).
//! - **Faults.** The shared layer of `remote`; a 401 drops the token and tries once more with a
//!   new one (re-reading the service-account file); a 403 is `Unavailable` naming the
//!   credential source.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};

pub mod auth;
pub mod listing;

use super::remote::{
    self, Answer, Call, Failed, Head, Problem, RequestCounters, RequestStats, SharedCache,
    content_type, enc, error_text, lock_cache, retryable_status,
};
use super::{ObjectMeta, ObjectStream, Result, Storage, StorageError, check_path, join};
use crate::config::StorageConfig;

pub use auth::Source;

/// The JSON API's address when no endpoint is configured.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Everything the Google backend needs; [`GoogleSettings::from_config`] fills it from the
/// configuration, tests set it directly.
#[derive(Debug, Clone)]
pub struct GoogleSettings {
    pub bucket: String,
    pub prefix: String,
    /// The JSON API's base URL; empty: [`DEFAULT_ENDPOINT`].
    pub endpoint: String,
    pub credentials: Source,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    /// Names per listing request (the service's maximum is 1,000).
    pub page_size: usize,
    pub cache_bytes: usize,
}

impl GoogleSettings {
    pub fn new(bucket: &str, credentials: Source) -> GoogleSettings {
        GoogleSettings {
            bucket: bucket.to_string(),
            prefix: String::new(),
            endpoint: String::new(),
            credentials,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            request_timeout: remote::REQUEST_TIMEOUT,
            attempts: 3,
            backoff: Duration::from_millis(250),
            page_size: 1000,
            cache_bytes: 32 << 20,
        }
    }

    /// Settings for a `StorageConfig::Google`. Credentials, first found wins:
    /// `GOOGLE_APPLICATION_CREDENTIALS` (a service-account file); the metadata server named by
    /// `GCE_METADATA_HOST`; with `storage.google.endpoint` set, none; else the metadata server
    /// at `metadata.google.internal`.
    pub fn from_config(cfg: &StorageConfig) -> Result<GoogleSettings> {
        let StorageConfig::Google {
            bucket,
            prefix,
            endpoint,
            connect_timeout,
            timeout,
            request_timeout,
            retries,
            env,
        } = cfg
        else {
            return Err(config_error("not a google storage configuration"));
        };
        let set = |k: &str| env.get(k).filter(|v| !v.trim().is_empty());
        let credentials = if let Some(f) = set("GOOGLE_APPLICATION_CREDENTIALS") {
            Source::ServiceAccount(f.into())
        } else if let Some(h) = set("GCE_METADATA_HOST") {
            Source::Metadata(metadata_base(&h))
        } else if !endpoint.is_empty() {
            Source::Anonymous
        } else {
            Source::Metadata(metadata_base(auth::METADATA_HOST))
        };
        let mut s = GoogleSettings::new(bucket, credentials);
        s.prefix = prefix.clone();
        s.endpoint = endpoint.clone();
        s.connect_timeout = *connect_timeout;
        s.timeout = *timeout;
        s.request_timeout = *request_timeout;
        s.attempts = retries + 1;
        Ok(s)
    }
}

/// `GCE_METADATA_HOST` (a host, maybe with a port, as Google's libraries read it) as a URL.
fn metadata_base(host: &str) -> String {
    let h = host.trim().trim_end_matches('/');
    if h.contains("://") {
        h.to_string()
    } else {
        format!("http://{h}")
    }
}

fn config_error(msg: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: "google".into(),
        message: msg.to_string(),
    }
}

/// The endpoint as a base URL without a trailing `/` (and without the API path, should it be
/// given as `.../storage/v1/`).
fn base_url(endpoint: &str) -> std::result::Result<String, String> {
    let e = if endpoint.is_empty() {
        DEFAULT_ENDPOINT.to_string()
    } else if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("https://{endpoint}")
    };
    let url =
        reqwest::Url::parse(&e).map_err(|err| format!("invalid endpoint {endpoint:?}: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "invalid endpoint {endpoint:?}: http:// or https:// and a host"
        ));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "invalid endpoint {endpoint:?}: no query or user info allowed"
        ));
    }
    let s = e.trim_end_matches('/');
    let s = s.strip_suffix("/storage/v1").unwrap_or(s);
    Ok(s.trim_end_matches('/').to_string())
}

/// Bucket names the service accepts: 3-222 lower-case letters, digits, `-`, `_` and `.`,
/// starting and ending with a letter or digit.
fn check_bucket(b: &str) -> std::result::Result<(), String> {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok = (3..=222).contains(&b.len())
        && b.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        })
        && edge(b.chars().next())
        && edge(b.chars().last());
    ok.then_some(())
        .ok_or_else(|| format!("invalid bucket name {b:?}"))
}

/// The URL of object `name`'s metadata, `<base>/storage/v1/b/<bucket>/o/<name>`: the name is
/// one segment, every byte but the RFC 3986 unreserved ones encoded.
pub fn object_url(base: &str, bucket: &str, name: &str) -> String {
    format!("{base}/storage/v1/b/{}/o/{}", enc(bucket), enc(name))
}

/// The MD5 (hex) of an `X-Goog-Hash` answer (`crc32c=...,md5=...`, maybe in several headers).
fn goog_md5(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("x-goog-hash")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("md5=").and_then(listing::md5_hex))
}

pub struct GoogleStorage {
    s: GoogleSettings,
    base: String,
    client: reqwest::Client,
    tokens: auth::Tokens,
    counters: RequestCounters,
    cache: SharedCache,
    problem: Problem,
}

impl GoogleStorage {
    pub fn new(mut s: GoogleSettings) -> Result<GoogleStorage> {
        s.prefix = remote::clean_prefix(&s.prefix)
            .ok_or_else(|| config_error(format!("invalid prefix {:?}", s.prefix)))?;
        check_bucket(&s.bucket).map_err(config_error)?;
        if let Source::ServiceAccount(p) = &s.credentials {
            auth::read_service_account(p)
                .map_err(|e| config_error(format!("GOOGLE_APPLICATION_CREDENTIALS: {e}")))?;
        }
        let base = base_url(&s.endpoint).map_err(config_error)?;
        s.attempts = s.attempts.max(1);
        s.page_size = s.page_size.clamp(1, 1000);
        let client = remote::http_client(s.connect_timeout, s.timeout, "").map_err(config_error)?;
        Ok(GoogleStorage {
            cache: remote::ReadCache::shared(s.cache_bytes),
            tokens: auth::Tokens::new(s.credentials.clone(), client.clone()),
            s,
            base,
            client,
            counters: RequestCounters::default(),
            problem: Problem::default(),
        })
    }

    pub fn from_config(cfg: &StorageConfig) -> Result<GoogleStorage> {
        GoogleStorage::new(GoogleSettings::from_config(cfg)?)
    }

    pub fn settings(&self) -> &GoogleSettings {
        &self.s
    }

    /// Requests sent so far (every try counts; token fetches not).
    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    /// Access tokens fetched so far.
    pub fn token_fetches(&self) -> u64 {
        self.tokens.fetches()
    }

    fn key(&self, path: &str) -> Result<String> {
        check_path(path)?;
        Ok(join(&self.s.prefix, path))
    }

    fn reads(&self) -> remote::Reads<'_> {
        remote::Reads {
            service: "google",
            cache: &self.cache,
            problem: &self.problem,
            counters: &self.counters,
            attempts: self.s.attempts,
            backoff: self.s.backoff,
        }
    }

    fn describe_call(&self, call: &Call<'_>) -> String {
        let m = match call.method {
            Method::HEAD => "GET (metadata)",
            Method::POST => "upload",
            ref m => m.as_str(),
        };
        match call.key {
            Some(k) => format!("google {m} {}/{k}", self.s.bucket),
            None => format!("google {m} bucket {}", self.s.bucket),
        }
    }

    /// The request for `call`. Methods name operations: GET of a key is a media download,
    /// HEAD of a key a metadata GET, POST of a key an upload (the body already multipart),
    /// DELETE a delete, GET without a key a listing.
    fn request(&self, call: &Call<'_>, token: Option<&str>) -> reqwest::RequestBuilder {
        let bucket = enc(&self.s.bucket);
        let (method, mut url, mut query): (Method, String, Vec<(&str, &str)>) =
            match (&call.method, call.key) {
                (&Method::GET, Some(k)) => (
                    Method::GET,
                    object_url(&self.base, &self.s.bucket, k),
                    vec![("alt", "media")],
                ),
                (&Method::HEAD, Some(k)) => (
                    Method::GET,
                    object_url(&self.base, &self.s.bucket, k),
                    vec![],
                ),
                (&Method::POST, Some(_)) => (
                    Method::POST,
                    format!("{}/upload/storage/v1/b/{bucket}/o", self.base),
                    vec![("uploadType", "multipart")],
                ),
                (m, Some(k)) => (m.clone(), object_url(&self.base, &self.s.bucket, k), vec![]),
                (m, None) => (
                    m.clone(),
                    format!("{}/storage/v1/b/{bucket}/o", self.base),
                    vec![],
                ),
            };
        query.extend(call.query.iter().copied());
        if !query.is_empty() {
            let qs = query
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
                .collect::<Vec<_>>()
                .join("&");
            url.push('?');
            url.push_str(&qs);
        }
        let mut rb = self.client.request(method, url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        for (k, v) in call.headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = &call.body {
            rb = rb.body(b.clone());
        }
        rb
    }

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
        let mut renewed = false;
        let mut ambiguous = false;
        loop {
            let token_limit = remote::try_limit(self.s.timeout, deadline);
            let token = match self.tokens.token(token_limit).await {
                Ok(t) => t,
                Err(e) => {
                    return Err(Failed::answered(StorageError::Unavailable(format!(
                        "{}: {e}",
                        self.describe_call(call)
                    ))));
                }
            };
            let rb = self.request(call, token.as_deref());
            self.counters.count(&call.method, call.key.is_some());
            let limit = remote::try_limit(call.time_limit(self.s.timeout), deadline);
            let mut unanswered = false;
            let failure = match remote::send(rb, limit, call.streamed).await {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !renewed => {
                    // The token expired early or was revoked: one more try with a new one.
                    if let Some(t) = &token {
                        self.tokens.refused(t).await;
                    }
                    renewed = true;
                    continue;
                }
                Ok(resp)
                    if resp.status() == StatusCode::UNAUTHORIZED
                        || resp.status() == StatusCode::FORBIDDEN =>
                {
                    let why = self.error_text(resp).await;
                    return Err(Failed::answered(StorageError::Unavailable(format!(
                        "{}: Google refuses the request ({}): {why}",
                        self.describe_call(call),
                        self.tokens.source().describe()
                    ))));
                }
                Ok(resp) if retryable_status(resp.status()) => {
                    ambiguous = true;
                    self.error_text(resp).await
                }
                Ok(resp) => return Ok(Answer { resp, ambiguous }),
                Err((connect, msg)) => {
                    ambiguous |= !connect;
                    unanswered = true;
                    msg
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
            crate::debug!("google call failed; retrying", "call" => &self.describe_call(call),
                "error" => failure.as_str(), "attempt" => attempt);
            if !remote::pause(self.s.backoff, attempt, deadline).await {
                return Err(give_up(
                    "; no time left for another (storage.requesttimeout)",
                ));
            }
            remote::bump(&self.counters.retries);
            attempt += 1;
        }
    }

    /// "404 Not Found (No such object: b/o)".
    async fn error_text(&self, resp: reqwest::Response) -> String {
        let status = resp.status();
        let body = tokio::time::timeout(self.s.timeout, resp.text()).await;
        match body
            .ok()
            .and_then(|b| b.ok())
            .and_then(|b| listing::error_message(&b))
        {
            Some(m) if !m.is_empty() => format!("{status} ({m})"),
            _ => status.to_string(),
        }
    }

    async fn unexpected(&self, what: &str, resp: reqwest::Response) -> StorageError {
        StorageError::Io {
            path: what.to_string(),
            message: format!("Google answered {}", self.error_text(resp).await),
        }
    }

    fn no_bucket(&self) -> StorageError {
        StorageError::Io {
            path: self.s.bucket.clone(),
            message: format!("bucket {} not found", self.s.bucket),
        }
    }

    async fn metadata(&self, key: &str) -> Result<listing::Object> {
        let ans = self.execute(&Call::new(Method::HEAD, Some(key))).await?;
        let resp = ans.resp;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(StorageError::NotFound(key.to_string())),
            _ => return Err(self.unexpected(key, resp).await),
        }
        let body = resp.text().await.map_err(|e| {
            StorageError::Unavailable(format!("google GET {key}: {}", error_text(&e)))
        })?;
        listing::parse_object(&body).map_err(|e| StorageError::Io {
            path: key.to_string(),
            message: format!("metadata is not the expected JSON: {e}"),
        })
    }

    async fn head(&self, key: &str) -> Result<Head> {
        let o = self.metadata(key).await?;
        Ok(Head {
            size: o.size,
            etag: Some(o.generation),
            modified_ns: (o.modified_ns != 0).then_some(o.modified_ns),
        })
    }

    async fn list_page(
        &self,
        prefix: &str,
        token: Option<&str>,
        limit: usize,
    ) -> Result<listing::Page> {
        let limit = limit.to_string();
        let mut query: Vec<(&str, &str)> = vec![
            ("prefix", prefix),
            ("delimiter", "/"),
            ("maxResults", &limit),
        ];
        if let Some(t) = token {
            query.push(("pageToken", t));
        }
        let ans = self
            .execute(&Call {
                query: &query,
                ..Call::new(Method::GET, None)
            })
            .await?;
        let resp = ans.resp;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Err(self.no_bucket()),
            _ => return Err(self.unexpected(&self.s.bucket, resp).await),
        }
        let body = resp.text().await.map_err(|e| {
            StorageError::Unavailable(format!(
                "google GET bucket {}: {}",
                self.s.bucket,
                error_text(&e)
            ))
        })?;
        listing::parse_page(&body).map_err(|e| StorageError::Io {
            path: self.s.bucket.clone(),
            message: format!("listing is not the expected JSON: {e}"),
        })
    }

    async fn write(&self, path: &str, data: Bytes, if_absent: bool) -> Result<ObjectMeta> {
        let key = self.key(path)?;
        let digest = Md5::digest(&data);
        let md5_ours = hex::encode(digest);
        let meta = serde_json::json!({
            "name": key,
            "contentType": content_type(path),
            "md5Hash": base64::engine::general_purpose::STANDARD.encode(digest),
        })
        .to_string();
        let (body, ctype) = multipart(&meta, content_type(path), &data);
        let query: &[(&str, &str)] = if if_absent {
            &[("ifGenerationMatch", "0")]
        } else {
            &[]
        };
        let ans = self
            .execute(&Call {
                query,
                headers: &[("content-type", ctype.as_str())],
                body: Some(body),
                ..Call::new(Method::POST, Some(&key))
            })
            .await?;
        let status = ans.resp.status();
        let generation = match status {
            StatusCode::OK => {
                let body = ans.resp.text().await.unwrap_or_default();
                listing::parse_object(&body)
                    .map(|o| o.generation)
                    .unwrap_or_default()
            }
            StatusCode::PRECONDITION_FAILED if if_absent => {
                // A try that timed out may have stored our bytes: then the upload is done.
                let mine = match self.metadata(&key).await {
                    Ok(o) if ans.ambiguous && o.md5.as_deref() == Some(md5_ours.as_str()) => {
                        Some(o.generation)
                    }
                    _ => None,
                };
                match mine {
                    Some(g) => g,
                    None => return Err(StorageError::AlreadyExists(path.to_string())),
                }
            }
            StatusCode::BAD_REQUEST => {
                let why = self.error_text(ans.resp).await;
                return Err(StorageError::Io {
                    path: key,
                    message: format!("Google refused the upload: {why}"),
                });
            }
            StatusCode::NOT_FOUND => return Err(self.no_bucket()),
            _ => return Err(self.unexpected(&key, ans.resp).await),
        };
        remote::settle_write(
            self,
            &self.cache,
            &key,
            path,
            data,
            if_absent,
            &generation,
            None,
        )
        .await
    }
}

/// A `multipart/related` body of JSON metadata and the object's bytes, and its content type.
/// The boundary is random and checked not to occur in the bytes.
fn multipart(meta: &str, ctype: &str, data: &[u8]) -> (Bytes, String) {
    let boundary = loop {
        let b = format!("chartroom-{:032x}", rand::random::<u128>());
        if !data.windows(b.len()).any(|w| w == b.as_bytes()) {
            break b;
        }
    };
    let mut body = Vec::with_capacity(data.len() + meta.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\nContent-Type: {ctype}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(data);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        Bytes::from(body),
        format!("multipart/related; boundary={boundary}"),
    )
}

impl remote::Service for GoogleStorage {
    const NAME: &'static str = "Google";

    fn reads(&self) -> remote::Reads<'_> {
        GoogleStorage::reads(self)
    }

    fn execute(&self, call: &Call<'_>) -> impl Future<Output = Result<Answer>> + Send {
        GoogleStorage::execute(self, call)
    }

    async fn refused(&self, key: &str, resp: reqwest::Response) -> StorageError {
        match resp.status() {
            StatusCode::NOT_FOUND => StorageError::NotFound(key.to_string()),
            _ => self.unexpected(key, resp).await,
        }
    }

    fn body_md5(resp: &reqwest::Response) -> Option<String> {
        goog_md5(resp)
    }
}

impl remote::ObjectReads for GoogleStorage {
    fn head(&self, key: &str, _after_write: bool) -> impl Future<Output = Result<Head>> + Send {
        // Object reads are strongly consistent after writes.
        GoogleStorage::head(self, key)
    }

    async fn listed_time(&self, key: &str) -> Result<Option<i64>> {
        Ok(Some(self.metadata(key).await?.modified_ns))
    }
}

#[async_trait]
impl Storage for GoogleStorage {
    fn describe(&self) -> String {
        let mut d = format!("google:{}", self.s.bucket);
        if !self.s.prefix.is_empty() {
            d.push('/');
            d.push_str(&self.s.prefix);
        }
        format!("{d} ({})", self.base)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = remote::list_prefix(&self.s.prefix, prefix)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        loop {
            let page = self
                .list_page(&full, token.as_deref(), self.s.page_size)
                .await?;
            for o in page.objects {
                let rel = o.name.strip_prefix(&full).unwrap_or(&o.name);
                if rel.is_empty() || rel.contains('/') {
                    continue;
                }
                out.push(ObjectMeta {
                    name: rel.to_string(),
                    size: o.size,
                    modified_ns: o.modified_ns,
                });
            }
            match page.next {
                Some(t) if seen.insert(t.clone()) => token = Some(t),
                Some(_) => {
                    return Err(StorageError::Io {
                        path: self.s.bucket.clone(),
                        message: "listing repeats its pageToken".into(),
                    });
                }
                None => break,
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
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
        lock_cache(&self.cache).remove(&key);
        let ans = self.execute(&Call::new(Method::DELETE, Some(&key))).await?;
        lock_cache(&self.cache).remove(&key);
        match ans.resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND if ans.ambiguous => Ok(()),
            StatusCode::NOT_FOUND => Err(StorageError::NotFound(path.to_string())),
            _ => Err(self.unexpected(&key, ans.resp).await),
        }
    }

    fn problem(&self) -> Option<String> {
        self.problem.get()
    }

    fn request_stats(&self) -> Option<RequestStats> {
        Some(self.counters.snapshot())
    }

    async fn check(&self) -> Result<()> {
        let prefix = if self.s.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.s.prefix)
        };
        self.list_page(&prefix, None, 1).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn addresses() {
        assert_eq!(base_url("").unwrap(), "https://storage.googleapis.com");
        assert_eq!(
            base_url("http://127.0.0.1:4443/storage/v1/").unwrap(),
            "http://127.0.0.1:4443"
        );
        for bad in ["ftp://x", "http://", "http://h/?a=1", "http://u:p@h"] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            object_url("http://h", "b", "p/a b+c.tgz"),
            "http://h/storage/v1/b/b/o/p%2Fa%20b%2Bc.tgz"
        );
        for bad in ["ab", "Charts", "-ab", "ab-", "a b", &"x".repeat(223)] {
            assert!(check_bucket(bad).is_err(), "{bad}");
        }
        assert!(check_bucket("charts_1.example").is_ok());
        assert_eq!(metadata_base("127.0.0.1:8080"), "http://127.0.0.1:8080");
    }

    #[test]
    fn settings_come_from_the_configuration() {
        let argv: Vec<String> = [
            "--storage=google",
            "--storage-google-bucket=charts",
            "--storage-google-prefix=p",
            "--storage-google-endpoint=http://127.0.0.1:4443",
            "--storage-google-retries=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args = crate::config::parse_args(&argv).unwrap();
        let cfg = crate::config::load(&args, &|_| None, None).unwrap();
        let s = GoogleSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(
            s.credentials,
            Source::Anonymous,
            "an emulator needs no token"
        );
        assert_eq!(s.attempts, 1);
        assert_eq!(s.prefix, "p");
        let env = |k: &str| match k {
            "GOOGLE_APPLICATION_CREDENTIALS" => Some("/etc/sa.json".to_string()),
            "GCE_METADATA_HOST" => Some("127.0.0.1:1".to_string()),
            _ => None,
        };
        let cfg = crate::config::load(&args, &env, None).unwrap();
        let s = GoogleSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(s.credentials, Source::ServiceAccount("/etc/sa.json".into()));
        let meta = |k: &str| (k == "GCE_METADATA_HOST").then(|| "127.0.0.1:1".to_string());
        let cfg = crate::config::load(&args, &meta, None).unwrap();
        let s = GoogleSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(s.credentials, Source::Metadata("http://127.0.0.1:1".into()));
        let plain: Vec<String> = ["--storage=google", "--storage-google-bucket=charts"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let args = crate::config::parse_args(&plain).unwrap();
        let cfg = crate::config::load(&args, &|_| None, None).unwrap();
        let s = GoogleSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(
            s.credentials,
            Source::Metadata("http://metadata.google.internal".into())
        );
        let missing = GoogleStorage::new(GoogleSettings::new(
            "charts",
            Source::ServiceAccount("/nonexistent/sa.json".into()),
        ));
        let e = missing.err().unwrap().to_string();
        assert!(e.contains("/nonexistent/sa.json"), "{e}");
    }

    #[test]
    fn multipart_bodies_hold_the_bytes() {
        let (body, ct) = multipart("{}", "application/x-tar", b"--xyz\r\n");
        let boundary = ct.strip_prefix("multipart/related; boundary=").unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
        assert!(text.contains("\r\n\r\n--xyz\r\n\r\n--"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any object name is one path segment that decodes back to itself: no `/`, `?`,
        /// `#`, `%` or space is left as it is.
        #[test]
        fn object_names_are_one_encoded_segment(name in "\\PC{1,60}") {
            let url = object_url("http://h", "b", &name);
            let seg = url.strip_prefix("http://h/storage/v1/b/b/o/").unwrap();
            prop_assert!(!seg.contains(['/', '?', '#', ' ']));
            prop_assert!(seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            let back = percent_encoding::percent_decode_str(seg).decode_utf8().unwrap();
            prop_assert_eq!(back, name.as_str());
            let parsed = reqwest::Url::parse(&url).unwrap();
            prop_assert_eq!(parsed.path_segments().unwrap().count(), 6);
        }
    }
}
