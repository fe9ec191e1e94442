//! Storage and refresh metrics: a [`Storage`] wrapper that times every call and counts its
//! failures by kind, and the refresh figures of a registry. One [`StoreMeter`] lives as long
//! as the process: a reload hands it on to the registry it builds, so counters do not restart.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::storage::{ObjectMeta, ObjectStream, RequestStats, Result, Storage, StorageError};

/// Latency buckets of one storage call, in seconds (1 ms to 30 s, the default
/// `storage.requesttimeout`).
const CALL_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Duration of one refresh pass over every repository, in seconds.
const REFRESH_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Objects downloaded by one refresh pass.
const DOWNLOAD_BUCKETS: [f64; 6] = [0.0, 1.0, 10.0, 100.0, 1000.0, 10000.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub backend: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub backend: &'static str,
    pub operation: &'static str,
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn call_histogram() -> Histogram {
    Histogram::new(CALL_BUCKETS)
}

/// Storage calls and refresh passes.
#[derive(Debug)]
pub struct StoreMeter {
    calls: HistogramFamily<CallLabels>,
    errors: Family<ErrorLabels, Counter>,
    refresh_duration: Histogram,
    refresh_downloads: Histogram,
    refresh_failures: Counter,
}

impl Default for StoreMeter {
    fn default() -> StoreMeter {
        StoreMeter {
            calls: Family::new_with_constructor(call_histogram),
            errors: Family::default(),
            refresh_duration: Histogram::new(REFRESH_BUCKETS),
            refresh_downloads: Histogram::new(DOWNLOAD_BUCKETS),
            refresh_failures: Counter::default(),
        }
    }
}

impl StoreMeter {
    /// Records one storage call.
    pub fn observe(
        &self,
        backend: &'static str,
        operation: &'static str,
        took: Duration,
        error: Option<&StorageError>,
    ) {
        self.calls
            .get_or_create(&CallLabels { backend, operation })
            .observe(took.as_secs_f64());
        if let Some(kind) = error.and_then(error_kind) {
            self.errors
                .get_or_create(&ErrorLabels {
                    backend,
                    operation,
                    kind,
                })
                .inc();
        }
    }

    /// Records one refresh pass over every repository.
    pub fn refreshed(&self, took: Duration, downloaded: usize, failed: bool) {
        self.refresh_duration.observe(took.as_secs_f64());
        self.refresh_downloads.observe(downloaded as f64);
        if failed {
            self.refresh_failures.inc();
        }
    }

    pub(crate) fn register(&self, reg: &mut Registry) {
        reg.register(
            "chartroom_storage_call_duration_seconds",
            "Time of one storage call (all its tries) by backend and operation; _count is the number of calls",
            self.calls.clone(),
        );
        reg.register(
            "chartroom_storage_errors",
            "Storage calls that failed, by backend, operation and kind (timeout, unavailable, server_error, auth, invalid_path, error); not found and already exists are answers, not errors",
            self.errors.clone(),
        );
        reg.register(
            "chartroom_refresh_duration_seconds",
            "Time of one refresh pass (every repository in memory reconciled with a storage listing)",
            self.refresh_duration.clone(),
        );
        reg.register(
            "chartroom_refresh_downloaded_objects",
            "Objects (packages) downloaded by one refresh pass",
            self.refresh_downloads.clone(),
        );
        reg.register(
            "chartroom_refresh_failures",
            "Refresh passes in which a repository could not be reconciled",
            self.refresh_failures.clone(),
        );
    }
}

/// The kind of a storage failure, for the `kind` label; `None` for answers that are not
/// failures (the object is missing, or exists already).
pub fn error_kind(e: &StorageError) -> Option<&'static str> {
    let (message, unavailable) = match e {
        StorageError::NotFound(_) | StorageError::AlreadyExists(_) => return None,
        StorageError::InvalidPath(_) => return Some("invalid_path"),
        StorageError::TooLarge(_) => return Some("too_large"),
        StorageError::Unavailable(m) => (m.as_str(), true),
        StorageError::Io { message, .. } => (message.as_str(), false),
    };
    let lower = message.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let status = |first: char| {
        words
            .iter()
            .any(|w| w.len() == 3 && w.starts_with(first) && w.bytes().all(|b| b.is_ascii_digit()))
    };
    if lower.contains("timed out") || lower.contains("no answer within") {
        Some("timeout")
    } else if words
        .iter()
        .any(|w| matches!(*w, "401" | "403" | "unauthorized" | "forbidden"))
        || lower.contains("refuses the request")
        || lower.contains("rejects the token")
        || lower.contains("authentication")
    {
        Some("auth")
    } else if status('5') {
        Some("server_error")
    } else if unavailable {
        Some("unavailable")
    } else {
        Some("error")
    }
}

