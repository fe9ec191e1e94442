//! Pieces shared by the backends that talk to an object store over HTTP (Swift, S3): the HTTP
//! client, time limits and retries with backoff, the read cache that serves recently read
//! objects while the service cannot be reached, the checked body stream, request counters and
//! the "what is wrong now" note for `/health`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;

use super::{ObjectMeta, Result, StorageError, check_path};

/// Characters left as they are in a URL path segment or query value (RFC 3986 unreserved).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// An object name prefix with leading, trailing and doubled `/` dropped; `None` when what is
/// left is not a valid path.
pub(crate) fn clean_prefix(prefix: &str) -> Option<String> {
    let p = prefix
        .split('/')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/");
    (p.is_empty() || check_path(&p).is_ok()).then_some(p)
}

/// The HTTP client of a backend: connection and read limits, and extra CA certificates from a
/// PEM bundle (empty: the system's only).
pub(crate) fn http_client(
    connect_timeout: Duration,
    timeout: Duration,
    cacert: &str,
) -> std::result::Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .read_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        // A redirect is answered as it is: following it would send a request signed for
        // another URL, or (to another host) without its credentials.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chartroom/", env!("CARGO_PKG_VERSION")));
    if !cacert.is_empty() {
        let pem =
            std::fs::read(cacert).map_err(|e| format!("cannot read CA bundle {cacert}: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("cannot parse CA bundle {cacert}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("no certificates in {cacert}"));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// An answer the service gave, and whether an earlier try of the same call may have taken
/// effect (it failed after the request could have reached the service).
pub(crate) struct Answer {
    pub resp: reqwest::Response,
    pub ambiguous: bool,
}

/// One call to the service, tried as often as needed.
pub(crate) struct Call<'a> {
    pub method: reqwest::Method,
    /// Full object name; `None` for the container (bucket) itself.
    pub key: Option<&'a str>,
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'static str, &'a str)],
    pub body: Option<Bytes>,
    /// The body will be read by the caller at its own pace: no overall time limit.
    pub streamed: bool,
}

