//! etcd v3 (`storage.backend: etcd`), over etcd's JSON gateway (`POST /v3/kv/range`,
//! `/v3/kv/txn`) with reqwest: no gRPC stack to build or vendor.
//!
//! - **Keys.** An object path `a/b.tgz` is the key `<base>/a/b.tgz` holding its bytes, as
//!   ChartMuseum names it (`<base>` is `/` and `storage.etcd.prefix`, default
//!   `/chart_backend_bucket`), and the metadata key `<base>/.chartroom-meta/a/b.tgz` holding
//!   `{"size":..,"mtime_ns":..,"sha256":".."}`. Both are written in one transaction. The
//!   metadata key is what makes an object exist: listings read only metadata keys (sizes and
//!   times without reading any chart), one range request per page of `page_size` keys, all
//!   pages at the revision of the first.
//! - **Times.** etcd keeps no modification time: chartroom writes the time of the write into
//!   the metadata key, in nanoseconds, so a listing, a stat and a restart all give the same
//!   time. (ChartMuseum's backend gave every object of a listing the time of the listed
//!   prefix, or took the key's revision number as seconds since 1970: not copied.)
//! - **Writes.** `put` is a txn of two puts; `put_if_absent` adds the comparison "the metadata
//!   key's create_revision is 0" (it does not exist): of two concurrent ones exactly one
//!   succeeds. A retried conditional write that finds an object with its own checksum counts
//!   as done. Objects whose write would exceed etcd's request limit
//!   (`storage.etcd.maxrequestbytes`, etcd's `--max-request-bytes`, 1.5 MiB by default) are
//!   refused before anything is sent ([`StorageError::TooLarge`], HTTP 413).
//! - **Reads.** One txn of two ranges reads the bytes and the metadata at one revision; the
//!   bytes are checked against the SHA-256 of the metadata.
//! - **Faults.** The shared layer of `remote`: time limits per try and per call
//!   (`storage.requesttimeout`), retries with backoff and jitter, the read cache while etcd
//!   cannot be reached, `/health` naming what is wrong. Endpoints are tried in order: one that
//!   refuses the connection is skipped for the next, within the same try.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub mod gateway;

use super::remote::{
    self, Answer, Call, Failed, Problem, RequestCounters, RequestStats, SharedCache, error_text,
    lock_cache, retryable_status,
};
use super::{ObjectMeta, Result, Storage, StorageError, check_path};
use crate::config::StorageConfig;
use gateway::{Keys, Meta, OpAnswer};

/// etcd's default `--max-request-bytes`.
pub const MAX_REQUEST_BYTES: u64 = 1_572_864;

/// Room kept in a write request for everything but the object's bytes (keys, metadata,
/// framing).
const REQUEST_OVERHEAD: u64 = 4096;

/// Everything the etcd backend needs; [`EtcdSettings::from_config`] fills it from the
/// configuration, tests set it directly.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// Client URLs (`http://127.0.0.1:2379`), tried in order.
    pub endpoints: Vec<String>,
    /// Key prefix (leading, trailing and doubled `/` dropped; empty: `chart_backend_bucket`).
    pub prefix: String,
    /// PEM bundle of CA certificates for https endpoints (empty: the system's).
    pub cafile: String,
    /// PEM client certificate and key (both or neither).
    pub certfile: String,
    pub keyfile: String,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub attempts: u32,
    pub backoff: Duration,
    /// Keys per listing request.
    pub page_size: usize,
    pub cache_bytes: usize,
    pub max_request_bytes: u64,
}

impl EtcdSettings {
    pub fn new(endpoints: &[&str]) -> EtcdSettings {
        EtcdSettings {
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
            prefix: String::new(),
            cafile: String::new(),
            certfile: String::new(),
            keyfile: String::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(20),
            request_timeout: remote::REQUEST_TIMEOUT,
            attempts: 3,
            backoff: Duration::from_millis(250),
            page_size: 1000,
            cache_bytes: 32 << 20,
            max_request_bytes: MAX_REQUEST_BYTES,
        }
    }

