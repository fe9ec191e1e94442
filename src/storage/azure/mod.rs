//! Azure Blob storage (`storage.backend: microsoft`), over the Blob service REST API with
//! reqwest and Shared Key signing ([`sharedkey`]) or a SAS token.
//!
//! - **Names.** An object path `a/b.tgz` is the blob `<prefix>/a/b.tgz` in the container, at
//!   `<endpoint>/<container>/<blob>`; the endpoint is the account's blob URL
//!   (`https://<account>.blob.core.windows.net`, or `http://127.0.0.1:10000/devstoreaccount1`
//!   for Azurite). [`Storage::list`] lists one "directory" with List Blobs, `delimiter=/`
//!   (deeper names come back folded into `BlobPrefix`, which are skipped), up to 5,000 names a
//!   page, paged with the `marker`; an unchanged repository of up to 5,000 charts costs one
//!   request.
//! - **Times.** The Blob service keeps `Last-Modified` to the second, the same in a listing and
//!   in HEAD and GET: `modified_ns` is that second. As on S3, an object replaced within the
//!   same second by one of the same size looks unchanged to another instance's refresh.
//! - **Writes.** Put Blob (block blob, one request) carries `Content-MD5`, which the service
//!   checks (a body damaged on the way is refused and nothing is stored) and keeps as the
//!   blob's MD5. `put_if_absent` sends `If-None-Match: *`: the service answers 409
//!   `BlobAlreadyExists` when the blob exists, atomically. After every PUT the blob is read
//!   back with HEAD: if its ETag is not the one the PUT answered, another writer won
//!   (`remote::settle_write`). A retried conditional PUT that finds its own bytes counts as
//!   done.
//! - **Reads.** Get Blob is streamed; the body is checked at its end against the blob's
//!   `Content-MD5` when the service has one (it keeps it for blobs written in one request).
//! - **Deletes.** Delete Blob answers 404 for a missing blob: one request.
//! - **Faults.** The shared layer of `remote`: time limits per try and per call
//!   (`storage.requesttimeout`), retries of connection errors, timeouts, 5xx, 408 and 429 with
//!   backoff and jitter, the read cache while the service cannot be reached, and `/health`
//!   naming what is wrong. A 403 (key or SAS rejected, clock skew) is not retried; it is
//!   `Unavailable` with the service's code and detail. When the account key or SAS token
//!   comes from a file, a 403 re-reads the file and, if it changed, tries again with the new
//!   one (a rotated secret is picked up without a reload; a reload reads it too).
//!
//! **Several instances on one container** need no coordination beyond the service's own, as
//! with S3: listings, whole-blob PUTs settled as above, and the state file reconciled with a
//! listing before use.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use reqwest::{Method, StatusCode};

pub mod listing;
pub mod sharedkey;

use super::remote::{
    self, Answer, Call, Failed, Head, Problem, RequestCounters, RequestStats, SharedCache,
    content_type, enc, error_text, header, lock_cache, retryable_status,
};
use super::swift::time;
use super::{ObjectMeta, ObjectStream, Result, Secret, Storage, StorageError, check_path, join};
use crate::config::StorageConfig;

/// The REST API version sent in `x-ms-version`.
pub const API_VERSION: &str = "2021-08-06";

/// How requests are authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Shared Key: the account key (base64), signing every request.
    SharedKey(Secret),
    /// A shared access signature, the query string appended to every request.
    Sas(Secret),
}

/// Everything the Azure backend needs; [`AzureSettings::from_config`] fills it from the
/// configuration, tests set it directly.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub account: String,
    pub container: String,
    /// Blob name prefix inside the container (leading, trailing and doubled `/` dropped).
    pub prefix: String,
    /// The account's blob URL; empty: `https://<account>.blob.core.windows.net`.
    pub endpoint: String,
    pub credential: Credential,
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
    /// Names per listing request (the service's maximum is 5,000).
    pub page_size: usize,
    /// Memory for recently read objects, served while the service is unreachable (0: none).
    pub cache_bytes: usize,
}