impl<'a> Call<'a> {
    /// A call with no query, no extra headers, no body, and the usual time limit.
    pub(crate) fn new(method: reqwest::Method, key: Option<&'a str>) -> Call<'a> {
        Call {
            method,
            key,
            query: &[],
            headers: &[],
            body: None,
            streamed: false,
        }
    }

    /// The time limit for this call: `base`, plus one second per MiB of body to send, so that
    /// a large upload over a slow link is not cut off by a limit meant for the answer.
    pub(crate) fn time_limit(&self, base: Duration) -> Duration {
        let len = self.body.as_ref().map_or(0, |b| b.len() as u64);
        base + Duration::from_secs(len.div_ceil(1 << 20))
    }

    /// The deadline of this call across all its tries (`storage.requesttimeout`): `base`, plus
    /// one second per whole MiB of body to send (a package under 1 MiB gets `base` exactly).
    pub(crate) fn deadline(&self, base: Duration) -> Duration {
        let len = self.body.as_ref().map_or(0, |b| b.len() as u64);
        base + Duration::from_secs(len >> 20)
    }
}

/// The default of `storage.requesttimeout`: how long one call to the object store may take,
/// all its tries and pauses included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// After a call that got no answer at all (connection refused or reset, no answer in time),
/// the service is left alone this long: calls meanwhile fail at once with
/// [`StorageError::Unavailable`] (so a client gets its 503 without waiting for limits that
/// would most likely run out the same way). The first call after it goes out as a probe; an
/// answer ends the outage, another silence starts a new wait.
pub const DOWN_RETRY: Duration = Duration::from_secs(5);

/// A call that failed after its tries: the error, and whether the last try got no answer
/// from the service at all (as opposed to an answer such as a 5xx or a 403).
pub(crate) struct Failed {
    pub error: StorageError,
    pub unanswered: bool,
}

impl Failed {
    pub(crate) fn answered(error: StorageError) -> Failed {
        Failed {
            error,
            unanswered: false,
        }
    }
}

/// Runs one call of a service, all its tries (`tries`, given the deadline to keep), within
/// `limit`; `what` names the call in errors. While the service is known not to answer (see
/// [`DOWN_RETRY`]) the call fails at once, but for one probe per interval.
pub(crate) async fn bounded<F>(
    problem: &Problem,
    what: &str,
    limit: Duration,
    tries: impl FnOnce(tokio::time::Instant) -> F,
) -> Result<Answer>
where
    F: Future<Output = std::result::Result<Answer, Failed>>,
{
    let start = tokio::time::Instant::now();
    // A probe holds the others back for as long as it may take; if it is abandoned (its
    // client went away), the next call after that is the probe.
    if let Err((why, left)) = problem.admit(start, limit + DOWN_RETRY) {
        return Err(StorageError::Unavailable(format!(
            "{what}: not sent: the service gave no answer to a call just before ({why}); next try in {}s",
            left.as_secs_f64().ceil() as u64
        )));
    }
    let deadline = start + limit;
    let res = match tokio::time::timeout_at(deadline, tries(deadline)).await {
        Ok(r) => r,
        Err(_) => Err(Failed {
            error: StorageError::Unavailable(format!(
                "{what}: no answer within {}s (storage.requesttimeout)",
                limit.as_secs_f64()
            )),
            unanswered: true,
        }),
    };
    match res {
        Ok(a) => {
            problem.clear();
            Ok(a)
        }
        Err(Failed { error, unanswered }) => {
            match (&error, unanswered) {
                (StorageError::Unavailable(why), true) => {
                    problem.unanswered(why, tokio::time::Instant::now())
                }
                _ => problem.note(&error),
            }
            Err(error)
        }
    }
}

/// Sends a request with a limit on the wait for the answer. Without `streamed` the limit also
/// covers reading the body (reqwest's own timeout); with it, only the wait for the headers, the
/// body being read later at the caller's pace (the client's read timeout still bounds every
/// pause). Errors say whether the connection could not be opened (so the request surely did
/// not arrive) and why.
pub(crate) async fn send(
    rb: reqwest::RequestBuilder,
    timeout: Duration,
    streamed: bool,
) -> std::result::Result<reqwest::Response, (bool, String)> {
    if streamed {
        match tokio::time::timeout(timeout, rb.send()).await {
            Ok(r) => r.map_err(|e| (e.is_connect(), error_text(&e))),
            Err(_) => Err((false, "timed out waiting for the answer".into())),
        }
    } else {
        rb.timeout(timeout)
            .send()
            .await
            .map_err(|e| (e.is_connect(), error_text(&e)))
    }
}

/// The innermost cause of a reqwest error ("Connection refused (os error 111)").
pub(crate) fn error_text(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Answers worth another try: 5xx (S3's 503 SlowDown included) but 501, which no retry
/// changes (a server without conditional writes, say), and 408, 429 and 498.
pub(crate) fn retryable_status(s: StatusCode) -> bool {
    (s.is_server_error() && s != StatusCode::NOT_IMPLEMENTED)
        || matches!(s.as_u16(), 408 | 429 | 498)
}

/// Waits before try `attempt + 1`: `backoff`, doubled for each further try, with ±25% jitter.
/// False, without waiting, when the wait would end past `deadline` (no time for another try).
pub(crate) async fn pause(backoff: Duration, attempt: u32, deadline: tokio::time::Instant) -> bool {
    let until = tokio::time::Instant::now() + backoff_wait(backoff, attempt);
    if until >= deadline {
        return false;
    }
    tokio::time::sleep_until(until).await;
    true
}

/// The wait before try `attempt + 1`: `backoff`, doubled for each further try, ±25% jitter.
pub(crate) fn backoff_wait(backoff: Duration, attempt: u32) -> Duration {
    let base = backoff.saturating_mul(1 << attempt.saturating_sub(1).min(10));
    base.mul_f64(rand::random::<f64>() * 0.5 + 0.75)
}

/// The time limit of one try: `limit`, but no later than `deadline`.
pub(crate) fn try_limit(limit: Duration, deadline: tokio::time::Instant) -> Duration {
    limit
        .min(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .max(Duration::from_millis(1))
}

pub(crate) fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// An ETag that is a plain MD5 (32 hex digits), lower-cased, without quotes.
pub(crate) fn md5_etag(etag: &str) -> Option<String> {
    let etag = etag.trim().trim_matches('"').to_ascii_lowercase();
    (etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(etag)
}

pub(crate) fn content_type(path: &str) -> &'static str {
    if path.ends_with(".tgz") {
        "application/x-tar"
    } else if path.ends_with(".prov") {
        "application/pgp-signature"
    } else if path.ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

pub(crate) fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_string()
}

/// The last "unavailable" error of a backend, cleared by the next answer from the service,
/// and whether the service is known not to answer at all (see [`DOWN_RETRY`]).
#[derive(Default)]
pub(crate) struct Problem(Mutex<ProblemState>);

#[derive(Default)]
struct ProblemState {
    why: Option<String>,
    /// While set and in the future, calls are not sent (the service gave no answer).
    quiet_until: Option<tokio::time::Instant>,
}

impl Problem {
    fn lock(&self) -> MutexGuard<'_, ProblemState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes the outcome of a call: an answer clears the problem, `Unavailable` sets it.
    pub(crate) fn track<T>(&self, res: &Result<T>) {
        match res {
            Ok(_) => self.clear(),
            Err(e) => self.note(e),
        }
    }

    /// Notes an error the service answered with: `Unavailable` becomes the problem.
    pub(crate) fn note(&self, e: &StorageError) {
        if let StorageError::Unavailable(why) = e {
            let mut p = self.lock();
            p.why = Some(why.clone());
            p.quiet_until = None;
        }
    }

    /// The service answered.
    pub(crate) fn clear(&self) {
        *self.lock() = ProblemState::default();
    }

    /// A call got no answer at `now`: calls are held back for [`DOWN_RETRY`].
    pub(crate) fn unanswered(&self, why: &str, now: tokio::time::Instant) {
        let mut p = self.lock();
        p.why = Some(why.to_string());
        p.quiet_until = Some(now + DOWN_RETRY);
    }

    /// Whether a call may go out at `now`: `Err((why, wait left))` while the service is
    /// known not to answer. The first call once the wait is over is let through as a probe
    /// and holds the others back for `probe_for` (its own deadline), or until it is answered.
    pub(crate) fn admit(
        &self,
        now: tokio::time::Instant,
        probe_for: Duration,
    ) -> std::result::Result<(), (String, Duration)> {
        let mut p = self.lock();
        match p.quiet_until {
            None => Ok(()),
            Some(t) if now >= t => {
                p.quiet_until = Some(now + probe_for);
                Ok(())
            }
            Some(t) => Err((p.why.clone().unwrap_or_default(), t - now)),
        }
    }

    pub(crate) fn get(&self) -> Option<String> {
        self.lock().why.clone()
    }
}

/// Counts of requests sent (every try counts), for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestStats {
    pub lists: u64,
    pub gets: u64,
    pub heads: u64,
    pub puts: u64,
    pub deletes: u64,
    pub retries: u64,
    /// Reads served from the cache because the service could not be reached.
    pub cache_reads: u64,
}

#[derive(Default)]
pub(crate) struct RequestCounters {
    lists: AtomicU64,
    gets: AtomicU64,
    heads: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) cache_reads: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl RequestCounters {
    /// Counts one request: `GET` of the container or bucket itself (`object` false) is a
    /// listing.
    pub(crate) fn count(&self, method: &reqwest::Method, object: bool) {
        match (method.as_str(), object) {
            ("GET", false) => bump(&self.lists),
            ("GET", true) => bump(&self.gets),
            ("HEAD", _) => bump(&self.heads),
            ("PUT", _) => bump(&self.puts),
            ("DELETE", _) => bump(&self.deletes),
            _ => {}
        }
    }

    pub(crate) fn snapshot(&self) -> RequestStats {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RequestStats {
            lists: l(&self.lists),
            gets: l(&self.gets),
            heads: l(&self.heads),
            puts: l(&self.puts),
            deletes: l(&self.deletes),
            retries: l(&self.retries),
            cache_reads: l(&self.cache_reads),
        }
    }
}

/// Least-recently-used objects, by full object name.
pub(crate) struct ReadCache {
    max_bytes: usize,
    used: usize,
    tick: u64,
    map: HashMap<String, (Bytes, u64)>,
}

/// A read cache shared by a backend and its body streams.
pub(crate) type SharedCache = Arc<Mutex<ReadCache>>;

pub(crate) fn lock_cache(c: &SharedCache) -> MutexGuard<'_, ReadCache> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReadCache {
    pub(crate) fn new(max_bytes: usize) -> ReadCache {
        ReadCache {
            max_bytes,
            used: 0,
            tick: 0,
            map: HashMap::new(),
        }
    }

    pub(crate) fn shared(max_bytes: usize) -> SharedCache {
        Arc::new(Mutex::new(ReadCache::new(max_bytes)))
    }

    /// Objects larger than an eighth of the cache are not kept.
    pub(crate) fn max_object(&self) -> usize {
        self.max_bytes / 8
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(key).map(|(b, t)| {
            *t = tick;
            b.clone()
        })
    }

    pub(crate) fn remove(&mut self, key: &str) {
        if let Some((b, _)) = self.map.remove(key) {
            self.used -= b.len();
        }
    }

    pub(crate) fn insert(&mut self, key: &str, data: Bytes) {
        self.remove(key);
        if data.len() > self.max_object() {
            return;
        }
        self.tick += 1;
        self.used += data.len();
        self.map.insert(key.to_string(), (data, self.tick));
        while self.used > self.max_bytes {
            let oldest = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.remove(&k),
                None => break,
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used
    }
}

/// What a backend's reads of whole objects need: the cache, the counters, and how often and
/// how patiently to try.
pub(crate) struct Reads<'a> {
    pub service: &'static str,
    pub cache: &'a SharedCache,
    pub problem: &'a Problem,
    pub counters: &'a RequestCounters,
    pub attempts: u32,
    pub backoff: Duration,
}

impl Reads<'_> {
    /// While the service is known to be unreachable (the last call failed for want of it), a
    /// cached object is served at once instead of after the time limits and retries of a call
    /// that would most likely fail the same way. Calls the cache cannot answer (listings,
    /// uploads, other objects) find out when the service is back, and clear the problem.
    fn cached_while_down(&self, key: &str) -> Option<Bytes> {
        let why = self.problem.get()?;
        let b = lock_cache(self.cache).get(key)?;
        bump(&self.counters.cache_reads);
        crate::warn!("storage unreachable; serving a cached copy",
            "service" => self.service, "object" => key, "error" => why.as_str());
        Some(b)
    }

    /// A read that the service cannot serve now, from the cache if the object is there.
    pub(crate) fn cached_or(&self, key: &str, err: StorageError) -> Result<Bytes> {
        if let StorageError::Unavailable(why) = &err {
            if let Some(b) = lock_cache(self.cache).get(key) {
                bump(&self.counters.cache_reads);
                crate::warn!("storage unreachable; serving a cached copy",
                    "service" => self.service, "object" => key, "error" => why.as_str());
                return Ok(b);
            }
        }
        Err(err)
    }

    /// Reads object `key` (`path` for errors) whole with `once`, which gives the bytes, or why
    /// a transfer that had started broke off (tried again, up to the attempts), or the error
    /// of the call. Good reads go into the cache; reads that fail for want of the service come
    /// from it when they can.
    pub(crate) async fn get<F, Fut>(&self, key: &str, path: &str, mut once: F) -> Result<Bytes>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<std::result::Result<Bytes, String>>>,
    {
        if let Some(b) = self.cached_while_down(key) {
            return Ok(b);
        }
        let mut tries = 0;
        loop {
            tries += 1;
            match once().await {
                Ok(Ok(data)) => {
                    lock_cache(self.cache).insert(key, data.clone());
                    return Ok(data);
                }
                Ok(Err(why)) if tries < self.attempts => {
                    crate::debug!("download broke off; retrying", "service" => self.service,
                        "object" => key, "error" => why.as_str());
                    bump(&self.counters.retries);
                    tokio::time::sleep(backoff_wait(self.backoff, tries)).await;
                }
                Ok(Err(why)) => {
                    let e = format!("{} GET {key}: {why}", self.service);
                    return self.cached_or(key, StorageError::Unavailable(e));
                }
                Err(StorageError::NotFound(_)) => {
                    lock_cache(self.cache).remove(key);
                    return Err(StorageError::NotFound(path.to_string()));
                }
                Err(e) => return self.cached_or(key, e),
            }
        }
    }
}

/// A service's side of the reads shared by the Swift and S3 backends.
pub(crate) trait Service: Sync {
    /// The service's name in messages ("Swift", "S3").
    const NAME: &'static str;