    pub fn from_config(cfg: &StorageConfig) -> Result<EtcdSettings> {
        let StorageConfig::Etcd {
            endpoints,
            cafile,
            certfile,
            keyfile,
            prefix,
            connect_timeout,
            timeout,
            request_timeout,
            retries,
            max_request_bytes,
        } = cfg
        else {
            return Err(config_error("not an etcd storage configuration"));
        };
        let mut s = EtcdSettings::new(&[]);
        s.endpoints = endpoints.clone();
        s.prefix = prefix.clone();
        s.cafile = cafile.clone();
        s.certfile = certfile.clone();
        s.keyfile = keyfile.clone();
        s.connect_timeout = *connect_timeout;
        s.timeout = *timeout;
        s.request_timeout = *request_timeout;
        s.attempts = retries + 1;
        s.max_request_bytes = *max_request_bytes;
        Ok(s)
    }
}

/// The base key of a configured prefix (`/chart_backend_bucket` when empty), for
/// descriptions.
pub fn base_prefix(prefix: &str) -> String {
    gateway::base(&remote::clean_prefix(prefix).unwrap_or_default())
}

fn config_error(msg: impl std::fmt::Display) -> StorageError {
    StorageError::Io {
        path: "etcd".into(),
        message: msg.to_string(),
    }
}