impl AzureSettings {
    pub fn new(account: &str, container: &str, credential: Credential) -> AzureSettings {
        AzureSettings {
            account: account.to_string(),
            container: container.to_string(),
            prefix: String::new(),
            endpoint: String::new(),
            credential,
            cacert: String::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            request_timeout: remote::REQUEST_TIMEOUT,
            attempts: 3,
            backoff: Duration::from_millis(250),
            page_size: 5000,
            cache_bytes: 32 << 20,
        }
    }

    /// Settings for a `StorageConfig::Microsoft`. Credentials, first found wins:
    /// `storage.microsoft.accesskeyfile`, `storage.microsoft.sastokenfile`,
    /// `AZURE_STORAGE_ACCESS_KEY`, `AZURE_STORAGE_SAS_TOKEN`; the account from
    /// `AZURE_STORAGE_ACCOUNT` (names in [`crate::config::env_names::AZURE`]). Without
    /// `storage.microsoft.endpoint`, `AZURE_BASE_URL` names another cloud's domain.
    pub fn from_config(cfg: &StorageConfig) -> Result<AzureSettings> {
        let StorageConfig::Microsoft {
            container,
            prefix,
            endpoint,
            access_key_file,
            sas_token_file,
            connect_timeout,
            timeout,
            request_timeout,
            retries,
            env,
        } = cfg
        else {
            return Err(config_error("not a microsoft storage configuration"));
        };
        let set = |k: &str| env.get(k).filter(|v| !v.is_empty());
        let file = |f: &str| (!f.is_empty()).then(|| Secret::File(f.into()));
        let credential = if let Some(s) = file(access_key_file) {
            Credential::SharedKey(s)
        } else if let Some(s) = file(sas_token_file) {
            Credential::Sas(s)
        } else if let Some(k) = set("AZURE_STORAGE_ACCESS_KEY") {
            Credential::SharedKey(Secret::Value(k))
        } else if let Some(t) = set("AZURE_STORAGE_SAS_TOKEN") {
            Credential::Sas(Secret::Value(t))
        } else {
            return Err(config_error(
                "no credentials: set AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_ACCESS_KEY, or \
                 AZURE_STORAGE_SAS_TOKEN, or storage.microsoft.accesskeyfile or \
                 storage.microsoft.sastokenfile",
            ));
        };
        let account = set("AZURE_STORAGE_ACCOUNT").unwrap_or_default();
        if account.is_empty()
            && (matches!(credential, Credential::SharedKey(_)) || endpoint.is_empty())
        {
            return Err(config_error("no account: set AZURE_STORAGE_ACCOUNT"));
        }
        let mut s = AzureSettings::new(&account, container, credential);
        s.prefix = prefix.clone();
        s.endpoint = endpoint.clone();
        // ChartMuseum's AZURE_BASE_URL: the domain suffix of another Azure cloud
        // (`core.chinacloudapi.cn`); the endpoint option wins.
        if let (true, Some(base)) = (endpoint.is_empty(), set("AZURE_BASE_URL")) {
            let base = base.trim().trim_start_matches('.').trim_end_matches('/');
            s.endpoint = format!("https://{account}.blob.{base}");
        }
        s.connect_timeout = *connect_timeout;
        s.timeout = *timeout;
        s.request_timeout = *request_timeout;
        s.attempts = retries + 1;
        Ok(s)
    }
}

fn config_error(msg: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: "microsoft".into(),
        message: msg.to_string(),
    }
}

/// Where requests go: scheme and authority, and the encoded path up to the container.
#[derive(Debug, Clone)]
struct Target {
    origin: String,
    /// `/account/container` for Azurite, `/container` for Azure.
    base_path: String,
}

