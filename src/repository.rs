//! Repositories (tenants) and their indexes over one storage backend: loading an index from the
//! state file, reconciling it with a storage listing, recording API changes, and writing the
//! state file back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::Digest;

use crate::chart::{self, Metadata};
use crate::index::{Entry, Layout, Object, RepoIndex};
use crate::storage::{ObjectMeta, Storage, StorageError, join};

/// Name of the state file kept in each repository's storage prefix. It is a cache: on load it
/// is always reconciled with a listing, so a stale or foreign copy costs downloads, never
/// correctness. Its body carries a SHA-256 checksum; an entry is trusted only when the
/// checksum holds, the entry's name and version give exactly its file name, and its size and
/// modification time match the listing. Anything else is read again from storage.
pub const STATE_FILE: &str = "chartroom-state.json";
/// Bumped when the file's layout or the way a package is read changes: 2 added the checksum
/// and reads Chart.yaml as Helm reads it; 3 adds each entry's rendered index.yaml item, so
/// that a start need not render it again. Format 2 files are still read (their entries are
/// rendered from the JSON); files of another version are ignored, so every package is read
/// once more from storage.
pub const STATE_FORMAT: &str = "chartroom-state/3";
const STATE_FORMAT_2: &str = "chartroom-state/2";
const DEFAULT_FETCH_CONCURRENCY: usize = 8;

/// Settings every repository of a registry shares.
#[derive(Debug, Clone, Default)]
pub struct RepoSettings {
    pub statefiles: bool,
    pub index_limit: usize,
    pub chart_url: String,
    pub context_path: String,
    pub json_index: bool,
    /// How far packages read from storage may unpack.
    pub chart_limits: chart::Limits,
    /// Counts of packages read while indexing, for status reports during start-up.
    pub progress: Arc<Progress>,
    /// Most repositories (tenants) kept in memory at once; 0 means no limit.
    pub max_tenants: usize,
}

/// How many packages reconciliations have found to read, and how many they have read.
#[derive(Debug, Default)]
pub struct Progress {
    pub to_read: AtomicU64,
    pub read: AtomicU64,
}