    fn reads(&self) -> Reads<'_>;

    /// Sends a call, retrying what can be retried.
    fn execute(&self, call: &Call<'_>) -> impl Future<Output = Result<Answer>> + Send;

    /// The error for an answer other than 200 to a GET of object `key`:
    /// [`StorageError::NotFound`] with `key` when the object does not exist.
    fn refused(
        &self,
        key: &str,
        resp: reqwest::Response,
    ) -> impl Future<Output = StorageError> + Send;

    /// The MD5 the body of an answer must have, when the service promises one.
    fn body_md5(resp: &reqwest::Response) -> Option<String>;
}

/// One try at reading object `key` whole: the bytes, or why a transfer that had started broke
/// off (a body cut short or not matching its MD5), or the error of the call.
async fn get_once<S: Service>(s: &S, key: &str) -> Result<std::result::Result<Bytes, String>> {
    // Streamed: the limit covers the wait for the answer, and the client's read timeout every
    // pause in the body, but not the whole transfer (a large object over a slow link).
    let ans = s
        .execute(&Call {
            streamed: true,
            ..Call::new(reqwest::Method::GET, Some(key))
        })
        .await?;
    let resp = ans.resp;
    if resp.status() != StatusCode::OK {
        return Err(s.refused(key, resp).await);
    }
    let etag = S::body_md5(&resp);
    let data = match resp.bytes().await {
        Ok(d) => d,
        Err(e) => return Ok(Err(error_text(&e))),
    };
    Ok(check_md5(&data, etag.as_deref()).map(|()| data))
}

/// [`super::Storage::get`] of object `key` (`path` for errors).
pub(crate) async fn get<S: Service>(s: &S, key: &str, path: &str) -> Result<Bytes> {
    s.reads().get(key, path, || get_once(s, key)).await
}

/// [`super::Storage::get_stream`] of object `key` (`path` for errors): the body as it
/// arrives, checked at its end; from the cache when the service cannot be reached.
pub(crate) async fn get_stream<S: Service>(
    s: &S,
    key: String,
    path: &str,
) -> Result<super::ObjectStream> {
    let reads = s.reads();
    if let Some(b) = reads.cached_while_down(&key) {
        return Ok(whole(b));
    }
    let ans = s
        .execute(&Call {
            streamed: true,
            ..Call::new(reqwest::Method::GET, Some(&key))
        })
        .await;
    let resp = match ans {
        Ok(a) => a.resp,
        Err(e) => return Ok(whole(reads.cached_or(&key, e)?)),
    };
    if resp.status() != StatusCode::OK {
        return Err(match s.refused(&key, resp).await {
            StorageError::NotFound(_) => {
                lock_cache(reads.cache).remove(&key);
                StorageError::NotFound(path.to_string())
            }
            e => e,
        });
    }
    let Some(size) = resp.content_length() else {
        // No length up front (neither Swift nor S3 does this): read it whole.
        drop(resp);
        return Ok(whole(get(s, &key, path).await?));
    };
    let md5 = S::body_md5(&resp);
    let stream = BodyStream::new(resp, S::NAME, key, size, md5, reads.cache.clone());
    Ok(super::ObjectStream {
        size,
        stream: Box::pin(stream),
    })
}

/// What a HEAD of one object says.
pub(crate) struct Head {
    pub size: u64,
    /// The ETag, without quotes.
    pub etag: Option<String>,
    /// The object's time as its listing shows it, when the answer has it.
    pub modified_ns: Option<i64>,
}

/// The two reads of one object that stat and the read-back after an upload need.
pub(crate) trait ObjectReads {
    /// HEAD of object `key`; with `after_write`, an answer that reflects a write just made.
    fn head(&self, key: &str, after_write: bool) -> impl Future<Output = Result<Head>> + Send;