/// The `backend` label of a storage, from its description (`local:/srv`, `openstack:...`,
/// `amazon:...`): one of a fixed set.
pub fn backend_label(describe: &str) -> &'static str {
    match describe.split(':').next().unwrap_or("") {
        "local" => "local",
        "openstack" => "openstack",
        "amazon" => "amazon",
        _ => "other",
    }
}

/// A storage whose calls are timed and counted in a [`StoreMeter`].
pub struct Metered {
    inner: Arc<dyn Storage>,
    meter: Arc<StoreMeter>,
    backend: &'static str,
}

/// Wraps `storage` so that its calls are recorded in `meter`.
pub fn metered(storage: Arc<dyn Storage>, meter: Arc<StoreMeter>) -> Arc<dyn Storage> {
    let backend = backend_label(&storage.describe());
    Arc::new(Metered {
        inner: storage,
        meter,
        backend,
    })
}

impl Metered {
    async fn timed<T>(&self, op: &'static str, call: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let res = call.await;
        self.meter
            .observe(self.backend, op, start.elapsed(), res.as_ref().err());
        res
    }
}

#[async_trait]
impl Storage for Metered {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.timed("list", self.inner.list(prefix)).await
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        self.timed("get", self.inner.get(path)).await
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        self.timed("get_stream", self.inner.get_stream(path)).await
    }

    async fn stat(&self, path: &str) -> Result<ObjectMeta> {
        self.timed("stat", self.inner.stat(path)).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.timed("put", self.inner.put(path, data)).await
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.timed("put_if_absent", self.inner.put_if_absent(path, data))
            .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.timed("delete", self.inner.delete(path)).await
    }

    async fn check(&self) -> Result<()> {
        self.timed("check", self.inner.check()).await
    }

    fn problem(&self) -> Option<String> {
        self.inner.problem()
    }

    fn request_stats(&self) -> Option<RequestStats> {
        self.inner.request_stats()
    }

    fn local_file(&self, path: &str) -> Option<std::path::PathBuf> {
        self.inner.local_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(m: &str) -> StorageError {
        StorageError::io("x", m)
    }

    #[test]
    fn kinds() {
        let u = |m: &str| StorageError::Unavailable(m.into());
        assert_eq!(error_kind(&StorageError::NotFound("a".into())), None);
        assert_eq!(error_kind(&StorageError::AlreadyExists("a".into())), None);
        assert_eq!(
            error_kind(&u(
                "s3 GET bucket b: no answer within 30s (storage.requesttimeout)"
            )),
            Some("timeout")
        );
        assert_eq!(
            error_kind(&u("swift GET x: timed out (after 3 tries)")),
            Some("timeout")
        );
        assert_eq!(
            error_kind(&u(
                "s3 PUT b/k: S3 refuses the request: 403 Forbidden (SignatureDoesNotMatch)"
            )),
            Some("auth")
        );
        assert_eq!(
            error_kind(&u("swift GET c: Swift rejects the token it gave (401)")),
            Some("auth")
        );
        assert_eq!(
            error_kind(&u("swift GET c: 503 Service Unavailable (after 3 tries)")),
            Some("server_error")
        );
        assert_eq!(
            error_kind(&io("S3 answered 500 Internal Server Error")),
            Some("server_error")
        );
        assert_eq!(
            error_kind(&u(
                "swift GET c: Connection refused (os error 111) (after 3 tries)"
            )),
            Some("unavailable")
        );
        assert_eq!(
            error_kind(&io("Permission denied (os error 13)")),
            Some("error")
        );
        // Port numbers and try counts are not statuses.
        assert_eq!(
            error_kind(&io("127.0.0.1:5000 after 5 tries")),
            Some("error")
        );
    }

    #[test]
    fn backends() {
        assert_eq!(backend_label("local:/srv"), "local");
        assert_eq!(backend_label("openstack:c (auth v1)"), "openstack");
        assert_eq!(backend_label("amazon:b/p"), "amazon");
        assert_eq!(backend_label("anything"), "other");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            /// Any error message gives one of the fixed kinds.
            #[test]
            fn any_message_has_a_fixed_kind(m in any::<String>(), unavailable in any::<bool>()) {
                let e = if unavailable { StorageError::Unavailable(m) } else { io(&m) };
                let k = error_kind(&e);
                prop_assert!(matches!(k, Some("timeout" | "auth" | "server_error" | "unavailable" | "error")), "{k:?}");
            }
        }
    }
}
