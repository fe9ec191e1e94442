//! Amazon S3 and S3-compatible storage (`storage.backend: amazon`), over the S3 REST API with
//! reqwest and AWS Signature Version 4 ([`sigv4`]).
//!
//! - **Names.** An object path `a/b.tgz` is the key `<prefix>/a/b.tgz` in the bucket.
//!   [`Storage::list`] lists one "directory" with ListObjectsV2, `delimiter=/` (deeper keys come
//!   back folded into `CommonPrefixes`, which are skipped), 1,000 keys a page, paged with the
//!   continuation token; an unchanged repository of up to 1,000 charts costs one request.
//!   Addressing is path-style (`<endpoint>/<bucket>/<key>`) unless `forcepathstyle` is off
//!   (`<bucket>.<endpoint host>/<key>`).
//! - **Times.** S3 keeps an object's time to the second: a listing's `LastModified` is whole
//!   seconds on most servers (`2026-11-26T10:12:23Z`, or `.000Z` on AWS) and `Last-Modified` of
//!   HEAD and GET is the same second as an HTTP date. `modified_ns` is that second from either
//!   (a fraction in a listing is cut off, as servers cut it off in `Last-Modified`), so an
//!   object that did not change never looks changed to the index. The limit: an object
//!   replaced within the same second by one of the same size looks unchanged to another
//!   instance's refresh (ChartMuseum has the same limit); the instance that wrote it knows.
//! - **Writes.** A PUT carries `Content-MD5` and `x-amz-content-sha256` (signed), so S3
//!   refuses a body damaged on the way and stores nothing; an object is replaced whole or not
//!   at all. `put_if_absent` first asks with HEAD whether the key exists (so a server that
//!   ignores the condition below still refuses a plain second upload), then sends the PUT
//!   with `If-None-Match: *` (412 when the object exists; AWS S3 since 2024, SeaweedFS, MinIO
//!   and Ceph honour it). After every PUT the object is read back with HEAD: if its ETag is
//!   not the one the PUT answered, another writer won, and `put_if_absent` reports
//!   [`StorageError::AlreadyExists`] while `put` returns a `modified_ns` that matches no
//!   listing, so the index re-reads the object at its next refresh. On a server that ignores
//!   `If-None-Match`, two uploads that overlap between the HEAD and the PUT can both succeed;
//!   the later one stays, and the read-back tells the earlier writer only if it reads after
//!   the later PUT. Either way every instance's index converges on the bytes S3 kept.
//! - **Deletes.** S3 answers DELETE with 204 whether or not the key exists, so `delete` asks
//!   with HEAD first and reports [`StorageError::NotFound`] for a missing key. Another client
//!   deleting the key between the two requests makes this delete succeed without removing
//!   anything, which is harmless: the key is gone either way.
//! - **Faults.** Every request has a timeout (`connect_timeout`, and `timeout` for the answer
//!   and between two reads of a body). Connection errors, timeouts, 5xx (503 SlowDown
//!   included), 408 and 429 are retried with exponential backoff and jitter (all calls here are
//!   idempotent: GET, HEAD, PUT of whole objects, DELETE); when the tries are used up the call
//!   fails with [`StorageError::Unavailable`], which the API answers with 503, and
//!   [`Storage::problem`] says what is wrong until a call succeeds again. As with Swift, one
//!   call ends by `request_timeout` whatever its tries are doing, and after a call got no
//!   answer at all, calls fail at once for a while (`remote::bounded`). A 403 (credentials
//!   rejected, access denied, clock skew) is not retried; it is `Unavailable` too, with S3's
//!   code and message, so `/health` names it. When the secret key comes from a file, a 403
//!   re-reads the file and, if the key changed, signs the request again (a rotated key is
//!   picked up without a reload). Objects read recently are kept in a small memory cache
//!   (`cache_bytes`) that serves reads only while S3 cannot be reached. A retried conditional
//!   PUT that finds its own bytes counts as done.
//!
//! **Several chartroom instances on one bucket** need no coordination beyond S3's own, as
//! with Swift: each keeps its index by listing (a refresh downloads only keys whose size or
//! time changed), uploads are whole-object PUTs settled as described under *Writes*, and the
//! state file (`chartroom-state.json`) is a cache of parsed entries keyed by (size, time) that
//! every instance writes whole and reconciles with a listing before use (S3 replaces objects
//! atomically and reads after writes are consistent).

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};

pub mod sigv4;
pub mod xml;

use super::remote::{
    self, Answer, Call, Failed, Head, Problem, RequestCounters, RequestStats, SharedCache,
    content_type, enc, error_text, header, lock_cache, retryable_status,
};
use super::swift::time;
use super::{ObjectMeta, ObjectStream, Result, Secret, Storage, StorageError, check_path, join};
use crate::config::StorageConfig;