    /// The listing time of object `key` (for servers whose HEAD does not carry it).
    fn listed_time(&self, key: &str) -> impl Future<Output = Result<Option<i64>>> + Send;
}

/// [`super::Storage::stat`] of object `key` (`path` for the answer) by HEAD.
pub(crate) async fn stat(b: &impl ObjectReads, key: &str, path: &str) -> Result<ObjectMeta> {
    let h = match b.head(key, false).await {
        Err(StorageError::NotFound(_)) => return Err(StorageError::NotFound(path.to_string())),
        other => other?,
    };
    let modified_ns = match h.modified_ns {
        Some(ns) => ns,
        // A listing that fails is that error, not a missing object.
        None => b
            .listed_time(key)
            .await?
            .ok_or_else(|| StorageError::NotFound(path.to_string()))?,
    };
    Ok(ObjectMeta {
        name: file_name(path),
        size: h.size,
        modified_ns,
    })
}

/// An upload the service accepted, settled by reading the object back: when its ETag is
/// `etag` (ours), the object as a listing will show it (and the bytes go to the cache);
/// otherwise another writer's bytes stayed: [`StorageError::AlreadyExists`] for a create,
/// and for a replace a `modified_ns` that matches no listing (so the index reads the object
/// again at its next refresh). `last_modified` is the upload answer's header, if any.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn settle_write(
    b: &impl ObjectReads,
    cache: &SharedCache,
    key: &str,
    path: &str,
    data: Bytes,
    if_absent: bool,
    etag: &str,
    last_modified: Option<&str>,
) -> Result<ObjectMeta> {
    let name = file_name(path);
    let unconfirmed = ObjectMeta {
        name: name.clone(),
        size: data.len() as u64,
        modified_ns: unconfirmed_ns(last_modified),
    };
    match b.head(key, true).await {
        Ok(h) if h.etag.as_deref() == Some(etag) => {
            lock_cache(cache).insert(key, data);
            let modified_ns = match h.modified_ns {
                Some(ns) => ns,
                None => b
                    .listed_time(key)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or(unconfirmed.modified_ns),
            };
            Ok(ObjectMeta {
                name,
                size: h.size,
                modified_ns,
            })
        }
        Ok(_) => {
            lock_cache(cache).remove(key);
            if if_absent {
                crate::info!("concurrent upload of the same object: the other one stayed",
                    "object" => key);
                Err(StorageError::AlreadyExists(path.to_string()))
            } else {
                Ok(unconfirmed)
            }
        }
        Err(e) => {
            lock_cache(cache).remove(key);
            crate::debug!("cannot read back an uploaded object", "object" => key,
                "error" => &e.to_string());
            Ok(unconfirmed)
        }
    }
}

/// The full name prefix that lists directory `prefix` under the backend's own `root`
/// (`root/prefix/`, or empty for the top of an empty root).
pub(crate) fn list_prefix(root: &str, prefix: &str) -> Result<String> {
    if !prefix.is_empty() {
        check_path(prefix)?;
    }
    Ok(match (root.is_empty(), prefix.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!("{root}/"),
        _ => format!("{}/", super::join(root, prefix)),
    })
}

/// A `modified_ns` for an object whose listing time could not be read back: one nanosecond
/// past its `Last-Modified` second (or now). Listing times are whole microseconds (Swift) or
/// whole seconds (S3), so this never equals one, and the next refresh reads the object again.
pub(crate) fn unconfirmed_ns(resp_last_modified: Option<&str>) -> i64 {
    resp_last_modified
        .and_then(super::swift::time::parse_http_date)
        .unwrap_or_else(crate::timefmt::now_ns)
        / 1000
        * 1000
        + 1
}

/// Bytes already in memory as a one-piece stream.
pub(crate) fn whole(data: Bytes) -> super::ObjectStream {
    super::ObjectStream {
        size: data.len() as u64,
        stream: Box::pin(futures_util::stream::once(async move { Ok(data) })),
    }
}

/// A body passed on as it arrives, checked against its length and (when known) its MD5 at the
/// end (a mismatch ends the stream with an error, so a client never takes a damaged copy for
/// complete), and kept for the cache when small enough.
pub(crate) struct BodyStream {
    inner: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>,
    service: &'static str,
    key: String,
    size: u64,
    received: u64,
    md5: Option<(Md5, String)>,
    keep: Option<Vec<u8>>,
    cache: SharedCache,
    done: bool,
}

impl BodyStream {
    /// The body of `resp` (of `size` bytes, by its Content-Length), object `key` of `service`;
    /// `md5` is the digest the body must have, when the service promises one. Only bodies
    /// with a digest are cached.
    pub(crate) fn new(
        resp: reqwest::Response,
        service: &'static str,
        key: String,
        size: u64,
        md5: Option<String>,
        cache: SharedCache,
    ) -> BodyStream {
        let cacheable = md5.is_some() && (size as usize) <= lock_cache(&cache).max_object();
        BodyStream {
            inner: Box::pin(resp.bytes_stream()),
            service,
            key,
            size,
            received: 0,
            md5: md5.map(|e| (Md5::new(), e)),
            keep: cacheable.then(|| Vec::with_capacity(size as usize)),
            cache,
            done: false,
        }
    }
}

impl BodyStream {
    /// The checks once all `size` bytes are in: the MD5, when promised; a good body goes into
    /// the cache. Done on the chunk that completes the body, not at the end of the stream: an
    /// HTTP server that sends the body on stops polling once `Content-Length` bytes went out,
    /// so a check at the end would never run, and a damaged last chunk must not go out at all
    /// (the client then sees a body cut short, never a complete wrong one).
    fn finish(&mut self) -> std::io::Result<()> {
        self.done = true;
        if let Some((h, expected)) = self.md5.take() {
            let got = hex::encode(h.finalize());
            if got != expected {
                return Err(std::io::Error::other(format!(
                    "{} from {} does not match its ETag",
                    self.key, self.service
                )));
            }
            if let Some(k) = self.keep.take() {
                lock_cache(&self.cache).insert(&self.key, Bytes::from(k));
            }
        }
        Ok(())
    }
}

impl Stream for BodyStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(b))) => {
                this.received += b.len() as u64;
                if this.received > this.size {
                    this.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other(format!(
                        "{} from {}: more than the {} bytes announced",
                        this.key, this.service, this.size
                    )))));
                }
                if let Some((h, _)) = &mut this.md5 {
                    h.update(&b);
                }
                if let Some(k) = &mut this.keep {
                    k.extend_from_slice(&b);
                }
                if this.received == this.size {
                    if let Err(e) = this.finish() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                Poll::Ready(Some(Err(std::io::Error::other(format!(
                    "reading {} from {}: {}",
                    this.key,
                    this.service,
                    error_text(&e)
                )))))
            }
            Poll::Ready(None) => {
                if this.received != this.size {
                    this.done = true;
                    return Poll::Ready(Some(Err(std::io::Error::other(format!(
                        "{} from {}: got {} of {} bytes",
                        this.key, this.service, this.received, this.size
                    )))));
                }
                // Only an empty body gets here unchecked.
                match this.finish() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => Poll::Ready(Some(Err(e))),
                }
            }
        }
    }
}