fn target(s: &AzureSettings) -> std::result::Result<Target, String> {
    let endpoint = if s.endpoint.is_empty() {
        format!("https://{}.blob.core.windows.net", s.account)
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
            "invalid endpoint {:?}: no query or user info allowed (a SAS token goes in \
             AZURE_STORAGE_SAS_TOKEN or storage.microsoft.sastokenfile)",
            s.endpoint
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("invalid endpoint {:?}: no host", s.endpoint))?;
    let host = match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let path = url.path().trim_end_matches('/');
    Ok(Target {
        origin: format!("{}://{host}", url.scheme()),
        base_path: format!("{path}/{}", enc(&s.container)),
    })
}

/// Container names the service accepts: 3-63 lower-case letters, digits and single dashes,
/// starting and ending with a letter or digit.
fn check_container(c: &str) -> std::result::Result<(), String> {
    let ok = (3..=63).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--");
    ok.then_some(())
        .ok_or_else(|| format!("invalid container name {c:?}"))
}

/// A SAS token as a list of decoded query pairs (a leading `?` dropped).
fn sas_pairs(token: &str) -> Vec<(String, String)> {
    token
        .trim()
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (d(k), d(v))
        })
        .collect()
}

/// "403 Forbidden (AuthenticationFailed: Server failed to authenticate the request.)".
fn describe_error(status: StatusCode, code: &Option<(String, String)>) -> String {
    match code {
        Some((code, msg)) if !msg.is_empty() => format!("{status} ({code}: {msg})"),
        Some((code, _)) if !code.is_empty() => format!("{status} ({code})"),
        _ => status.to_string(),
    }
}

/// An MD5 as the service sends it (base64) in hex; `None` when it is not one.
fn md5_hex(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    (raw.len() == 16).then(|| hex::encode(raw))
}

pub struct AzureStorage {
    s: AzureSettings,
    target: Target,
    client: reqwest::Client,
    /// The account key or SAS token as last read (from the settings' value or file).
    secret: Mutex<String>,
    counters: RequestCounters,
    cache: SharedCache,
    problem: Problem,
}

impl AzureStorage {
    pub fn new(mut s: AzureSettings) -> Result<AzureStorage> {
        s.prefix = remote::clean_prefix(&s.prefix)
            .ok_or_else(|| config_error(format!("invalid prefix {:?}", s.prefix)))?;
        check_container(&s.container).map_err(config_error)?;
        let (secret_src, what) = match &s.credential {
            Credential::SharedKey(k) => (k, "storage.microsoft.accesskeyfile"),
            Credential::Sas(t) => (t, "storage.microsoft.sastokenfile"),
        };
        let secret = secret_src
            .read()
            .map_err(|e| config_error(format!("{what}: {e}")))?
            .trim()
            .to_string();
        if secret.is_empty() {
            return Err(config_error("empty account key or SAS token"));
        }
        if let Credential::SharedKey(_) = s.credential {
            if s.account.is_empty() {
                return Err(config_error("no account name (AZURE_STORAGE_ACCOUNT)"));
            }
            sharedkey::decode_key(&secret).map_err(config_error)?;
        }
        let target = target(&s).map_err(config_error)?;
        s.attempts = s.attempts.max(1);
        s.page_size = s.page_size.clamp(1, 5000);
        let client =
            remote::http_client(s.connect_timeout, s.timeout, &s.cacert).map_err(config_error)?;
        Ok(AzureStorage {
            cache: remote::ReadCache::shared(s.cache_bytes),
            s,
            target,
            client,
            secret: Mutex::new(secret),
            counters: RequestCounters::default(),
            problem: Problem::default(),
        })
    }

    /// Builds the backend for a `StorageConfig::Microsoft`.
    pub fn from_config(cfg: &StorageConfig) -> Result<AzureStorage> {
        AzureStorage::new(AzureSettings::from_config(cfg)?)
    }

    pub fn settings(&self) -> &AzureSettings {
        &self.s
    }