/// Everything the S3 backend needs; [`S3Settings::from_config`] fills it from the
/// configuration, tests set it directly.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `amazon`, or the S3-compatible cloud it was configured as (`alibaba`, ...): names the
    /// storage in `describe`.
    pub provider: String,
    pub bucket: String,
    /// Key prefix inside the bucket (leading, trailing and doubled `/` dropped).
    pub prefix: String,
    pub region: String,
    /// Base URL of the server (`http://127.0.0.1:8333`); empty: Amazon S3 in `region`.
    pub endpoint: String,
    /// Path-style addressing; false: virtual-hosted style.
    pub path_style: bool,
    /// `x-amz-server-side-encryption` for uploads (empty: none sent).
    pub sse: String,
    pub access_key: String,
    pub secret_key: Secret,
    pub session_token: Option<String>,
    /// PEM bundle of extra CA certificates (empty: the system's only).
    pub cacert: String,
    pub connect_timeout: Duration,
    /// Limit for an answer, and for the pause between two reads of a body.
    pub timeout: Duration,
    /// Limit for one call, all its tries and pauses included (plus 1 s per whole MiB sent).
    pub request_timeout: Duration,
    /// Tries of one call, the first included.
    pub attempts: u32,
    /// Pause before the second try; it doubles with each further try (with jitter).
    pub backoff: Duration,
    /// Keys per listing request (S3's maximum is 1,000).
    pub page_size: usize,
    /// Memory for recently read objects, served while S3 is unreachable (0: no cache).
    pub cache_bytes: usize,
}

impl S3Settings {
    pub fn new(bucket: &str, region: &str, access_key: &str, secret_key: Secret) -> S3Settings {
        S3Settings {
            provider: "amazon".into(),
            bucket: bucket.to_string(),
            prefix: String::new(),
            region: region.to_string(),
            endpoint: String::new(),
            path_style: true,
            sse: String::new(),
            access_key: access_key.to_string(),
            secret_key,
            session_token: None,
            cacert: String::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            request_timeout: remote::REQUEST_TIMEOUT,
            attempts: 3,
            backoff: Duration::from_millis(250),
            page_size: 1000,
            cache_bytes: 32 << 20,
        }
    }

    /// Settings for a `StorageConfig::Amazon`; credentials come from the `AWS_*` variables
    /// the configuration captured (the names in [`crate::config::env_names::S3`]), the secret
    /// key possibly from `secretkeyfile`.
    pub fn from_config(cfg: &StorageConfig) -> Result<S3Settings> {
        let StorageConfig::Amazon {
            provider,
            bucket,
            prefix,
            region,
            endpoint,
            sse,
            force_path_style,
            secret_key_file,
            connect_timeout,
            timeout,
            request_timeout,
            retries,
            env,
        } = cfg
        else {
            return Err(config_error("not an amazon storage configuration"));
        };
        let set = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let access_key = set("AWS_ACCESS_KEY_ID").ok_or_else(|| {
            config_error("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        })?;
        let secret_key =
            Secret::pick(secret_key_file, set("AWS_SECRET_ACCESS_KEY")).ok_or_else(|| {
                config_error(
                    "no secret key: set AWS_SECRET_ACCESS_KEY or storage.amazon.secretkeyfile",
                )
            })?;
        let mut s = S3Settings::new(bucket, region, &access_key, secret_key);
        s.provider = provider.clone();
        s.prefix = prefix.clone();
        s.endpoint = endpoint.clone();
        s.path_style = *force_path_style;
        s.sse = sse.clone();
        s.session_token = set("AWS_SESSION_TOKEN");
        s.cacert = set("AWS_CA_BUNDLE").unwrap_or_default();
        s.connect_timeout = *connect_timeout;
        s.timeout = *timeout;
        s.request_timeout = *request_timeout;
        s.attempts = retries + 1;
        Ok(s)
    }
}

fn config_error(msg: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: "amazon".into(),
        message: msg.to_string(),
    }
}

/// Where requests go: scheme and authority, the path before the key, and the `Host` value.
#[derive(Debug, Clone)]
struct Target {
    /// `http://host:port`
    origin: String,
    /// Signed `Host` header (`host` or `host:port` for a port that is not the default).
    host: String,
    /// Encoded path up to the bucket's root, without a trailing `/` (`/bucket`, or `` for
    /// virtual-hosted style).
    base_path: String,
}

fn target(s: &S3Settings) -> std::result::Result<Target, String> {
    let endpoint = if s.endpoint.is_empty() {
        format!("https://s3.{}.amazonaws.com", s.region)
    } else if s.endpoint.contains("://") {
        s.endpoint.clone()
    } else {
        format!("https://{}", s.endpoint)
    };
    let url = reqwest::Url::parse(&endpoint)
        .map_err(|e| format!("invalid endpoint {:?}: {e}", s.endpoint))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid endpoint {:?}: the scheme must be http or https",
            s.endpoint
        ));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "invalid endpoint {:?}: no query or user info allowed",
            s.endpoint
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("invalid endpoint {:?}: no host", s.endpoint))?;
    let path = url.path().trim_end_matches('/');
    let (host, base_path) = if s.path_style {
        (host.to_string(), format!("{path}/{}", enc(&s.bucket)))
    } else {
        (format!("{}.{host}", s.bucket), path.to_string())
    };
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Ok(Target {
        origin: format!("{}://{host}", url.scheme()),
        host,
        base_path,
    })
}