/// An endpoint as `scheme://host:port` (no path, query or user info).
fn check_endpoint(e: &str) -> std::result::Result<String, String> {
    let with_scheme = if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    };
    let url = reqwest::Url::parse(&with_scheme)
        .map_err(|err| format!("invalid endpoint {e:?}: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "invalid endpoint {e:?}: the scheme must be http or https"
        ));
    }
    if url.query().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
        || !url.path().trim_end_matches('/').is_empty()
    {
        return Err(format!(
            "invalid endpoint {e:?}: only scheme, host and port are allowed"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("invalid endpoint {e:?}: no host"))?;
    let port = url.port_or_known_default().unwrap_or(2379);
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

fn client(s: &EtcdSettings) -> std::result::Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(s.connect_timeout)
        .read_timeout(s.timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chartroom/", env!("CARGO_PKG_VERSION")));
    if !s.cafile.is_empty() {
        let pem = std::fs::read(&s.cafile)
            .map_err(|e| format!("storage.etcd.cafile: cannot read {}: {e}", s.cafile))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("storage.etcd.cafile: cannot parse {}: {e}", s.cafile))?;
        if certs.is_empty() {
            return Err(format!(
                "storage.etcd.cafile: no certificates in {}",
                s.cafile
            ));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    match (s.certfile.is_empty(), s.keyfile.is_empty()) {
        (true, true) => {}
        (false, false) => {
            let mut pem = std::fs::read(&s.certfile)
                .map_err(|e| format!("storage.etcd.certfile: cannot read {}: {e}", s.certfile))?;
            let key = std::fs::read(&s.keyfile)
                .map_err(|e| format!("storage.etcd.keyfile: cannot read {}: {e}", s.keyfile))?;
            pem.push(b'\n');
            pem.extend_from_slice(&key);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "storage.etcd.certfile/keyfile: not a PEM certificate and key ({}, {}): {e}",
                    s.certfile, s.keyfile
                )
            })?;
            b = b.identity(id);
        }
        _ => return Err("storage.etcd.certfile and storage.etcd.keyfile go together".into()),
    }
    b.build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

pub struct EtcdStorage {
    s: EtcdSettings,
    endpoints: Vec<String>,
    base: String,
    /// The endpoint that answered last: where the next call starts.
    current: AtomicUsize,
    client: reqwest::Client,
    counters: RequestCounters,
    cache: SharedCache,
    problem: Problem,
}

/// What a call is, for the request counters and the messages.
#[derive(Clone, Copy)]
enum Kind {
    List,
    Get,
    Stat,
    Put,
    Delete,
}

impl Kind {
    fn method(self) -> (Method, bool) {
        match self {
            Kind::List => (Method::GET, false),
            Kind::Get => (Method::GET, true),
            Kind::Stat => (Method::HEAD, true),
            Kind::Put => (Method::PUT, true),
            Kind::Delete => (Method::DELETE, true),
        }
    }
}

impl EtcdStorage {
    pub fn new(mut s: EtcdSettings) -> Result<EtcdStorage> {
        s.prefix = remote::clean_prefix(&s.prefix)
            .ok_or_else(|| config_error(format!("invalid prefix {:?}", s.prefix)))?;
        if s.prefix.split('/').next() == Some(gateway::META_DIR) {
            return Err(config_error(format!("invalid prefix {:?}", s.prefix)));
        }
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| check_endpoint(e))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(config_error)?;
        if endpoints.is_empty() {
            return Err(config_error("no endpoint (storage.etcd.endpoint)"));
        }
        s.attempts = s.attempts.max(1);
        s.page_size = s.page_size.clamp(1, 10_000);
        let client = client(&s).map_err(config_error)?;
        Ok(EtcdStorage {
            base: gateway::base(&s.prefix),
            cache: remote::ReadCache::shared(s.cache_bytes),
            s,
            endpoints,
            current: AtomicUsize::new(0),
            client,
            counters: RequestCounters::default(),
            problem: Problem::default(),
        })
    }

    pub fn from_config(cfg: &StorageConfig) -> Result<EtcdStorage> {
        EtcdStorage::new(EtcdSettings::from_config(cfg)?)
    }

    pub fn settings(&self) -> &EtcdSettings {
        &self.s
    }

    /// The base key (`/chart_backend_bucket`).
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn stats(&self) -> RequestStats {
        self.counters.snapshot()
    }

    fn keys(&self, path: &str) -> Result<Keys> {
        check_path(path)?;
        gateway::keys(&self.base, path).ok_or_else(|| StorageError::InvalidPath(path.to_string()))
    }

    fn reads(&self) -> remote::Reads<'_> {
        remote::Reads {
            service: "etcd",
            cache: &self.cache,
            problem: &self.problem,
            counters: &self.counters,
            attempts: self.s.attempts,
            backoff: self.s.backoff,
        }
    }

    /// Sends one gateway call (`kv/range`, `kv/txn`) and returns the answer's body, retrying
    /// what can be retried within `storage.requesttimeout`.
    async fn call(&self, kind: Kind, what: &str, op: &str, body: &Value) -> Result<(Bytes, bool)> {
        let body = Bytes::from(body.to_string());
        let (method, object) = kind.method();
        let probe = Call {
            body: Some(body.clone()),
            ..Call::new(method, None)
        };
        let what = format!("etcd {what}");
        let limit = probe.deadline(self.s.request_timeout);
        let ans = remote::bounded(&self.problem, &what, limit, |deadline| {
            self.call_inner(&probe, object, &what, op, body, deadline)
        })
        .await?;
        let ambiguous = ans.ambiguous;
        let resp = ans.resp;
        let status = resp.status();
        let bytes = tokio::time::timeout(self.s.timeout, resp.bytes())
            .await
            .map_err(|_| StorageError::Unavailable(format!("{what}: answer timed out")))?
            .map_err(|e| StorageError::Unavailable(format!("{what}: {}", error_text(&e))))?;
        if status != StatusCode::OK {
            let msg = gateway::error_message(&bytes);
            if gateway::is_too_large(&msg) {
                return Err(StorageError::TooLarge(format!(
                    "etcd refuses the write: {msg} (etcd's --max-request-bytes)"
                )));
            }
            return Err(StorageError::Io {
                path: what,
                message: format!("etcd answered {status}: {msg}"),
            });
        }
        Ok((bytes, ambiguous))
    }

    async fn call_inner(
        &self,
        call: &Call<'_>,
        object: bool,
        what: &str,
        op: &str,
        body: Bytes,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<Answer, Failed> {
        let mut attempt = 1u32;
        let mut ambiguous = false;
        let n = self.endpoints.len();
        loop {
            let mut unanswered = false;
            let mut failure = String::new();
            let start = self.current.load(Ordering::Relaxed) % n;
            // One try: the endpoints in order from the one that answered last, as long as
            // they refuse the connection.
            for i in 0..n {
                let idx = (start + i) % n;
                let url = format!("{}/v3/{op}", self.endpoints[idx]);
                let rb = self
                    .client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                self.counters.count(&call.method, object);
                let limit = remote::try_limit(call.time_limit(self.s.timeout), deadline);
                match remote::send(rb, limit, false).await {
                    Ok(resp) if is_too_large_status(&resp) => {
                        return Ok(Answer { resp, ambiguous });
                    }
                    Ok(resp) if retryable_status(resp.status()) => {
                        self.current.store(idx, Ordering::Relaxed);
                        ambiguous = true;
                        unanswered = false;
                        let status = resp.status();
                        let body = tokio::time::timeout(self.s.timeout, resp.bytes())
                            .await
                            .ok()
                            .and_then(|b| b.ok())
                            .unwrap_or_default();
                        failure = format!(
                            "{} answered {status}: {}",
                            self.endpoints[idx],
                            gateway::error_message(&body)
                        );
                        break;
                    }
                    Ok(resp) => {
                        self.current.store(idx, Ordering::Relaxed);
                        return Ok(Answer { resp, ambiguous });
                    }
                    Err((connect, msg)) => {
                        ambiguous |= !connect;
                        unanswered = true;
                        failure = format!("{}: {msg}", self.endpoints[idx]);
                        if !connect {
                            break;
                        }
                    }
                }
            }
            let give_up = |note: &str| Failed {
                error: StorageError::Unavailable(format!(
                    "{what}: {failure} (after {attempt} tries{note})"
                )),
                unanswered,
            };
            if attempt >= self.s.attempts {
                return Err(give_up(""));
            }
            crate::debug!("etcd call failed; retrying", "call" => what,
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

    fn bad_answer(&self, what: &str, e: String) -> StorageError {
        StorageError::Io {
            path: format!("etcd {what}"),
            message: format!("unexpected answer from etcd: {e}"),
        }
    }

    /// The metadata of one object, by its metadata key.
    async fn meta(&self, kind: Kind, keys: &Keys, path: &str) -> Result<Option<(Meta, i64)>> {
        let req = gateway::range_request(keys.meta.as_bytes(), &[], 0, 0);
        let (body, _) = self
            .call(kind, &format!("range {}", keys.meta), "kv/range", &req)
            .await?;
        let r = gateway::parse_range(&body).map_err(|e| self.bad_answer(path, e))?;
        match r.kvs.into_iter().find(|kv| kv.key == keys.meta.as_bytes()) {
            None => Ok(None),
            Some(kv) => {
                let m = Meta::parse(&kv.value).map_err(|e| self.bad_answer(path, e))?;
                Ok(Some((m, kv.create_revision)))
            }
        }
    }

    /// Reads bytes and metadata at one revision; `Ok(Err(why))` when the bytes do not match
    /// the metadata's checksum (worth another try).
    async fn get_once(
        &self,
        keys: &Keys,
        path: &str,
    ) -> Result<std::result::Result<Bytes, String>> {
        let req = gateway::txn(
            vec![],
            vec![gateway::range_op(&keys.data), gateway::range_op(&keys.meta)],
            vec![],
        );
        let (body, _) = self
            .call(Kind::Get, &format!("get {}", keys.data), "kv/txn", &req)
            .await?;
        let t = gateway::parse_txn(&body).map_err(|e| self.bad_answer(path, e))?;
        let mut ranges = t.responses.into_iter().filter_map(|r| match r {
            OpAnswer::Range(r) => Some(r),
            _ => None,
        });
        let (Some(data), Some(meta)) = (ranges.next(), ranges.next()) else {
            return Err(self.bad_answer(path, "a read without its two answers".into()));
        };
        let data = data
            .kvs
            .into_iter()
            .find(|kv| kv.key == keys.data.as_bytes());
        let meta = meta
            .kvs
            .into_iter()
            .find(|kv| kv.key == keys.meta.as_bytes());
        let (Some(data), Some(meta)) = (data, meta) else {
            return Err(StorageError::NotFound(path.to_string()));
        };
        let meta = Meta::parse(&meta.value).map_err(|e| self.bad_answer(path, e))?;
        let sum = hex::encode(Sha256::digest(&data.value));
        if sum != meta.sha256 || data.value.len() as u64 != meta.size {
            return Ok(Err(format!(
                "checksum mismatch: {} has {} bytes with SHA-256 {sum}, its metadata says {} and {}",
                keys.data,
                data.value.len(),
                meta.size,
                meta.sha256
            )));
        }
        Ok(Ok(Bytes::from(data.value)))
    }

    async fn write(&self, path: &str, data: Bytes, if_absent: bool) -> Result<ObjectMeta> {
        let keys = self.keys(path)?;
        let size = data.len() as u64;
        let need = size + (keys.data.len() + keys.meta.len()) as u64 + REQUEST_OVERHEAD;
        if need > self.s.max_request_bytes {
            return Err(StorageError::TooLarge(format!(
                "{} is {size} bytes: etcd takes at most {} bytes in one request \
                 (storage.etcd.maxrequestbytes, etcd's --max-request-bytes), this object needs {need}",
                crate::storage::remote::file_name(path),
                self.s.max_request_bytes
            )));
        }
        let meta = Meta {
            size,
            mtime_ns: crate::timefmt::now_ns(),
            sha256: hex::encode(Sha256::digest(&data)),
        };
        let ops = vec![
            gateway::put_op(&keys.data, &data),
            gateway::put_op(&keys.meta, meta.to_json().as_bytes()),
        ];
        let compare = if if_absent {
            vec![gateway::absent(&keys.meta)]
        } else {
            vec![]
        };
        let req = gateway::txn(compare, ops, vec![]);
        let (body, ambiguous) = self
            .call(Kind::Put, &format!("put {}", keys.data), "kv/txn", &req)
            .await?;
        let t = gateway::parse_txn(&body).map_err(|e| self.bad_answer(path, e))?;
        let name = remote::file_name(path);
        if !t.succeeded {
            // A try that timed out may have written our object: then the upload is done.
            if ambiguous {
                if let Ok(Some((m, _))) = self.meta(Kind::Stat, &keys, path).await {
                    if m.sha256 == meta.sha256 && m.size == size {
                        lock_cache(&self.cache).insert(&keys.data, data);
                        return Ok(ObjectMeta {
                            name,
                            size,
                            modified_ns: m.mtime_ns,
                        });
                    }
                }
            }
            lock_cache(&self.cache).remove(&keys.data);
            return Err(StorageError::AlreadyExists(path.to_string()));
        }
        lock_cache(&self.cache).insert(&keys.data, data);
        Ok(ObjectMeta {
            name,
            size,
            modified_ns: meta.mtime_ns,
        })
    }
}

/// A 429 or 400 from the gateway that is etcd's "request is too large" is final: never
/// retried. (Its body is read by the caller.)
fn is_too_large_status(resp: &reqwest::Response) -> bool {
    // grpc-gateway maps ResourceExhausted to 429, InvalidArgument to 400; both carry the
    // message, which the caller checks. Only the retryable one needs holding back here.
    resp.status() == StatusCode::TOO_MANY_REQUESTS
        && resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"))
}

#[async_trait]
impl Storage for EtcdStorage {
    fn describe(&self) -> String {
        format!("etcd:{} ({})", self.base, self.endpoints.join(","))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let dir = prefix.trim_matches('/');
        if !dir.is_empty() {
            check_path(dir)?;
            if dir.split('/').next() == Some(gateway::META_DIR) {
                return Err(StorageError::InvalidPath(prefix.to_string()));
            }
        }
        let start = gateway::meta_dir_prefix(&self.base, dir);
        let end = gateway::prefix_end(start.as_bytes());
        let mut from = start.as_bytes().to_vec();
        let mut revision = 0;
        let mut out = Vec::new();
        loop {
            let req = gateway::range_request(&from, &end, self.s.page_size as i64, revision);
            let (body, _) = self
                .call(Kind::List, &format!("list {start}"), "kv/range", &req)
                .await?;
            let page = gateway::parse_range(&body).map_err(|e| self.bad_answer(&start, e))?;
            if revision == 0 {
                revision = page.revision;
            }
            let Some(last) = page.kvs.last().map(|kv| kv.key.clone()) else {
                break;
            };
            // Keys come in ascending order from `from`: a page that does not move forward
            // (a broken or hostile server) would repeat forever.
            if last < from || last.as_slice() >= end.as_slice() {
                return Err(
                    self.bad_answer(&start, "a listing page outside the requested range".into())
                );
            }
            for kv in page.kvs {
                let Some(rest) = kv.key.strip_prefix(start.as_bytes()) else {
                    continue;
                };
                let Ok(name) = std::str::from_utf8(rest) else {
                    continue;
                };
                if name.is_empty() || name.contains('/') || check_path(name).is_err() {
                    continue;
                }
                match Meta::parse(&kv.value) {
                    Ok(m) => out.push(ObjectMeta {
                        name: name.to_string(),
                        size: m.size,
                        modified_ns: m.mtime_ns,
                    }),
                    Err(e) => crate::warn!("etcd: skipping an object with bad metadata",
                        "key" => String::from_utf8_lossy(&kv.key).as_ref(), "error" => e.as_str()),
                }
            }
            if !page.more {
                break;
            }
            from = gateway::key_after(&last);
        }
        Ok(out)
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        let keys = self.keys(path)?;
        self.reads()
            .get(&keys.data, path, || self.get_once(&keys, path))
            .await
    }

    async fn stat(&self, path: &str) -> Result<ObjectMeta> {
        let keys = self.keys(path)?;
        match self.meta(Kind::Stat, &keys, path).await? {
            Some((m, _)) => Ok(ObjectMeta {
                name: remote::file_name(path),
                size: m.size,
                modified_ns: m.mtime_ns,
            }),
            None => Err(StorageError::NotFound(path.to_string())),
        }
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.write(path, data, false).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.write(path, data, true).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let keys = self.keys(path)?;
        let req = gateway::txn(
            vec![],
            vec![
                gateway::delete_op(&keys.meta),
                gateway::delete_op(&keys.data),
            ],
            vec![],
        );
        let (body, _) = self
            .call(
                Kind::Delete,
                &format!("delete {}", keys.data),
                "kv/txn",
                &req,
            )
            .await?;
        lock_cache(&self.cache).remove(&keys.data);
        let t = gateway::parse_txn(&body).map_err(|e| self.bad_answer(path, e))?;
        match t.responses.first() {
            Some(OpAnswer::Delete { deleted }) if *deleted > 0 => Ok(()),
            Some(OpAnswer::Delete { .. }) => Err(StorageError::NotFound(path.to_string())),
            _ => Err(self.bad_answer(path, "a delete without its answer".into())),
        }
    }

    async fn check(&self) -> Result<()> {
        let start = gateway::meta_dir_prefix(&self.base, "");
        let end = gateway::prefix_end(start.as_bytes());
        let req = gateway::range_request(start.as_bytes(), &end, 1, 0);
        let (body, _) = self
            .call(Kind::List, &format!("list {start}"), "kv/range", &req)
            .await?;
        gateway::parse_range(&body)
            .map(|_| ())
            .map_err(|e| self.bad_answer(&start, e))
    }

    fn problem(&self) -> Option<String> {
        self.problem.get()
    }

    fn request_stats(&self) -> Option<RequestStats> {
        Some(self.counters.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            check_endpoint("http://localhost:2379").unwrap(),
            "http://localhost:2379"
        );
        assert_eq!(
            check_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            check_endpoint("https://e.example").unwrap(),
            "https://e.example:443"
        );
        for bad in [
            "ftp://x",
            "http://u:p@x:1",
            "http://x:1/v3",
            "http://x:1?a=b",
            "http://",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_are_checked() {
        assert!(EtcdStorage::new(EtcdSettings::new(&[])).is_err());
        let mut s = EtcdSettings::new(&["http://127.0.0.1:1"]);
        s.prefix = ".chartroom-meta".into();
        assert!(EtcdStorage::new(s).is_err());
        let mut s = EtcdSettings::new(&["http://127.0.0.1:1"]);
        s.certfile = "/nonexistent".into();
        assert!(EtcdStorage::new(s).is_err());
        let s = EtcdStorage::new(EtcdSettings::new(&["http://127.0.0.1:1"])).unwrap();
        assert_eq!(s.base(), "/chart_backend_bucket");
    }

    #[tokio::test]
    async fn oversize_is_refused_before_sending() {
        let mut s = EtcdSettings::new(&["http://127.0.0.1:1"]);
        s.max_request_bytes = 10_000;
        let st = EtcdStorage::new(s).unwrap();
        let e = st
            .put("a.tgz", Bytes::from(vec![0u8; 8000]))
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::TooLarge(_)), "{e}");
        assert_eq!(st.stats().puts, 0);
        let e = st
            .put(".chartroom-meta/a.tgz", Bytes::new())
            .await
            .unwrap_err();
        assert!(matches!(e, StorageError::InvalidPath(_)), "{e}");
    }
}