    /// Requests sent so far (every try counts).
    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    /// The blob name of an object path. Names with U+FFFE or U+FFFF are refused: XML cannot
    /// carry them, so the Blob service lists them only in its own encoding (and Azurite's
    /// listing of the container fails with 500 once one is stored).
    fn key(&self, path: &str) -> Result<String> {
        check_path(path)?;
        if path.contains(['\u{fffe}', '\u{ffff}']) {
            return Err(StorageError::InvalidPath(path.to_string()));
        }
        Ok(join(&self.s.prefix, path))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, remote::ReadCache> {
        lock_cache(&self.cache)
    }

    fn reads(&self) -> remote::Reads<'_> {
        remote::Reads {
            service: "azure",
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

    /// Re-reads a key or token file after the service rejected a request made with `used`:
    /// true when the file holds another one (worth trying again).
    fn reread_secret(&self, used: &str) -> bool {
        let src = match &self.s.credential {
            Credential::SharedKey(s) | Credential::Sas(s) => s,
        };
        if !matches!(src, Secret::File(_)) {
            return false;
        }
        match src.read() {
            Ok(new) => {
                let new = new.trim().to_string();
                if new.is_empty() {
                    return false;
                }
                let mut cur = self.secret.lock().unwrap_or_else(|e| e.into_inner());
                if *cur != new {
                    crate::info!("Azure key or SAS token file changed; using the new one");
                    *cur = new.clone();
                }
                new != used
            }
            Err(e) => {
                crate::warn!("cannot re-read the Azure key or SAS token file", "error" => &e);
                false
            }
        }
    }

    fn describe_call(&self, call: &Call<'_>) -> String {
        match call.key {
            Some(k) => format!("azure {} {}/{k}", call.method, self.s.container),
            None => format!("azure {} container {}", call.method, self.s.container),
        }
    }

    /// The request for `call`, authorized with `secret` (key or SAS token).
    fn request(&self, call: &Call<'_>, secret: &str) -> reqwest::RequestBuilder {
        let mut path = self.target.base_path.clone();
        if let Some(k) = call.key {
            for seg in k.split('/') {
                path.push('/');
                path.push_str(&enc(seg));
            }
        }
        let mut query: Vec<(String, String)> = call
            .query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let sas = matches!(self.s.credential, Credential::Sas(_));
        if sas {
            query.extend(sas_pairs(secret));
        }
        let qs = query
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = if qs.is_empty() {
            format!("{}{path}", self.target.origin)
        } else {
            format!("{}{path}?{qs}", self.target.origin)
        };
        let mut headers: Vec<(String, String)> = vec![
            (
                "x-ms-date".into(),
                sharedkey::http_date(crate::timefmt::now_ns()),
            ),
            ("x-ms-version".into(), API_VERSION.into()),
        ];
        for (k, v) in call.headers {
            headers.push((k.to_ascii_lowercase(), v.to_string()));
        }
        let len = call.body.as_ref().map(|b| b.len());
        if let Some(n) = len {
            headers.push(("content-length".into(), n.to_string()));
        }
        let mut rb = self.client.request(call.method.clone(), url);
        if !sas {
            // A key that does not decode was refused at start; one read from a rotated file
            // later signs nothing useful, and the service's 403 says so.
            let key = sharedkey::decode_key(secret).unwrap_or_default();
            let q: Vec<(&str, &str)> = call.query.to_vec();
            let auth = sharedkey::authorization(
                &sharedkey::Request {
                    method: call.method.as_str(),
                    account: &self.s.account,
                    path: &path,
                    query: &q,
                    headers: &headers,
                },
                &key,
            );
            rb = rb.header(http::header::AUTHORIZATION, auth);
        }
        for (k, v) in &headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        if let Some(b) = &call.body {
            rb = rb.body(b.clone());
        }
        rb
    }

    /// Sends a call, retrying what can be retried, all within `request_timeout`; fails at
    /// once while the service is known not to answer. Returns the answer for anything but 403
    /// and retryable statuses.
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
        let mut reread = false;
        let mut ambiguous = false;
        loop {
            let secret = self.secret();
            let rb = self.request(call, &secret);
            self.counters.count(&call.method, call.key.is_some());
            let limit = remote::try_limit(call.time_limit(self.s.timeout), deadline);
            let mut unanswered = false;
            let failure = match remote::send(rb, limit, call.streamed).await {
                Ok(resp)
                    if resp.status() == StatusCode::FORBIDDEN
                        || (resp.status() == StatusCode::UNAUTHORIZED) =>
                {
                    if !reread && self.reread_secret(&secret) {
                        reread = true;
                        continue;
                    }
                    let why = self.error_text(resp).await;
                    return Err(Failed::answered(StorageError::Unavailable(format!(
                        "{}: Azure refuses the request (account {:?}): {why}",
                        self.describe_call(call),
                        self.s.account
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
            crate::debug!("azure call failed; retrying", "call" => &self.describe_call(call),
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

    async fn error_text(&self, resp: reqwest::Response) -> String {
        let status = resp.status();
        describe_error(status, &self.error_code(resp).await)
    }

    /// The service's error code and message in an answer's body (read within the limit).
    /// A HEAD has no body: its code is in `x-ms-error-code`.
    async fn error_code(&self, resp: reqwest::Response) -> Option<(String, String)> {
        let header_code = header(&resp, "x-ms-error-code").map(str::to_string);
        let body = tokio::time::timeout(self.s.timeout, resp.text()).await;
        let from_body = body
            .ok()
            .and_then(|b| b.ok())
            .and_then(|b| listing::error_code(&b));
        from_body.or_else(|| header_code.map(|c| (c, String::new())))
    }

    async fn unexpected(&self, what: &str, resp: reqwest::Response) -> StorageError {
        let status = resp.status();
        let code = self.error_code(resp).await;
        if code.as_ref().is_some_and(|(c, _)| c == "ContainerNotFound") {
            return self.no_container();
        }
        StorageError::Io {
            path: what.to_string(),
            message: format!("Azure answered {}", describe_error(status, &code)),
        }
    }

    fn no_container(&self) -> StorageError {
        StorageError::Io {
            path: self.s.container.clone(),
            message: format!("container {} not found", self.s.container),
        }
    }

    /// A 404 to a blob request: the blob is missing, or the whole container.
    async fn not_found(&self, key: &str, resp: reqwest::Response) -> StorageError {
        let head_code = header(&resp, "x-ms-error-code").map(str::to_string);
        let code = match head_code {
            Some(c) => Some(c),
            None => self.error_code(resp).await.map(|(c, _)| c),
        };
        match code.as_deref() {
            Some("ContainerNotFound") => self.no_container(),
            _ => StorageError::NotFound(key.to_string()),
        }
    }

    async fn head(&self, key: &str) -> Result<Head> {
        let ans = self.execute(&Call::new(Method::HEAD, Some(key))).await?;
        let resp = ans.resp;
        match resp.status() {
            StatusCode::OK => Ok(Head {
                size: header(&resp, "content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                etag: header(&resp, "etag").map(|e| e.trim_matches('"').to_string()),
                modified_ns: header(&resp, "last-modified").and_then(time::parse_http_date),
            }),
            StatusCode::NOT_FOUND => Err(self.not_found(key, resp).await),
            _ => Err(self.unexpected(key, resp).await),
        }
    }

    /// The MD5 (hex) the service keeps for a blob, by HEAD.
    async fn stored_md5(&self, key: &str) -> Option<String> {
        let ans = self
            .execute(&Call::new(Method::HEAD, Some(key)))
            .await
            .ok()?;
        (ans.resp.status() == StatusCode::OK)
            .then(|| header(&ans.resp, "content-md5").and_then(md5_hex))
            .flatten()
    }

    async fn list_page(
        &self,
        prefix: &str,
        marker: Option<&str>,
        limit: usize,
    ) -> Result<listing::Page> {
        let limit = limit.to_string();
        let mut query: Vec<(&str, &str)> = vec![
            ("restype", "container"),
            ("comp", "list"),
            ("prefix", prefix),
            ("delimiter", "/"),
            ("maxresults", &limit),
        ];
        if let Some(m) = marker {
            query.push(("marker", m));
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
            StatusCode::NOT_FOUND => return Err(self.no_container()),
            _ => return Err(self.unexpected(&self.s.container, resp).await),
        }
        let body = resp.text().await.map_err(|e| {
            StorageError::Unavailable(format!(
                "azure GET container {}: {}",
                self.s.container,
                error_text(&e)
            ))
        })?;
        listing::parse_page(&body).map_err(|e| StorageError::Io {
            path: self.s.container.clone(),
            message: format!("listing is not the expected XML: {e}"),
        })
    }

    async fn listed_time(&self, key: &str) -> Result<Option<i64>> {
        let page = self.list_page(key, None, 1).await?;
        Ok(page
            .blobs
            .into_iter()
            .find(|b| b.name == key)
            .map(|b| b.modified_ns))
    }

    async fn write(&self, path: &str, data: Bytes, if_absent: bool) -> Result<ObjectMeta> {
        let key = self.key(path)?;
        let digest = Md5::digest(&data);
        let md5_hex_ours = hex::encode(digest);
        let md5_b64 = base64::engine::general_purpose::STANDARD.encode(digest);
        let mut headers: Vec<(&'static str, &str)> = vec![
            ("x-ms-blob-type", "BlockBlob"),
            ("Content-MD5", md5_b64.as_str()),
            ("x-ms-blob-content-md5", md5_b64.as_str()),
            ("Content-Type", content_type(path)),
            ("x-ms-blob-content-type", content_type(path)),
        ];
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
            StatusCode::CREATED | StatusCode::OK => {}
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED if if_absent => {
                // A try that timed out may have stored our bytes: then the upload is done.
                let ours = ans.ambiguous
                    && self.stored_md5(&key).await.as_deref() == Some(md5_hex_ours.as_str());
                if !ours {
                    return Err(StorageError::AlreadyExists(path.to_string()));
                }
            }
            StatusCode::BAD_REQUEST => {
                let why = self.error_text(ans.resp).await;
                let message = if why.contains("Md5Mismatch") || why.contains("InvalidMd5") {
                    format!("Azure refused the upload: checksum mismatch ({why})")
                } else {
                    format!("Azure refused the upload: {why}")
                };
                return Err(StorageError::Io { path: key, message });
            }
            StatusCode::NOT_FOUND => return Err(self.no_container()),
            _ => return Err(self.unexpected(&key, ans.resp).await),
        }
        let etag = match put_etag {
            Some(e) => e,
            // Our own conditional PUT that an earlier try stored: read its tag back.
            None => self
                .head(&key)
                .await
                .ok()
                .and_then(|h| h.etag)
                .unwrap_or_default(),
        };
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

impl remote::Service for AzureStorage {
    const NAME: &'static str = "Azure";

    fn reads(&self) -> remote::Reads<'_> {
        AzureStorage::reads(self)
    }

    fn execute(&self, call: &Call<'_>) -> impl Future<Output = Result<Answer>> + Send {
        AzureStorage::execute(self, call)
    }

    async fn refused(&self, key: &str, resp: reqwest::Response) -> StorageError {
        match resp.status() {
            StatusCode::NOT_FOUND => self.not_found(key, resp).await,
            _ => self.unexpected(key, resp).await,
        }
    }

    /// The blob's MD5 as the service keeps it: on a whole-blob GET, `Content-MD5`.
    fn body_md5(resp: &reqwest::Response) -> Option<String> {
        md5_hex(header(resp, "content-md5")?)
    }
}

impl remote::ObjectReads for AzureStorage {
    fn head(&self, key: &str, _after_write: bool) -> impl Future<Output = Result<Head>> + Send {
        // Blob reads are consistent after writes: every HEAD is fresh.
        AzureStorage::head(self, key)
    }

    fn listed_time(&self, key: &str) -> impl Future<Output = Result<Option<i64>>> + Send {
        AzureStorage::listed_time(self, key)
    }
}

#[async_trait]
impl Storage for AzureStorage {
    fn describe(&self) -> String {
        let mut d = format!("microsoft:{}", self.s.container);
        if !self.s.prefix.is_empty() {
            d.push('/');
            d.push_str(&self.s.prefix);
        }
        let base = self
            .target
            .base_path
            .rsplit_once('/')
            .map_or("", |(b, _)| b);
        format!("{d} ({}{base})", self.target.origin)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = remote::list_prefix(&self.s.prefix, prefix)?;
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .list_page(&full, marker.as_deref(), self.s.page_size)
                .await?;
            for b in page.blobs {
                let rel = b.name.strip_prefix(&full).unwrap_or(&b.name);
                if rel.is_empty() || rel.contains('/') {
                    continue;
                }
                out.push(ObjectMeta {
                    name: rel.to_string(),
                    size: b.size,
                    modified_ns: b.modified_ns,
                });
            }
            match page.next {
                Some(m) if Some(&m) != marker.as_ref() => marker = Some(m),
                Some(_) => {
                    return Err(StorageError::Io {
                        path: self.s.container.clone(),
                        message: "listing repeats its marker".into(),
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
        let ans = self
            .execute(&Call {
                headers: &[("x-ms-delete-snapshots", "include")],
                ..Call::new(Method::DELETE, Some(&key))
            })
            .await?;
        // Again: a read that finished meanwhile may have put the old bytes back.
        self.cache().remove(&key);
        match ans.resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => match self.not_found(&key, ans.resp).await {
                StorageError::NotFound(_) if ans.ambiguous => Ok(()),
                StorageError::NotFound(_) => Err(StorageError::NotFound(path.to_string())),
                e => Err(e),
            },
            _ => Err(self.unexpected(&key, ans.resp).await),
        }
    }

    fn problem(&self) -> Option<String> {
        self.problem.get()
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

    fn settings() -> AzureSettings {
        AzureSettings::new(
            "acct",
            "charts",
            Credential::SharedKey(Secret::Value("a2V5".into())),
        )
    }

    #[test]
    fn addressing() {
        let mut s = settings();
        let t = target(&s).unwrap();
        assert_eq!(t.origin, "https://acct.blob.core.windows.net");
        assert_eq!(t.base_path, "/charts");
        s.endpoint = "http://127.0.0.1:10000/devstoreaccount1/".into();
        let t = target(&s).unwrap();
        assert_eq!(t.origin, "http://127.0.0.1:10000");
        assert_eq!(t.base_path, "/devstoreaccount1/charts");
        for bad in ["ftp://x", "http://", "http://h/?sv=1", "http://u:p@h"] {
            s.endpoint = bad.into();
            assert!(target(&s).is_err(), "{bad}");
        }
        for bad in ["ab", "Charts", "a--b", "-ab", "ab-", "a_b", &"x".repeat(64)] {
            assert!(check_container(bad).is_err(), "{bad}");
        }
        assert!(check_container("charts-1").is_ok());
    }

    #[test]
    fn sas_tokens_become_query_pairs() {
        assert_eq!(
            sas_pairs("?sv=2021-08-06&sig=a%2Bb%3D&se=2030-01-01T00%3A00%3A00Z"),
            [
                ("sv".to_string(), "2021-08-06".to_string()),
                ("sig".into(), "a+b=".into()),
                ("se".into(), "2030-01-01T00:00:00Z".into()),
            ]
        );
        assert!(sas_pairs("").is_empty());
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut s = settings();
        s.prefix = "/x//y/".into();
        let ok = AzureStorage::new(s.clone()).unwrap();
        assert_eq!(ok.settings().prefix, "x/y");
        assert_eq!(
            ok.describe(),
            "microsoft:charts/x/y (https://acct.blob.core.windows.net)"
        );
        s.credential = Credential::SharedKey(Secret::File("/nonexistent/key".into()));
        let e = AzureStorage::new(s.clone()).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/key"), "{e}");
        s.credential = Credential::SharedKey(Secret::Value("not base64!".into()));
        let e = AzureStorage::new(s.clone()).err().unwrap().to_string();
        assert!(e.contains("base64"), "{e}");
        s.credential = Credential::Sas(Secret::Value("sv=1&sig=x".into()));
        assert!(AzureStorage::new(s.clone()).is_ok());
        s.prefix = "a/../b".into();
        assert!(AzureStorage::new(s).is_err());
        assert_eq!(
            md5_hex("rL0Y20zC+Fzt72VPzMSk2A==").as_deref(),
            Some("acbd18db4cc2f85cedef654fccc4a4d8")
        );
        assert_eq!(md5_hex("eA=="), None);
    }

    #[test]
    fn settings_come_from_the_configuration() {
        let argv: Vec<String> = [
            "--storage=microsoft",
            "--storage-microsoft-container=charts",
            "--storage-microsoft-prefix=p",
            "--storage-microsoft-endpoint=http://127.0.0.1:10000/devstoreaccount1",
            "--storage-microsoft-timeout=90s",
            "--storage-microsoft-retries=0",
            "--storage-request-timeout=1m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let args = crate::config::parse_args(&argv).unwrap();
        let env = |k: &str| match k {
            "AZURE_STORAGE_ACCOUNT" => Some("devstoreaccount1".to_string()),
            "AZURE_STORAGE_ACCESS_KEY" => Some("a2V5".to_string()),
            _ => None,
        };
        let cfg = crate::config::load(&args, &env, None).unwrap();
        let s = AzureSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(s.account, "devstoreaccount1");
        assert_eq!(s.prefix, "p");
        assert_eq!(s.timeout, Duration::from_secs(90));
        assert_eq!(s.request_timeout, Duration::from_secs(60));
        assert_eq!(s.attempts, 1);
        assert_eq!(
            s.credential,
            Credential::SharedKey(Secret::Value("a2V5".into()))
        );
        let sas_env = |k: &str| match k {
            "AZURE_STORAGE_SAS_TOKEN" => Some("sv=1&sig=x".to_string()),
            _ => None,
        };
        let cfg = crate::config::load(&args, &sas_env, None).unwrap();
        let s = AzureSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(
            s.credential,
            Credential::Sas(Secret::Value("sv=1&sig=x".into()))
        );
        // AZURE_BASE_URL (ChartMuseum's) names the cloud when no endpoint is set.
        let argv: Vec<String> = [
            "--storage=microsoft",
            "--storage-microsoft-container=charts",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let china = |k: &str| match k {
            "AZURE_STORAGE_ACCOUNT" => Some("acct".to_string()),
            "AZURE_STORAGE_ACCESS_KEY" => Some("a2V5".to_string()),
            "AZURE_BASE_URL" => Some("core.chinacloudapi.cn".to_string()),
            _ => None,
        };
        let plain = crate::config::parse_args(&argv).unwrap();
        let cfg = crate::config::load(&plain, &china, None).unwrap();
        let s = AzureSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(s.endpoint, "https://acct.blob.core.chinacloudapi.cn");
        let cfg = crate::config::load(&args, &china, None).unwrap();
        let s = AzureSettings::from_config(&cfg.storage).unwrap();
        assert_eq!(
            s.endpoint, "http://127.0.0.1:10000/devstoreaccount1",
            "the option wins"
        );
        let no_creds = crate::config::load(&args, &|_| None, None).unwrap();
        let e = AzureSettings::from_config(&no_creds.storage)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("AZURE_STORAGE_ACCESS_KEY"), "{e}");
    }
}