/// Bucket names S3 accepts (3-63 characters of lower-case letters, digits, `.` and `-`);
/// S3-compatible servers may accept more in path style, so only `/` and emptiness are
/// refused there.
fn check_bucket(bucket: &str, path_style: bool) -> std::result::Result<(), String> {
    if bucket.is_empty() || bucket.contains('/') {
        return Err(format!("invalid bucket name {bucket:?}"));
    }
    let dns = bucket.len() >= 3
        && bucket.len() <= 63
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    if !path_style && !dns {
        return Err(format!(
            "bucket name {bucket:?} cannot be a host name: set storage.amazon.forcepathstyle"
        ));
    }
    Ok(())
}

/// S3's error document: `<Error><Code>…</Code><Message>…</Message></Error>`.
fn error_code(body: &str) -> Option<(String, String)> {
    let root = xml::parse(body).ok()?;
    (root.name == "Error").then(|| {
        (
            root.child_text("Code").unwrap_or_default().to_string(),
            root.child_text("Message").unwrap_or_default().to_string(),
        )
    })
}

/// Error codes S3 answers with 400 (not 403) that mean the credentials or their signing
/// scope are not accepted.
const CREDENTIAL_ERRORS: &[&str] = &[
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
];

/// "400 Bad Request (ExpiredToken: The provided token has expired.)": the status and, when
/// the answer has them, S3's error code and message.
fn describe_error(status: StatusCode, code: &Option<(String, String)>) -> String {
    match code {
        Some((code, msg)) if !msg.is_empty() => format!("{status} ({code}: {msg})"),
        Some((code, _)) if !code.is_empty() => format!("{status} ({code})"),
        _ => status.to_string(),
    }
}

/// The seconds of a listing's `LastModified`, any fraction cut off.
fn listing_ns(s: &str) -> Option<i64> {
    time::parse_iso8601(s).map(|ns| ns - ns.rem_euclid(1_000_000_000))
}

pub struct S3Storage {
    s: S3Settings,
    target: Target,
    client: reqwest::Client,
    /// The secret key as last read (from the settings' value or file).
    secret: Mutex<String>,
    counters: RequestCounters,
    cache: SharedCache,
    problem: Problem,
}

struct ListPage {
    objects: Vec<(String, u64, i64)>,
    next: Option<String>,
}

impl S3Storage {
    pub fn new(mut s: S3Settings) -> Result<S3Storage> {
        s.prefix = remote::clean_prefix(&s.prefix)
            .ok_or_else(|| config_error(format!("invalid prefix {:?}", s.prefix)))?;
        check_bucket(&s.bucket, s.path_style).map_err(config_error)?;
        if s.region.is_empty() {
            return Err(config_error("no region"));
        }
        if s.access_key.is_empty() {
            return Err(config_error("empty access key ID"));
        }
        let secret = s
            .secret_key
            .read()
            .map_err(|e| config_error(format!("storage.amazon.secretkeyfile: {e}")))?;
        if secret.is_empty() {
            return Err(config_error("empty secret access key"));
        }
        let target = target(&s).map_err(config_error)?;
        s.attempts = s.attempts.max(1);
        s.page_size = s.page_size.clamp(1, 1000);
        let client =
            remote::http_client(s.connect_timeout, s.timeout, &s.cacert).map_err(config_error)?;
        Ok(S3Storage {
            cache: remote::ReadCache::shared(s.cache_bytes),
            s,
            target,
            client,
            secret: Mutex::new(secret),
            counters: RequestCounters::default(),
            problem: Problem::default(),
        })
    }

    /// Builds the backend for a `StorageConfig::Amazon`.
    pub fn from_config(cfg: &StorageConfig) -> Result<S3Storage> {
        S3Storage::new(S3Settings::from_config(cfg)?)
    }

    pub fn settings(&self) -> &S3Settings {
        &self.s
    }