impl RepoSettings {
    fn layout(&self, key: &str) -> Layout {
        let url_prefix = if self.chart_url.is_empty() {
            "charts/".to_string()
        } else if key.is_empty() {
            format!("{}{}/charts/", self.chart_url, self.context_path)
        } else {
            format!("{}{}/{key}/charts/", self.chart_url, self.context_path)
        };
        Layout {
            url_prefix,
            context_path: self.context_path.clone(),
            json: self.json_index,
        }
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Counts of what a reconciliation changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RefreshStats {
    pub listed: usize,
    pub fetched: usize,
    pub removed: usize,
}

pub struct Repo {
    /// Storage prefix of this repository (`""` for the root, `org/team` at depth 2).
    pub key: String,
    index: Mutex<RepoIndex>,
    /// Held while loading or reconciling.
    refresh: tokio::sync::Mutex<()>,
    /// Set once the index has been loaded; read without the lock, so that requests never wait
    /// for a reconciliation in progress (which may be stuck on a slow storage for a while).
    loaded: AtomicBool,
    seq: AtomicU64,
    /// Files changed through the API, with the sequence number of the change: a
    /// reconciliation that started before the change must not undo it.
    recent: Mutex<HashMap<String, u64>>,
    state_dirty: AtomicBool,
    /// Requests that write into this repository (uploads), from lookup to recording: a
    /// refresh or an eviction never drops a repository while one is in flight.
    users: AtomicUsize,
    /// Registry clock at the last lookup, for evicting the least recently used.
    last_used: AtomicU64,
    /// The refresh error last logged, so that a failing repository logs once, not every
    /// interval.
    last_error: Mutex<Option<String>>,
    /// Time of the last successful reconciliation with storage, in ms since the epoch
    /// (metrics: staleness).
    last_ok_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the index half-updated in a way that
    // matters more than refusing service would; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Only the format of a state file, to say why one is not used.
#[derive(Deserialize)]
struct StateFormat {
    format: String,
}

/// One object of a state file. `yaml` (format 3) is the entry's item of index.yaml as it was
/// rendered; without it (format 2) the entry is rendered again from its JSON.
#[derive(Deserialize)]
struct StateObject<'a> {
    size: u64,
    modified_ns: i64,
    #[serde(borrow)]
    entry: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    yaml: Option<std::borrow::Cow<'a, str>>,
}

/// What a state file gave: the objects to put in the index, and how many were not trusted.
struct StateLoad {
    objects: Vec<(String, Object)>,
    distrusted: usize,
}

/// Parses a state file and builds its entries (in a blocking task: this is the bulk of a
/// start with state files).
fn load_state_objects(data: &[u8], url_prefix: &str) -> Result<StateLoad, StateFileError> {
    let objects = parse_state(data)?;
    let mut out = StateLoad {
        objects: Vec::with_capacity(objects.len()),
        distrusted: 0,
    };
    for (file, obj) in objects {
        if !file.ends_with(".tgz") || !chart::is_plain_file_name(&file) {
            out.distrusted += 1;
            continue;
        }
        let url = format!("{url_prefix}{file}");
        // An unreadable package (no entry) is read again: it may have been fixed, and a
        // `null` must never hide a chart. An entry must name exactly its own file.
        let entry = obj.entry.and_then(|raw| {
            let rendered = obj
                .yaml
                .as_deref()
                .and_then(|y| Entry::from_rendered(raw.get(), y, &file, &url));
            rendered.or_else(|| {
                let map = serde_json::from_str(raw.get()).ok()?;
                Entry::from_value(map, &file, &url)
                    .filter(|e| format!("{}-{}.tgz", e.name, e.version) == file)
            })
        });
        let Some(entry) = entry else {
            out.distrusted += 1;
            continue;
        };
        out.objects.push((
            file,
            Object {
                size: obj.size,
                modified_ns: obj.modified_ns,
                entry: Some(Arc::new(entry)),
            },
        ));
    }
    Ok(out)
}

impl Repo {
    fn new(key: String, layout: Layout) -> Repo {
        Repo {
            key,
            index: Mutex::new(RepoIndex::new(layout)),
            refresh: tokio::sync::Mutex::new(()),
            loaded: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            recent: Mutex::new(HashMap::new()),
            state_dirty: AtomicBool::new(false),
            users: AtomicUsize::new(0),
            last_used: AtomicU64::new(0),
            last_error: Mutex::new(None),
            last_ok_ms: AtomicU64::new(0),
        }
    }

    fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Logs a refresh failure once per distinct error (shortened to one sane line).
    fn note_refresh_error(&self, e: &StorageError) {
        let msg = shorten(&e.to_string(), MAX_LOGGED_ERROR);
        let mut last = lock(&self.last_error);
        if last.as_deref() != Some(msg.as_str()) {
            warn!("index refresh failed; serving the last good index (logged again only if the error changes)",
                "repo" => &shorten(&self.key, MAX_LOGGED_ERROR), "error" => &msg);
            *last = Some(msg);
        }
    }

    fn note_refresh_ok(&self) {
        if lock(&self.last_error).take().is_some() {
            info!("index refresh works again", "repo" => &shorten(&self.key, MAX_LOGGED_ERROR));
        }
    }

    /// When the index was last reconciled with storage successfully, in ms since the epoch
    /// (0: never).
    pub fn last_refresh_ok_ms(&self) -> u64 {
        self.last_ok_ms.load(Ordering::Relaxed)
    }

    pub fn index(&self) -> MutexGuard<'_, RepoIndex> {
        lock(&self.index)
    }

    pub fn path(&self, file: &str) -> String {
        join(&self.key, file)
    }

    fn note_change(&self, file: &str) {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        lock(&self.recent).insert(file.to_string(), seq);
        self.state_dirty.store(true, Ordering::Release);
    }

    /// Records a chart stored through the API.
    pub fn record_upload(&self, meta: &Metadata, digest: &str, stored: &ObjectMeta) {
        let file = meta.file_name();
        self.note_change(&file);
        let mut idx = self.index();
        let url = idx.url_for(&file);
        let entry = Entry::new(meta, digest, stored.modified_ns, &file, &url);
        idx.upsert(
            &file,
            Object {
                size: stored.size,
                modified_ns: stored.modified_ns,
                entry: Some(Arc::new(entry)),
            },
        );
    }

    /// Records a chart removed through the API.
    pub fn record_delete(&self, file: &str) {
        self.note_change(file);
        self.index().remove(file);
    }

    /// Loads the index once (state file, then reconciliation); later calls return at once,
    /// also while a refresh is running: requests are served from the index as it stands.
    pub async fn ensure_loaded(
        &self,
        storage: &dyn Storage,
        settings: &RepoSettings,
    ) -> Result<(), StorageError> {
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let _guard = self.refresh.lock().await;
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        self.first_load(storage, settings).await?;
        Ok(())
    }

    /// The first load: the state file (when enabled), then a reconciliation; sets `loaded`.
    /// The caller holds the refresh lock.
    async fn first_load(
        &self,
        storage: &dyn Storage,
        settings: &RepoSettings,
    ) -> Result<RefreshStats, StorageError> {
        if settings.statefiles {
            self.load_state(storage).await;
        }
        let stats = self.reconcile(storage, settings).await?;
        self.loaded.store(true, Ordering::Release);
        let (charts, versions) = {
            let idx = self.index();
            (idx.chart_count(), idx.version_count())
        };
        info!("repository loaded", "repo" => &self.key, "charts" => charts,
            "versions" => versions, "fetched" => stats.fetched);
        Ok(stats)
    }

    async fn load_state(&self, storage: &dyn Storage) {
        let path = self.path(STATE_FILE);
        let data = match storage.get(&path).await {
            Ok(d) => d,
            Err(StorageError::NotFound(_)) => return,
            // A repository path through a file: the listing that follows says so.
            Err(e) if is_not_a_directory(&e) => return,
            Err(e) => {
                warn!("cannot read state file", "path" => &path,
                    "error" => &shorten(&e.to_string(), MAX_LOGGED_ERROR));
                return;
            }
        };
        let layout = self.index().layout.clone();
        // Parsed, and on a first load built into a whole index with its blocks, in a
        // blocking task: the runtime thread only swaps it in.
        let loaded = chart::parse_off_thread(move || {
            let l = load_state_objects(&data, &layout.url_prefix)?;
            let n = l.objects.len();
            let mut fresh = RepoIndex::new(layout);
            for (file, obj) in l.objects {
                fresh.upsert(&file, obj);
            }
            let _ = fresh.pieces();
            let _ = fresh.charts_json();
            Ok::<_, StateFileError>((fresh, n, l.distrusted))
        })
        .await;
        let (fresh, n, distrusted) = match loaded {
            Ok(l) => l,
            Err(e) => {
                warn!("state file not used; rebuilding from storage", "path" => &path,
                    "reason" => &shorten(&e.to_string(), MAX_LOGGED_ERROR));
                return;
            }
        };
        let mut idx = self.index();
        if idx.objects().is_empty() {
            *idx = fresh;
        } else {
            // Only if something was recorded meanwhile: merge, that wins.
            for (file, obj) in fresh.objects() {
                if !idx.objects().contains_key(file) {
                    idx.upsert(file, obj.clone());
                }
            }
        }
        drop(idx);
        if distrusted > 0 {
            debug!("state file entries not trusted; reading those packages again",
                "path" => &path, "entries" => distrusted);
        }
        debug!("state file loaded", "path" => &path, "objects" => n);
    }

    /// Reconciles the index with a storage listing: objects that are new or whose size or
    /// modification time changed are downloaded and read; objects gone are dropped.
    pub async fn refresh(
        &self,
        storage: &dyn Storage,
        settings: &RepoSettings,
    ) -> Result<RefreshStats, StorageError> {
        let _guard = self.refresh.lock().await;
        if !self.loaded.load(Ordering::Acquire) {
            return self.first_load(storage, settings).await;
        }
        self.reconcile(storage, settings).await
    }

    async fn reconcile(
        &self,
        storage: &dyn Storage,
        settings: &RepoSettings,
    ) -> Result<RefreshStats, StorageError> {
        let snapshot = self.seq.load(Ordering::SeqCst);
        let listing: Vec<ObjectMeta> = storage
            .list(&self.key)
            .await?
            .into_iter()
            .filter(|o| o.name.ends_with(".tgz") && chart::is_plain_file_name(&o.name))
            .collect();
        let mut stats = RefreshStats {
            listed: listing.len(),
            ..RefreshStats::default()
        };
        let (to_fetch, to_remove, url_prefix) = {
            let idx = self.index();
            let known = idx.objects();
            let to_fetch: Vec<ObjectMeta> = listing
                .iter()
                .filter(|o| {
                    known
                        .get(&o.name)
                        .is_none_or(|k| k.size != o.size || k.modified_ns != o.modified_ns)
                })
                .cloned()
                .collect();
            let listed: std::collections::HashSet<&str> =
                listing.iter().map(|o| o.name.as_str()).collect();
            let to_remove: Vec<String> = known
                .keys()
                .filter(|k| !listed.contains(k.as_str()))
                .cloned()
                .collect();
            (to_fetch, to_remove, idx.layout.url_prefix.clone())
        };
        let limit = if settings.index_limit == 0 {
            DEFAULT_FETCH_CONCURRENCY
        } else {
            settings.index_limit
        };
        let key = self.key.clone();
        let progress = &settings.progress;
        progress
            .to_read
            .fetch_add(to_fetch.len() as u64, Ordering::Relaxed);
        let local: Option<Vec<_>> = to_fetch
            .iter()
            .map(|m| {
                let path = join(&key, &m.name);
                storage.local_file(&path).map(|f| (m.clone(), f, path))
            })
            .collect();
        let results: Vec<Result<Option<(String, Object)>, StorageError>> = if let Some(local) =
            local
        {
            let batches: Vec<Vec<_>> = local.chunks(LOCAL_BATCH).map(<[_]>::to_vec).collect();
            let nested: Vec<Vec<_>> = futures_util::stream::iter(batches.into_iter().map(|b| {
                let url_prefix = url_prefix.clone();
                let limits = settings.chart_limits;
                async move {
                    let n = b.len() as u64;
                    let r = read_local_batch(b, &url_prefix, limits).await;
                    progress.read.fetch_add(n, Ordering::Relaxed);
                    r
                }
            }))
            .buffer_unordered(limit)
            .collect()
            .await;
            nested.into_iter().flatten().collect()
        } else {
            futures_util::stream::iter(to_fetch.into_iter().map(|meta| {
                let key = key.clone();
                let url_prefix = url_prefix.clone();
                let limits = settings.chart_limits;
                async move {
                    let r = read_object(storage, &key, meta, &url_prefix, limits).await;
                    progress.read.fetch_add(1, Ordering::Relaxed);
                    r
                }
            }))
            .buffer_unordered(limit)
            .collect()
            .await
        };
        let mut fetched = Vec::with_capacity(results.len());
        for r in results {
            if let Some(obj) = r? {
                fetched.push(obj);
            }
        }
        let recent = lock(&self.recent).clone();
        let untouched = |file: &str| recent.get(file).is_none_or(|&s| s <= snapshot);
        let mut changed = false;
        {
            let mut idx = self.index();
            for file in to_remove {
                if untouched(&file) && idx.remove(&file) {
                    stats.removed += 1;
                    changed = true;
                }
            }
            for (file, obj) in fetched {
                if untouched(&file) {
                    idx.upsert(&file, obj);
                    stats.fetched += 1;
                    changed = true;
                }
            }
        }
        lock(&self.recent).retain(|_, s| *s > snapshot);
        if changed {
            self.state_dirty.store(true, Ordering::Release);
            debug!("index reconciled", "repo" => &self.key, "listed" => stats.listed,
                "fetched" => stats.fetched, "removed" => stats.removed);
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_ok_ms.store(now_ms, Ordering::Relaxed);
        Ok(stats)
    }

    /// Writes the state file if anything changed since the last write.
    pub async fn save_state(&self, storage: &dyn Storage) -> Result<bool, StorageError> {
        if !self.state_dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        // A snapshot under the lock (shared entries, no texts copied); the document is built
        // off the runtime thread.
        let mut objects: Vec<(String, Object)> = self
            .index()
            .objects()
            .iter()
            .map(|(f, o)| (f.clone(), o.clone()))
            .collect();
        let body = chart::off_thread(move || {
            objects.sort_by(|a, b| a.0.cmp(&b.0));
            state_body(&objects)
        })
        .await;
        if let Err(e) = storage.put(&self.path(STATE_FILE), body).await {
            self.state_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.index().objects().is_empty()
    }
}

/// The state file of `objects` (sorted by file name): see [`parse_state`].
fn state_body(objects: &[(String, Object)]) -> Bytes {
    // Sized up front (the YAML item is escaped: a few bytes per line more), so the document
    // is never copied while it grows.
    let size: usize = objects
        .iter()
        .map(|(f, o)| {
            f.len()
                + 80
                + o.entry
                    .as_ref()
                    .map_or(4, |e| e.json().len() + e.yaml().len() * 9 / 8 + 16)
        })
        .sum();
    let mut out = String::with_capacity(1024 + size);
    // The head with room for the checksum, which is filled in once the objects are written
    // (no second copy of a large body).
    out.push_str(&state_head());
    let sum_at = out.len();
    out.push_str(&"0".repeat(64));
    out.push_str(STATE_MIDDLE);
    let objects_at = out.len();
    out.push('{');
    for (i, (file, obj)) in objects.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(file).unwrap_or_default());
        out.push_str(&format!(
            ":{{\"size\":{},\"modified_ns\":{},\"entry\":",
            obj.size, obj.modified_ns
        ));
        match &obj.entry {
            Some(e) => {
                out.push_str(e.json());
                out.push_str(",\"yaml\":");
                out.push_str(&serde_json::to_string(e.yaml()).unwrap_or_default());
            }
            None => out.push_str("null"),
        }
        out.push('}');
    }
    out.push('}');
    let sum = sha256_hex(&out.as_bytes()[objects_at..]);
    out.replace_range(sum_at..sum_at + 64, &sum);
    out.push('}');
    Bytes::from(out)
}

/// Downloads and reads one package; `None` when it vanished meanwhile.
/// Packages one blocking task reads and parses when storage is a local directory.
const LOCAL_BATCH: usize = 32;

async fn read_object(
    storage: &dyn Storage,
    key: &str,
    meta: ObjectMeta,
    url_prefix: &str,
    limits: chart::Limits,
) -> Result<Option<(String, Object)>, StorageError> {
    let path = join(key, &meta.name);
    let data = match storage.get(&path).await {
        Ok(d) => d,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let url_prefix = url_prefix.to_string();
    let obj =
        chart::parse_off_thread(move || object_of(meta, &data, &url_prefix, &limits, &path)).await;
    Ok(Some(obj))
}

/// Reads and parses packages of a backend on the local file system in one blocking task per
/// batch: no round trip to the runtime thread between reading a file and parsing it.
async fn read_local_batch(
    batch: Vec<(ObjectMeta, std::path::PathBuf, String)>,
    url_prefix: &str,
    limits: chart::Limits,
) -> Vec<Result<Option<(String, Object)>, StorageError>> {
    let url_prefix = url_prefix.to_string();
    chart::parse_off_thread(move || {
        batch
            .into_iter()
            .map(|(meta, file, path)| match std::fs::read(&file) {
                Ok(data) => Ok(Some(object_of(meta, &data, &url_prefix, &limits, &path))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(StorageError::io(&path, e)),
            })
            .collect()
    })
    .await
}

/// The index object of package `data` listed as `meta` (an entry-less object when it is not a
/// valid chart, with a warning).
fn object_of(
    meta: ObjectMeta,
    data: &[u8],
    url_prefix: &str,
    limits: &chart::Limits,
    path: &str,
) -> (String, Object) {
    let parsed = chart::read_metadata_with(data, limits).map(|md| (md, sha256_hex(data)));
    let entry = match parsed {
        Ok((md, digest)) => {
            let url = format!("{url_prefix}{}", meta.name);
            Some(Arc::new(Entry::new(
                &md,
                &digest,
                meta.modified_ns,
                &meta.name,
                &url,
            )))
        }
        Err(e) => {
            warn!("invalid package in storage", "path" => path, "error" => &e.to_string());
            None
        }
    };
    (
        meta.name,
        Object {
            size: meta.size,
            modified_ns: meta.modified_ns,
            entry,
        },
    )
}

/// The longest error message (and repository name) a log line carries.
const MAX_LOGGED_ERROR: usize = 300;
/// How often the "too many repositories" warning may be logged.
const OVER_BOUND_WARNING_EVERY: Duration = Duration::from_secs(60);

/// `s`, cut (at a character boundary) to at most `max` bytes plus an ellipsis.
fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Whether a storage error is the local file system's ENOTDIR: a repository path runs through
/// a file.
fn is_not_a_directory(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { message, .. }
        if *message == std::io::Error::from_raw_os_error(libc::ENOTDIR).to_string())
}

fn is_name_too_long(e: &StorageError) -> bool {
    matches!(e, StorageError::Io { message, .. }
        if *message == std::io::Error::from_raw_os_error(libc::ENAMETOOLONG).to_string())
}

/// Why a state file is not used.
#[derive(Debug, thiserror::Error)]
enum StateFileError {
    #[error("unknown format {0:?} (this version reads {STATE_FORMAT:?})")]
    Format(String),
    #[error("not a state file")]
    Shape,
    #[error("checksum does not match the contents")]
    Checksum,
    #[error("cannot parse: {0}")]
    Json(#[from] serde_json::Error),
}

/// The start of a state file, up to its checksum.
fn state_head() -> String {
    state_head_of(STATE_FORMAT)
}

fn state_head_of(format: &str) -> String {
    format!("{{\"format\":\"{format}\",\"sha256\":\"")
}
const STATE_MIDDLE: &str = "\",\"objects\":";

/// A state file around its objects (a JSON object): format, the SHA-256 of the objects text,
/// then the objects. A change to any byte of the objects breaks the checksum. (What
/// [`Repo::save_state`] writes, built there in place.)
#[cfg(test)]
fn state_document(objects: &str) -> String {
    let mut out = state_head();
    out.reserve(objects.len() + 100);
    out.push_str(&sha256_hex(objects.as_bytes()));
    out.push_str(STATE_MIDDLE);
    out.push_str(objects);
    out.push('}');
    out
}

/// Reads a state file written by [`state_document`]: checks its format and checksum, then
/// parses the objects.
fn parse_state(data: &[u8]) -> Result<HashMap<String, StateObject<'_>>, StateFileError> {
    let rest = data
        .strip_prefix(state_head().as_bytes())
        .or_else(|| data.strip_prefix(state_head_of(STATE_FORMAT_2).as_bytes()));
    let Some(rest) = rest else {
        return Err(match serde_json::from_slice::<StateFormat>(data) {
            Ok(f) => StateFileError::Format(f.format),
            Err(_) => StateFileError::Shape,
        });
    };
    let (sum, rest) = rest.split_at_checked(64).ok_or(StateFileError::Shape)?;
    let objects = rest
        .strip_prefix(STATE_MIDDLE.as_bytes())
        .and_then(|r| r.strip_suffix(b"}"))
        .ok_or(StateFileError::Shape)?;
    if sha256_hex(objects).as_bytes() != sum {
        return Err(StateFileError::Checksum);
    }
    Ok(serde_json::from_slice(objects)?)
}

/// Why a repository could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// On local storage, a segment of the repository's path names a file (ENOTDIR), such as a
    /// chart file or chartroom's state file in the parent repository.
    #[error(
        "invalid repository name {0:?}: part of its path is a file in storage, not a repository"
    )]
    NamesAFile(String),
    #[error("invalid repository name {0:?}: the path is too long for the storage")]
    TooLong(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<TenantError> for StorageError {
    fn from(e: TenantError) -> StorageError {
        match e {
            TenantError::NamesAFile(k) | TenantError::TooLong(k) => StorageError::InvalidPath(k),
            TenantError::Storage(e) => e,
        }
    }
}

/// A repository held by a request that writes into it: while it is held, neither a refresh
/// nor an eviction drops the repository from the registry, so what the request records lands
/// in the index that later requests read.
pub struct RepoInUse {
    repo: Arc<Repo>,
}

impl RepoInUse {
    /// Takes a hold; the caller holds the registry lock (see [`Registry::forget_if`]).
    fn new(repo: Arc<Repo>) -> RepoInUse {
        repo.users.fetch_add(1, Ordering::SeqCst);
        RepoInUse { repo }
    }
}

impl std::ops::Deref for RepoInUse {
    type Target = Arc<Repo>;
    fn deref(&self) -> &Arc<Repo> {
        &self.repo
    }
}

impl Drop for RepoInUse {
    fn drop(&mut self) {
        self.repo.users.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Tenants {
    map: HashMap<String, Arc<Repo>>,
    /// Counts lookups; a repository's `last_used` is this clock at its last lookup.
    clock: u64,
}

/// All repositories over one storage backend with one set of settings. A storage reload builds
/// a new registry and swaps it in whole; requests in flight keep the one they started with.
///
/// Which repositories stay in memory: the root always; another repository while it holds
/// charts (or while an upload into it is in flight), up to `max_tenants`. A repository that
/// is empty (it does not exist in storage) is answered from a fresh listing and not kept, so
/// made-up names cost nothing once answered; one whose load fails is not kept either. Beyond
/// `max_tenants`, the least recently used repository without uploads in flight is dropped,
/// empty ones first (a dropped repository is read again from its state file and a listing
/// when next asked for); when every one has an upload in flight, the new one is served for
/// that request only.
pub struct Registry {
    /// The storage, its calls timed and counted in `meter`.
    pub storage: Arc<dyn Storage>,
    /// Storage and refresh metrics, handed on to the registry a reload builds.
    pub meter: Arc<crate::metrics::StoreMeter>,
    pub settings: RepoSettings,
    repos: Mutex<Tenants>,
    over_bound_warned: Mutex<Option<Instant>>,
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, settings: RepoSettings) -> Registry {
        Registry::with_meter(storage, settings, Arc::default())
    }

    /// A registry whose storage calls and refreshes are recorded in `meter`.
    pub fn with_meter(
        storage: Arc<dyn Storage>,
        settings: RepoSettings,
        meter: Arc<crate::metrics::StoreMeter>,
    ) -> Registry {
        Registry {
            storage: crate::metrics::metered(storage, meter.clone()),
            meter,
            settings,
            repos: Mutex::new(Tenants {
                map: HashMap::new(),
                clock: 0,
            }),
            over_bound_warned: Mutex::new(None),
        }
    }

    /// The repository `key`, loading its index on first use.
    pub async fn repo(&self, key: &str) -> Result<Arc<Repo>, TenantError> {
        let (repo, _) = self.lookup(key, false).await?;
        Ok(repo)
    }

    /// The repository `key` for a request that will write into it (an upload): held until
    /// the returned guard is dropped.
    pub async fn repo_in_use(&self, key: &str) -> Result<RepoInUse, TenantError> {
        match self.lookup(key, true).await? {
            (_, Some(held)) => Ok(held),
            (repo, None) => Ok(RepoInUse::new(repo)),
        }
    }

    async fn lookup(
        &self,
        key: &str,
        hold: bool,
    ) -> Result<(Arc<Repo>, Option<RepoInUse>), TenantError> {
        let (repo, kept, held) = {
            let mut t = lock(&self.repos);
            t.clock += 1;
            let now = t.clock;
            let (repo, kept) = match t.map.get(key) {
                Some(r) => (r.clone(), true),
                None => {
                    let r = Arc::new(Repo::new(key.to_string(), self.settings.layout(key)));
                    let kept = key.is_empty() || self.make_room(&mut t);
                    if kept {
                        t.map.insert(key.to_string(), r.clone());
                    }
                    (r, kept)
                }
            };
            repo.last_used.store(now, Ordering::Relaxed);
            let held = hold.then(|| RepoInUse::new(repo.clone()));
            (repo, kept, held)
        };
        if !kept {
            self.warn_over_bound();
        }
        match repo
            .ensure_loaded(self.storage.as_ref(), &self.settings)
            .await
        {
            Ok(()) => {
                if kept && !key.is_empty() && held.is_none() && repo.is_empty() {
                    // Nothing there: answer from this load, keep nothing.
                    self.forget_if(&repo, |r| r.is_empty());
                }
                Ok((repo, held))
            }
            Err(e) => {
                drop(held);
                if kept && !key.is_empty() {
                    self.forget_if(&repo, |r| !r.is_loaded());
                }
                Err(if key.is_empty() {
                    TenantError::Storage(e)
                } else if is_not_a_directory(&e) {
                    TenantError::NamesAFile(key.to_string())
                } else if is_name_too_long(&e) {
                    TenantError::TooLong(key.to_string())
                } else {
                    TenantError::Storage(e)
                })
            }
        }
    }

    /// Drops `repo` from the registry if it is still the one registered under its key, no
    /// upload holds it, and `cond` holds. Holds are taken under the same lock, so a request
    /// either sees the repository dropped (and loads a new one) or holds it in time.
    fn forget_if(&self, repo: &Arc<Repo>, cond: impl FnOnce(&Repo) -> bool) -> bool {
        if repo.key.is_empty() {
            return false;
        }
        let mut t = lock(&self.repos);
        let same = t.map.get(&repo.key).is_some_and(|r| Arc::ptr_eq(r, repo));
        if same && repo.users.load(Ordering::SeqCst) == 0 && cond(repo) {
            t.map.remove(&repo.key);
            return true;
        }
        false
    }

    /// Makes room for one more repository under `max_tenants` by dropping the least recently
    /// used one without uploads in flight, empty ones first. False when none can go.
    fn make_room(&self, t: &mut Tenants) -> bool {
        let max = self.settings.max_tenants;
        if max == 0 || t.map.len() < max {
            return true;
        }
        while t.map.len() >= max {
            let victim = t
                .map
                .values()
                .filter(|r| !r.key.is_empty() && r.users.load(Ordering::SeqCst) == 0)
                .min_by_key(|r| (!r.is_empty(), r.last_used.load(Ordering::Relaxed)))
                .cloned();
            let Some(victim) = victim else {
                return false;
            };
            t.map.remove(&victim.key);
            if self.settings.statefiles && victim.state_dirty.load(Ordering::Acquire) {
                // Keep what it learnt since its state file was last written.
                let storage = self.storage.clone();
                tokio::spawn(async move {
                    let _ = victim.save_state(storage.as_ref()).await;
                });
            }
        }
        true
    }

    fn warn_over_bound(&self) {
        let mut last = lock(&self.over_bound_warned);
        if last.is_none_or(|t| t.elapsed() >= OVER_BOUND_WARNING_EVERY) {
            *last = Some(Instant::now());
            warn!("too many repositories with uploads in flight to keep one more in memory; serving it without keeping it (raise maxtenants)",
                "maxtenants" => self.settings.max_tenants);
        }
    }

    pub fn loaded_repos(&self) -> Vec<Arc<Repo>> {
        lock(&self.repos).map.values().cloned().collect()
    }

    /// How many repositories are held in memory.
    pub fn tenant_count(&self) -> usize {
        lock(&self.repos).map.len()
    }

    /// Reconciles every known repository with storage. Repositories other than the root that
    /// turn out empty are forgotten (unless an upload into one is in flight). A failing
    /// repository other than the root keeps serving its last good index, or is forgotten
    /// when it has none, and is logged once per distinct error. The result is the state of
    /// the storage as a whole, for `/health`: the root repository's refresh or, without one,
    /// the storage check; never another repository's failure.
    pub async fn refresh_all(&self) -> Result<(), StorageError> {
        let start = Instant::now();
        let (mut downloaded, mut failed) = (0, false);
        let mut root = None;
        for repo in self.loaded_repos() {
            if !repo.is_loaded() {
                continue; // a request is loading it
            }
            let res = repo.refresh(self.storage.as_ref(), &self.settings).await;
            match &res {
                Ok(stats) => {
                    downloaded += stats.fetched;
                    repo.note_refresh_ok()
                }
                Err(e) => {
                    failed = true;
                    repo.note_refresh_error(e)
                }
            }
            if repo.key.is_empty() {
                root = Some(res.map(|_| ()));
            } else if repo.is_empty() {
                self.forget_if(&repo, |r| r.is_empty());
            }
        }
        let res = match root {
            Some(r) => r,
            None => self.storage.check().await,
        };
        self.meter
            .refreshed(start.elapsed(), downloaded, failed || res.is_err());
        res
    }

    /// Writes the state files of repositories that changed.
    pub async fn save_states(&self) {
        if !self.settings.statefiles {
            return;
        }
        for repo in self.loaded_repos() {
            if let Err(e) = repo.save_state(self.storage.as_ref()).await {
                warn!("cannot write state file", "repo" => &shorten(&repo.key, MAX_LOGGED_ERROR),
                    "error" => &shorten(&e.to_string(), MAX_LOGGED_ERROR));
            }
        }
    }

    pub fn totals(&self) -> (usize, usize, usize) {
        let repos = self.loaded_repos();
        let (mut charts, mut versions) = (0, 0);
        for r in &repos {
            let idx = r.index();
            charts += idx.chart_count();
            versions += idx.version_count();
        }
        (repos.len(), charts, versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;
    use proptest::prelude::*;

    fn package(name: &str, version: &str) -> Vec<u8> {
        crate::chart::testutil::package(&[(
            &format!("{name}/Chart.yaml"),
            &format!("apiVersion: v2\nname: {name}\nversion: {version}\n"),
        )])
    }

    /// A state file's objects, as [`Repo::save_state`] writes them, for `entries` rendered
    /// under `url_prefix`; `yaml` false leaves out the rendered items (format 2).
    fn state_objects(entries: &[Entry], yaml: bool) -> String {
        let parts: Vec<String> = entries
            .iter()
            .map(|e| {
                let y = if yaml {
                    format!(",\"yaml\":{}", serde_json::to_string(e.yaml()).unwrap())
                } else {
                    String::new()
                };
                format!(
                    "{}:{{\"size\":1,\"modified_ns\":2,\"entry\":{}{y}}}",
                    serde_json::to_string(&e.file).unwrap(),
                    e.json()
                )
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }

    fn entry(name: &str, version: &str, url_prefix: &str) -> Entry {
        let md = crate::chart::read_metadata(&package(name, version)).unwrap();
        let file = format!("{name}-{version}.tgz");
        Entry::new(&md, "abc", 5, &file, &format!("{url_prefix}{file}"))
    }

    /// Format 3 keeps each rendered item; format 2 files (no items) are still read, and a
    /// changed chart URL, a tampered item or an entry of another file is rendered again or
    /// distrusted, never served as it stands.
    #[test]
    fn state_entries_are_rendered_again_when_they_do_not_fit() {
        let fresh = [
            entry("a", "1.0.0", "charts/"),
            entry("b", "2.0.0", "charts/"),
        ];
        let loaded = |doc: String, prefix: &str| {
            let l = load_state_objects(doc.as_bytes(), prefix).unwrap();
            let mut got: Vec<(String, String, String)> = l
                .objects
                .into_iter()
                .map(|(f, o)| {
                    let e = o.entry.unwrap();
                    (f, e.json().to_string(), e.yaml().to_string())
                })
                .collect();
            got.sort();
            (got, l.distrusted)
        };
        let want = |entries: &[Entry]| -> Vec<(String, String, String)> {
            entries
                .iter()
                .map(|e| (e.file.clone(), e.json().to_string(), e.yaml().to_string()))
                .collect()
        };
        // Format 3 and format 2.
        let v3 = state_document(&state_objects(&fresh, true));
        assert!(v3.starts_with("{\"format\":\"chartroom-state/3\""));
        assert_eq!(loaded(v3.clone(), "charts/"), (want(&fresh), 0));
        let v2 = state_document(&state_objects(&fresh, false)).replace("state/3", "state/2");
        assert_eq!(loaded(v2, "charts/"), (want(&fresh), 0));
        // Another chart URL: rendered again with the new one.
        let moved = [
            entry("a", "1.0.0", "https://x/charts/"),
            entry("b", "2.0.0", "https://x/charts/"),
        ];
        assert_eq!(loaded(v3, "https://x/charts/"), (want(&moved), 0));
        // An item that would add a version of its own (the checksum made to fit): rendered
        // again from the JSON. (Like the JSON, an item is trusted within its own fields.)
        let objects = state_objects(&fresh, true).replacen(
            "    version: 1.0.0\\n",
            "    version: 1.0.0\\n  - name: a\\n    version: 6.6.6\\n",
            1,
        );
        assert!(objects.contains("6.6.6"));
        assert_eq!(loaded(state_document(&objects), "charts/").0, want(&fresh));
        // An entry filed under another name: distrusted (its package is read again).
        let objects = state_objects(&fresh, true).replacen("\"a-1.0.0.tgz\"", "\"c-1.0.0.tgz\"", 1);
        assert_eq!(
            loaded(state_document(&objects), "charts/"),
            (want(&fresh[1..]), 1)
        );
    }

    #[test]
    fn state_document_round_trips() {
        let objects = r#"{"a-1.0.0.tgz":{"size":3,"modified_ns":7,"entry":null}}"#;
        let doc = state_document(objects);
        let parsed = parse_state(doc.as_bytes()).unwrap();
        assert_eq!(parsed["a-1.0.0.tgz"].size, 3);
        assert!(matches!(
            parse_state(doc.replace("\"size\":3", "\"size\":4").as_bytes()),
            Err(StateFileError::Checksum)
        ));
        assert!(matches!(
            parse_state(br#"{"format":"chartroom-state/1","objects":{}}"#),
            Err(StateFileError::Format(f)) if f == "chartroom-state/1"
        ));
        assert!(matches!(
            parse_state(b"{not json"),
            Err(StateFileError::Shape)
        ));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Read(usize),
        Upload(usize),
        Refresh,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..12).prop_map(Op::Read),
            (0usize..12).prop_map(Op::Upload),
            Just(Op::Refresh),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]

        /// Any byte string: a parsed state file or an error, never a panic; and any change to
        /// the objects of a valid one is caught by the checksum.
        #[test]
        fn state_parser_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_state(&data);
            let text = String::from_utf8_lossy(&data).into_owned();
            let _ = parse_state(state_document(&text).as_bytes()).map(|_| ());
            let _ = parse_state(format!("{}{text}", state_head()).as_bytes());
        }

        #[test]
        fn state_checksum_catches_any_edit(pos in 0usize..60, byte in any::<u8>()) {
            let objects = r#"{"a-1.0.0.tgz":{"size":3,"modified_ns":7,"entry":null}}"#;
            let mut doc = state_document(objects).into_bytes();
            let start = doc.len() - 1 - objects.len();
            let at = start + pos % objects.len();
            prop_assume!(doc[at] != byte);
            doc[at] = byte;
            prop_assert!(parse_state(&doc).is_err());
        }

        /// Any sequence of reads, uploads and refreshes over a few tenant names: never more
        /// tenants held than `max_tenants`, nothing empty kept after a read, and every upload
        /// visible to the next read.
        #[test]
        fn tenants_stay_bounded_and_uploads_visible(ops in proptest::collection::vec(op(), 1..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
            let reg = Registry::new(storage.clone(), RepoSettings {
                statefiles: true,
                max_tenants: 4,
                ..Default::default()
            });
            let mut uploaded = std::collections::HashSet::new();
            rt.block_on(async {
                for op in ops {
                    match op {
                        Op::Read(i) => {
                            let r = reg.repo(&format!("t{i}")).await.unwrap();
                            let found = r.index().lookup("c", "1.0.0").is_ok();
                            assert_eq!(found, uploaded.contains(&i), "t{i}");
                        }
                        Op::Upload(i) => {
                            let r = reg.repo_in_use(&format!("t{i}")).await.unwrap();
                            let data = package("c", "1.0.0");
                            let meta = chart::read_metadata(&data).unwrap();
                            let stored = storage
                                .put(&r.path(&meta.file_name()), data.clone().into())
                                .await
                                .unwrap();
                            r.record_upload(&meta, &sha256_hex(&data), &stored);
                            uploaded.insert(i);
                        }
                        Op::Refresh => reg.refresh_all().await.unwrap(),
                    }
                    assert!(reg.tenant_count() <= 4, "{} held", reg.tenant_count());
                    for r in reg.loaded_repos() {
                        assert!(!r.key.is_empty());
                        assert!(!r.is_empty() || !r.is_loaded(), "empty {} kept", r.key);
                    }
                }
            });
        }
    }
}