/// Checks a body read whole against the MD5 its ETag promises: `Err` says why it is damaged.
pub(crate) fn check_md5(data: &[u8], etag: Option<&str>) -> std::result::Result<(), String> {
    match etag {
        Some(etag) => {
            let got = hex::encode(Md5::digest(data));
            if got == etag {
                Ok(())
            } else {
                Err(format!("body does not match its ETag ({got} != {etag})"))
            }
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_get_time_for_their_size() {
        let base = Duration::from_secs(20);
        let get = Call::new(reqwest::Method::GET, Some("a.tgz"));
        assert_eq!(get.time_limit(base), base);
        let put = |n: usize| Call {
            body: Some(Bytes::from(vec![0u8; n])),
            ..Call::new(reqwest::Method::PUT, Some("a.tgz"))
        };
        assert_eq!(put(1).time_limit(base), Duration::from_secs(21));
        assert_eq!(put(20 << 20).time_limit(base), Duration::from_secs(40));
    }

    /// A stand-in for an answer (bounded only passes it on).
    async fn some_answer() -> Answer {
        let resp = http::Response::builder().status(200).body("").unwrap();
        Answer {
            resp: reqwest::Response::from(resp),
            ambiguous: false,
        }
    }

    fn elapsed(t: tokio::time::Instant) -> Duration {
        tokio::time::Instant::now() - t
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_service_costs_one_deadline_then_fails_at_once() {
        let problem = Problem::default();
        let limit = Duration::from_secs(30);
        let tries = std::sync::atomic::AtomicU32::new(0);
        let hung = |_deadline| {
            tries.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<std::result::Result<Answer, Failed>>()
        };
        // The first call waits the whole deadline, however many tries it would make.
        let t = tokio::time::Instant::now();
        let e = bounded(&problem, "PUT a", limit, hung).await.err().unwrap();
        assert_eq!(elapsed(t), limit);
        assert!(
            matches!(&e, StorageError::Unavailable(m) if m.contains("storage.requesttimeout")),
            "{e}"
        );
        assert!(problem.get().is_some());
        // Known down: the next calls are not sent and fail at once.
        let t = tokio::time::Instant::now();
        for _ in 0..3 {
            let e = bounded(&problem, "PUT b", limit, hung).await.err().unwrap();
            assert!(
                matches!(&e, StorageError::Unavailable(m) if m.contains("not sent")),
                "{e}"
            );
        }
        assert_eq!(elapsed(t), Duration::ZERO);
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        // After DOWN_RETRY one call goes out again (a probe); it is answered: back to normal.
        tokio::time::sleep(DOWN_RETRY).await;
        let ok = bounded(&problem, "HEAD c", limit, |_| async {
            Ok(some_answer().await)
        })
        .await;
        assert!(ok.is_ok());
        assert_eq!(problem.get(), None);
        let ok = bounded(&problem, "HEAD d", limit, |_| async {
            Ok(some_answer().await)
        })
        .await;
        assert!(ok.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_holds_the_others_back_and_an_abandoned_one_does_not_block() {
        let problem = Problem::default();
        let limit = Duration::from_secs(10);
        problem.unanswered("swift PUT x: timed out", tokio::time::Instant::now());
        tokio::time::sleep(DOWN_RETRY).await;
        // The probe is abandoned after 1 s (its client went away).
        let probe = bounded(&problem, "probe", limit, |_| std::future::pending());
        assert!(
            tokio::time::timeout(Duration::from_secs(1), probe)
                .await
                .is_err()
        );
        let sent = std::sync::atomic::AtomicBool::new(false);
        let answered = |_| {
            sent.store(true, Ordering::SeqCst);
            async { Ok(some_answer().await) }
        };
        // While it could still be out, others fail at once.
        assert!(bounded(&problem, "next", limit, answered).await.is_err());
        assert!(!sent.load(Ordering::SeqCst));
        // Once its time is over, the next call is the probe.
        tokio::time::sleep(limit + DOWN_RETRY).await;
        assert!(bounded(&problem, "later", limit, answered).await.is_ok());
        assert!(sent.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn answered_failures_hold_nothing_back() {
        let problem = Problem::default();
        let limit = Duration::from_secs(10);
        let answered_503 = |_| async {
            Err(Failed::answered(StorageError::Unavailable(
                "swift PUT a: 503 (after 3 tries)".into(),
            )))
        };
        assert!(bounded(&problem, "a", limit, answered_503).await.is_err());
        assert!(problem.get().is_some(), "/health still says what is wrong");
        let ok = bounded(&problem, "b", limit, |_| async { Ok(some_answer().await) }).await;
        assert!(ok.is_ok(), "an answered 5xx does not stop the next call");
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_stop_at_the_deadline() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        assert!(pause(Duration::from_millis(100), 1, deadline).await);
        let t = tokio::time::Instant::now();
        assert!(!pause(Duration::from_secs(2), 1, deadline).await);
        assert_eq!(
            elapsed(t),
            Duration::ZERO,
            "no pause that ends past the deadline"
        );
        assert_eq!(
            try_limit(Duration::from_secs(20), deadline),
            deadline - tokio::time::Instant::now()
        );
        let call = Call {
            body: Some(Bytes::from(vec![0u8; (1 << 20) - 1])),
            ..Call::new(reqwest::Method::PUT, Some("a.tgz"))
        };
        assert_eq!(call.deadline(REQUEST_TIMEOUT), REQUEST_TIMEOUT);
        let big = Call {
            body: Some(Bytes::from(vec![0u8; 20 << 20])),
            ..Call::new(reqwest::Method::PUT, Some("a.tgz"))
        };
        assert_eq!(big.deadline(REQUEST_TIMEOUT), Duration::from_secs(50));
    }

    #[test]
    fn encoding() {
        assert_eq!(enc("a-1.0.0+build.1.tgz"), "a-1.0.0%2Bbuild.1.tgz");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(clean_prefix("/x//y/").as_deref(), Some("x/y"));
        assert_eq!(clean_prefix("").as_deref(), Some(""));
        assert_eq!(clean_prefix("a/../b"), None);
        assert_eq!(
            md5_etag("\"D41D8CD98F00B204E9800998ECF8427E\"").as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        assert_eq!(md5_etag("\"d41d8cd98f00b204e9800998ecf8427e-2\""), None);
    }

    #[test]
    fn cache_evicts_oldest() {
        let mut c = ReadCache::new(80);
        c.insert("a", Bytes::from(vec![0; 10]));
        c.insert("b", Bytes::from(vec![0; 10]));
        assert!(c.get("a").is_some());
        for i in 0..7 {
            c.insert(&format!("x{i}"), Bytes::from(vec![0; 10]));
        }
        assert!(c.used() <= 80);
        assert!(c.get("b").is_none(), "least recently used goes first");
        c.insert("big", Bytes::from(vec![0; 11]));
        assert!(c.get("big").is_none(), "larger than an eighth: not kept");
    }
}