    /// Requests sent so far (every try counts).
    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    fn key(&self, path: &str) -> Result<String> {
        check_path(path)?;
        Ok(join(&self.s.prefix, path))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, remote::ReadCache> {
        lock_cache(&self.cache)
    }

    fn reads(&self) -> remote::Reads<'_> {
        remote::Reads {
            service: "s3",
            cache: &self.cache,
            problem: &self.problem,
            counters: &self.counters,
            attempts: self.s.attempts,
            backoff: self.s.backoff,
        }
    }

    fn secret(&self) -> String {
        self.secret
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads a secret key file after S3 rejected a request signed with `used`: true when
    /// the key in the file is another one (worth signing again). Another call may have read
    /// the new key first; what counts is the key this request was signed with.
    fn reread_secret(&self, used: &str) -> bool {
        if !matches!(self.s.secret_key, Secret::File(_)) {
            return false;
        }
        match self.s.secret_key.read() {
            Ok(new) => {
                let mut cur = self.secret.lock().unwrap_or_else(|e| e.into_inner());
                if *cur != new {
                    crate::info!("S3 secret key file changed; signing with the new key");
                    *cur = new.clone();
                }
                new != used
            }
            Err(e) => {
                crate::warn!("cannot re-read the S3 secret key file", "error" => &e);
                false
            }
        }
    }

    fn describe_call(&self, call: &Call<'_>) -> String {
        match call.key {
            Some(k) => format!("s3 {} {}/{k}", call.method, self.s.bucket),
            None => format!("s3 {} bucket {}", call.method, self.s.bucket),
        }
    }

    /// The request for one try of `call`, signed now.
    /// The request for `call`, signed with `secret`.
    fn request(
        &self,
        call: &Call<'_>,
        payload_hash: &str,
        secret: &str,
    ) -> reqwest::RequestBuilder {
        let mut path = self.target.base_path.clone();
        if let Some(k) = call.key {
            for seg in k.split('/') {
                path.push('/');
                path.push_str(&enc(seg));
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        let query: Vec<(String, String)> =
            call.query.iter().map(|(k, v)| (enc(k), enc(v))).collect();
        let qs = sigv4::canonical_query(&query);
        let url = if qs.is_empty() {
            format!("{}{path}", self.target.origin)
        } else {
            format!("{}{path}?{qs}", self.target.origin)
        };
        let amz_date = sigv4::amz_date(crate::timefmt::now_ns());
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.target.host.clone()),
            ("x-amz-date".into(), amz_date.clone()),
            ("x-amz-content-sha256".into(), payload_hash.to_string()),
        ];
        if let Some(t) = &self.s.session_token {
            headers.push(("x-amz-security-token".into(), t.clone()));
        }
        for (k, v) in call.headers {
            headers.push((k.to_ascii_lowercase(), v.to_string()));
        }
        let auth = sigv4::authorization(
            &self.s.access_key,
            secret,
            &self.s.region,
            &amz_date,
            &sigv4::Request {
                method: call.method.as_str(),
                path: &path,
                query: &query,
                headers: &headers,
                payload_hash,
            },
        );
        let mut rb = self.client.request(call.method.clone(), url);
        for (k, v) in &headers {
            if k != "host" {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        rb = rb.header(http::header::AUTHORIZATION, auth);
        if let Some(b) = &call.body {
            rb = rb
                .header(http::header::CONTENT_LENGTH, b.len())
                .body(b.clone());
        }
        rb
    }

    /// Sends a call, retrying what can be retried, all within `request_timeout`; fails at
    /// once while S3 is known not to answer. Returns S3's answer for anything but 403 and
    /// retryable statuses.
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
        let payload_hash = match &call.body {
            Some(b) => sigv4::sha256_hex(b),
            None => sigv4::EMPTY_SHA256.to_string(),
        };
        let mut attempt = 1u32;
        let mut resigned = false;
        let mut ambiguous = false;
        loop {
            let secret = self.secret();
            let rb = self.request(call, &payload_hash, &secret);
            self.counters.count(&call.method, call.key.is_some());
            let limit = remote::try_limit(call.time_limit(self.s.timeout), deadline);
            let mut unanswered = false;
            let failure = match remote::send(rb, limit, call.streamed).await {
                Ok(resp) if resp.status() == StatusCode::FORBIDDEN => {
                    if !resigned && self.reread_secret(&secret) {
                        resigned = true;
                        continue;
                    }
                    let why = self.error_text(resp).await;
                    return Err(Failed::answered(StorageError::Unavailable(format!(
                        "{}: S3 refuses the request: {why}",
                        self.describe_call(call)
                    ))));
                }
                // A conditional PUT that meets another one in progress (AWS): try again.
                Ok(resp)
                    if retryable_status(resp.status())
                        || (resp.status() == StatusCode::CONFLICT
                            && call.method == Method::PUT) =>
                {
                    // A 409 says the PUT did not take effect; a 5xx may come after it did.
                    ambiguous |= resp.status() != StatusCode::CONFLICT;
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
            crate::debug!("s3 call failed; retrying", "call" => &self.describe_call(call),
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

    /// "403 Forbidden (InvalidAccessKeyId: The AWS access key ID you provided does not
    /// exist in our records.)": the status and, when the answer has one, S3's error code and
    /// message.
    async fn error_text(&self, resp: reqwest::Response) -> String {
        let status = resp.status();
        describe_error(status, &self.error_code(resp).await)
    }

    /// S3's error code and message in an answer's body (read within the time limit).
    async fn error_code(&self, resp: reqwest::Response) -> Option<(String, String)> {
        let body = tokio::time::timeout(self.s.timeout, resp.text()).await;
        error_code(&body.ok()?.ok()?)
    }

    async fn unexpected(&self, what: &str, resp: reqwest::Response) -> StorageError {
        let status = resp.status();
        let code = self.error_code(resp).await;
        let text = describe_error(status, &code);
        // Credentials S3 will not take (expired session token, wrong region in the scope):
        // as a 403, the storage is unusable until the operator acts, and /health says why.
        if code
            .as_ref()
            .is_some_and(|(c, _)| CREDENTIAL_ERRORS.contains(&c.as_str()))
        {
            let refused: Result<()> = Err(StorageError::Unavailable(format!(
                "{what}: S3 refuses the request: {text}"
            )));
            self.problem.track(&refused);
            if let Err(e) = refused {
                return e;
            }
        }
        StorageError::Io {
            path: what.to_string(),
            message: format!("S3 answered {text}"),
        }
    }

    fn no_bucket(&self) -> StorageError {
        StorageError::Io {
            path: self.s.bucket.clone(),
            message: format!("bucket {} not found", self.s.bucket),
        }
    }

    /// A 404 to a GET: the key is missing, or the whole bucket.
    async fn not_found(&self, key: &str, resp: reqwest::Response) -> StorageError {
        match self.error_code(resp).await {
            Some((code, _)) if code == "NoSuchBucket" => self.no_bucket(),
            _ => StorageError::NotFound(key.to_string()),
        }
    }

    async fn head(&self, key: &str) -> Result<Head> {
        let ans = self.execute(&Call::new(Method::HEAD, Some(key))).await?;
        let resp = ans.resp;
        match resp.status() {
            s if s.is_success() => Ok(Head {
                size: header(&resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                etag: header(&resp, "etag").map(|e| e.trim_matches('"').to_string()),
                modified_ns: header(&resp, "last-modified").and_then(time::parse_http_date),
            }),
            StatusCode::NOT_FOUND => Err(StorageError::NotFound(key.to_string())),
            _ => Err(self.unexpected(key, resp).await),
        }
    }

    /// Whether an object exists (HEAD).
    async fn exists(&self, key: &str) -> Result<bool> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn list_page(&self, prefix: &str, token: Option<&str>, limit: usize) -> Result<ListPage> {
        let limit = limit.to_string();
        let mut query: Vec<(&str, &str)> = vec![
            ("list-type", "2"),
            ("prefix", prefix),
            ("delimiter", "/"),
            ("max-keys", &limit),
            // Keys come URL-encoded: XML 1.0 cannot carry every character a key may hold
            // (U+FFFE and U+FFFF come back as U+FFFD otherwise), so such a chart would be
            // lost from the index at the next listing.
            ("encoding-type", "url"),
        ];
        if let Some(t) = token {
            query.push(("continuation-token", t));
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
                "s3 GET bucket {}: {}",
                self.s.bucket,
                error_text(&e)
            ))
        })?;
        parse_list(&body).map_err(|e| StorageError::Io {
            path: self.s.bucket.clone(),
            message: format!("listing is not the expected XML: {e}"),
        })
    }

    /// The listing time of one key (for servers whose HEAD has no `Last-Modified`).
    async fn listed_time(&self, key: &str) -> Result<Option<i64>> {
        let page = self.list_page(key, None, 1).await?;
        Ok(page
            .objects
            .into_iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, t)| t))
    }

    async fn write(&self, path: &str, data: Bytes, if_absent: bool) -> Result<ObjectMeta> {
        let key = self.key(path)?;
        if if_absent && self.exists(&key).await? {
            return Err(StorageError::AlreadyExists(path.to_string()));
        }
        let digest = Md5::digest(&data);
        let md5_hex = hex::encode(digest);
        let md5_b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        let mut headers: Vec<(&'static str, &str)> = vec![
            ("Content-MD5", md5_b64.as_str()),
            ("Content-Type", content_type(path)),
        ];
        if !self.s.sse.is_empty() {
            headers.push(("x-amz-server-side-encryption", self.s.sse.as_str()));
        }
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
        let put_etag = header(&ans.resp, "etag").map(|e| e.trim_matches('"').to_string());
        let last_modified = header(&ans.resp, "last-modified").map(str::to_string);
        match status {
            s if s.is_success() => {}
            StatusCode::PRECONDITION_FAILED if if_absent => {
                // A try that timed out may have stored our bytes: then the upload is done.
                let ours = ans.ambiguous
                    && self.head(&key).await.ok().and_then(|h| h.etag).as_deref()
                        == Some(md5_hex.as_str());
                if !ours {
                    return Err(StorageError::AlreadyExists(path.to_string()));
                }
            }
            StatusCode::BAD_REQUEST => {
                let why = self.error_text(ans.resp).await;
                let message = if why.contains("BadDigest") || why.contains("InvalidDigest") {
                    format!("S3 refused the upload: checksum mismatch ({why})")
                } else {
                    format!("S3 refused the upload: {why}")
                };
                return Err(StorageError::Io { path: key, message });
            }
            StatusCode::NOT_FOUND => return Err(self.no_bucket()),
            _ => return Err(self.unexpected(&key, ans.resp).await),
        }
        // Read the object back: its time, and whether our bytes are what stayed.
        let etag = put_etag.unwrap_or(md5_hex);
        remote::settle_write(
            self,
            &self.cache,
            &key,
            path,
            data,
            if_absent,
            &etag,
            last_modified.as_deref(),
        )
        .await
    }
}

impl remote::Service for S3Storage {
    const NAME: &'static str = "S3";

    fn reads(&self) -> remote::Reads<'_> {
        S3Storage::reads(self)
    }

    fn execute(&self, call: &Call<'_>) -> impl Future<Output = Result<Answer>> + Send {
        S3Storage::execute(self, call)
    }

    async fn refused(&self, key: &str, resp: reqwest::Response) -> StorageError {
        match resp.status() {
            StatusCode::NOT_FOUND => self.not_found(key, resp).await,
            _ => self.unexpected(key, resp).await,
        }
    }

    /// The ETag that is the MD5 of the body, when it is: not for multipart uploads (`-N`
    /// suffix) nor for SSE-KMS or SSE-C objects, whose ETags are something else.
    fn body_md5(resp: &reqwest::Response) -> Option<String> {
        let sse = header(resp, "x-amz-server-side-encryption").unwrap_or("AES256");
        if sse != "AES256"
            || header(resp, "x-amz-server-side-encryption-customer-algorithm").is_some()
        {
            return None;
        }
        remote::md5_etag(header(resp, "etag")?)
    }
}

impl remote::ObjectReads for S3Storage {
    fn head(&self, key: &str, _after_write: bool) -> impl Future<Output = Result<Head>> + Send {
        // S3 reads are consistent after writes: every HEAD is fresh.
        S3Storage::head(self, key)
    }

    fn listed_time(&self, key: &str) -> impl Future<Output = Result<Option<i64>>> + Send {
        S3Storage::listed_time(self, key)
    }
}

/// The keys (with size and time) and the continuation token of one ListObjectsV2 page.
fn parse_list(body: &str) -> std::result::Result<ListPage, String> {
    let root = xml::parse(body)?;
    if root.name != "ListBucketResult" {
        return Err(format!("root element <{}>", root.name));
    }
    // Keys are URL-encoded when the answer says so (servers that ignore `encoding-type` send
    // them as they are).
    let encoded = root.child_text("EncodingType").map(str::trim) == Some("url");
    let mut objects = Vec::new();
    for c in root.children_named("Contents") {
        let raw = c.child_text("Key").ok_or("an entry without a key")?;
        let decoded;
        let key = if encoded {
            decoded = url_decode(raw)
                .ok_or_else(|| format!("a key that is not URL-encoded UTF-8: {raw:?}"))?;
            decoded.as_str()
        } else {
            raw
        };
        let size = c
            .child_text("Size")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("no size for {key:?}"))?;
        // An entry without a readable time is a damaged answer, not an object to leave out
        // (the index would drop the chart).
        let time = c
            .child_text("LastModified")
            .and_then(listing_ns)
            .ok_or_else(|| format!("no readable LastModified for {key:?}"))?;
        objects.push((key.to_string(), size, time));
    }
    let truncated = root.child_text("IsTruncated").map(str::trim) == Some("true");
    let next = if truncated {
        let token = root
            .child_text("NextContinuationToken")
            .filter(|t| !t.is_empty())
            .ok_or("a truncated listing without a continuation token")?;
        Some(token.to_string())
    } else {
        None
    };
    Ok(ListPage { objects, next })
}

/// Decodes a key of a listing asked for with `encoding-type=url`: `+` is a space (S3 encodes
/// keys as form values), `%XX` a byte; the result must be UTF-8.
fn url_decode(s: &str) -> Option<String> {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        let mut d = format!("{}:{}", self.s.provider, self.s.bucket);
        if !self.s.prefix.is_empty() {
            d.push('/');
            d.push_str(&self.s.prefix);
        }
        format!("{d} ({})", self.target.origin)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = remote::list_prefix(&self.s.prefix, prefix)?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(&full, token.as_deref(), self.s.page_size)
                .await?;
            for (key, size, time) in page.objects {
                let rel = key.strip_prefix(&full).unwrap_or(&key);
                if rel.is_empty() || rel.contains('/') {
                    continue;
                }
                out.push(ObjectMeta {
                    name: rel.to_string(),
                    size,
                    modified_ns: time,
                });
            }
            match page.next {
                Some(t) if Some(&t) != token.as_ref() => token = Some(t),
                Some(_) => {
                    return Err(StorageError::Io {
                        path: self.s.bucket.clone(),
                        message: "listing repeats its continuation token".into(),
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
        self.cache().remove(&key);
        if !self.exists(&key).await? {
            return Err(StorageError::NotFound(path.to_string()));
        }
        let ans = self.execute(&Call::new(Method::DELETE, Some(&key))).await?;
        // Again: a read that finished meanwhile may have put the old bytes back.
        self.cache().remove(&key);
        match ans.resp.status() {
            s if s.is_success() => Ok(()),
            // Gone meanwhile (some servers say so): the key is gone either way.
            StatusCode::NOT_FOUND => Ok(()),
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

    fn settings() -> S3Settings {
        S3Settings::new("charts", "eu-west-1", "AK", Secret::Value("SK".into()))
    }

    /// A server that accepts connections and never answers (a frozen S3); counts them.
    fn hung_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = n.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(c);
            }
        });
        (url, n)
    }

    #[tokio::test]
    async fn a_hung_server_fails_an_upload_within_the_request_deadline() {
        let (url, connections) = hung_server();
        let mut s = settings();
        s.endpoint = url;
        s.timeout = Duration::from_millis(300);
        s.backoff = Duration::from_millis(10);
        s.attempts = 10;
        s.request_timeout = Duration::from_secs(1);
        let st = S3Storage::new(s).unwrap();
        // Ten tries of 300 ms and their pauses would take about 8 s; the deadline is 1 s.
        let t = std::time::Instant::now();
        let e = st
            .put("a-1.0.0.tgz", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        let took = t.elapsed();
        assert!(matches!(e, StorageError::Unavailable(_)), "{e}");
        assert!(took >= Duration::from_millis(900), "{took:?}");
        assert!(
            took < Duration::from_secs(4),
            "{took:?}: not bounded by the deadline"
        );
        assert!(
            connections.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "it retried"
        );
        assert!(st.problem().is_some());
        // Known down now: the next upload is refused at once, without a request.
        let sent = connections.load(std::sync::atomic::Ordering::SeqCst);
        let t = std::time::Instant::now();
        let e = st
            .put_if_absent("b-1.0.0.tgz", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, StorageError::Unavailable(m) if m.contains("not sent")),
            "{e}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), sent);
    }

    #[test]
    fn addressing() {
        let mut s = settings();
        let t = target(&s).unwrap();
        assert_eq!(t.origin, "https://s3.eu-west-1.amazonaws.com");
        assert_eq!(t.host, "s3.eu-west-1.amazonaws.com");
        assert_eq!(t.base_path, "/charts");
        s.path_style = false;
        let t = target(&s).unwrap();
        assert_eq!(t.origin, "https://charts.s3.eu-west-1.amazonaws.com");
        assert_eq!(t.base_path, "");
        s.endpoint = "http://127.0.0.1:8333/".into();
        s.path_style = true;
        let t = target(&s).unwrap();
        assert_eq!(
            (t.origin.as_str(), t.host.as_str(), t.base_path.as_str()),
            ("http://127.0.0.1:8333", "127.0.0.1:8333", "/charts")
        );
        s.endpoint = "minio.example.org:443".into();
        let t = target(&s).unwrap();
        assert_eq!(t.host, "minio.example.org", "default port not in Host");
        s.endpoint = "https://gw.example.org/s3".into();
        assert_eq!(target(&s).unwrap().base_path, "/s3/charts");
        for bad in ["ftp://x", "http://", "http://h/?q=1", "http://u:p@h"] {
            s.endpoint = bad.into();
            assert!(target(&s).is_err(), "{bad}");
        }
        assert!(check_bucket("My_Bucket", true).is_ok());
        assert!(check_bucket("My_Bucket", false).is_err());
        assert!(check_bucket("a/b", true).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut s = settings();
        s.prefix = "/x//y/".into();
        let ok = S3Storage::new(s.clone()).unwrap();
        assert_eq!(ok.settings().prefix, "x/y");
        assert_eq!(
            ok.describe(),
            "amazon:charts/x/y (https://s3.eu-west-1.amazonaws.com)"
        );
        s.secret_key = Secret::File("/nonexistent/secret".into());
        let e = S3Storage::new(s.clone()).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/secret"), "{e}");
        s.secret_key = Secret::Value("SK".into());
        s.prefix = "a/../b".into();
        assert!(S3Storage::new(s).is_err());
    }

    #[test]
    fn listing_pages_and_times() {
        let page = parse_list(
            "<ListBucketResult><IsTruncated>true</IsTruncated>\
             <NextContinuationToken>t&amp;1</NextContinuationToken>\
             <Contents><Key>p/a.tgz</Key><Size>3</Size>\
             <LastModified>2026-11-26T10:12:23.999Z</LastModified></Contents>\
             <Contents><Key>p/b.tgz</Key><Size>4</Size>\
             <LastModified>2026-11-26T10:12:23Z</LastModified></Contents>\
             <CommonPrefixes><Prefix>p/sub/</Prefix></CommonPrefixes></ListBucketResult>",
        )
        .unwrap();
        assert_eq!(page.next.as_deref(), Some("t&1"));
        assert_eq!(page.objects.len(), 2);
        // A listing time with milliseconds and without agree with the HTTP date.
        let http = time::parse_http_date("Thu, 26 Nov 2026 10:12:23 GMT");
        assert_eq!(Some(page.objects[0].2), http);
        assert_eq!(Some(page.objects[1].2), http);
        // No time, or one that cannot be read: a damaged answer, not a shorter listing.
        for bad in ["", "<LastModified>yesterday</LastModified>"] {
            let doc = format!(
                "<ListBucketResult><Contents><Key>a</Key><Size>1</Size>{bad}</Contents>\
                 </ListBucketResult>"
            );
            let e = parse_list(&doc).err().unwrap_or_default();
            assert!(e.contains("no readable LastModified"), "{bad}: {e}");
        }
        assert!(
            parse_list("<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>")
                .is_err()
        );
        assert!(
            parse_list("<ListBucketResult><Contents><Key>a</Key></Contents></ListBucketResult>")
                .is_err()
        );
        assert!(parse_list("<Error/>").is_err());
        // URL-encoded keys (`encoding-type=url`) are decoded, only when the answer says so.
        let doc = |enc: &str| {
            format!(
                "<ListBucketResult>{enc}<Contents><Key>p/a+b%2Bc%EF%BF%BE%25.tgz</Key>\
                 <Size>1</Size><LastModified>2026-11-26T10:12:23Z</LastModified></Contents>\
                 </ListBucketResult>"
            )
        };
        let page = parse_list(&doc("<EncodingType>url</EncodingType>")).unwrap();
        assert_eq!(page.objects[0].0, "p/a b+c\u{fffe}%.tgz");
        let page = parse_list(&doc("")).unwrap();
        assert_eq!(page.objects[0].0, "p/a+b%2Bc%EF%BF%BE%25.tgz");
        let bad = doc("<EncodingType>url</EncodingType>").replace("%EF%BF%BE", "%FF");
        assert!(parse_list(&bad).is_err());
        assert_eq!(
            error_code("<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>"),
            Some(("NoSuchBucket".into(), "gone".into()))
        );
    }

    #[test]
    fn settings_come_from_the_configuration() {
        let argv: Vec<String> = [
            "--storage=amazon",
            "--storage-amazon-bucket=charts",
            "--storage-amazon-endpoint=http://127.0.0.1:9000",
            "--storage-amazon-force-path-style=false",
            "--storage-amazon-sse=AES256",
            "--storage-amazon-timeout=90s",
            "--storage-amazon-retries=0",
            "--storage-request-timeout=1m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args = crate::config::parse_args(&argv).unwrap();
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AK".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some("SK".to_string()),
            "AWS_SESSION_TOKEN" => Some("TOK".to_string()),
            _ => None,
        };
        let cfg = crate::config::load(&args, &env, None).unwrap();
        let s = S3Settings::from_config(&cfg.storage).unwrap();
        assert_eq!(s.region, "us-east-1", "an endpoint without a region");
        assert!(!s.path_style);
        assert_eq!(s.sse, "AES256");
        assert_eq!(s.timeout, Duration::from_secs(90));
        assert_eq!(s.request_timeout, Duration::from_secs(60));
        assert_eq!(s.attempts, 1);
        assert_eq!(s.session_token.as_deref(), Some("TOK"));
        assert_eq!(s.secret_key, Secret::Value("SK".into()));
        let no_creds = crate::config::load(&args, &|_| None, None).unwrap();
        let e = S3Settings::from_config(&no_creds.storage)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("AWS_ACCESS_KEY_ID"), "{e}");
    }
}
