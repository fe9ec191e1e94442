//! Repositories (tenants) and their indexes over one storage backend: loading an index from the
//! state file, reconciling it with a storage listing, recording API changes, and writing the
//! state file back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use sha2::Digest;

use crate::chart::{self, Metadata};
use crate::index::{Entry, Layout, Object, RepoIndex};
use crate::storage::{ObjectMeta, Storage, StorageError, join};

/// Name of the state file kept in each repository's storage prefix. It is a cache: on load it
/// is always reconciled with a listing, so a stale or foreign copy costs downloads, never
/// correctness.
pub const STATE_FILE: &str = "chartroom-state.json";
/// Bumped when the way a package is read changes (2: Chart.yaml read as Helm reads it), so
/// that entries an older reader wrote (or refused) are read again once.
const STATE_FORMAT: &str = "chartroom-state/2";
const DEFAULT_FETCH_CONCURRENCY: usize = 8;

/// Settings every repository of a registry shares.
#[derive(Debug, Clone, Default)]
pub struct RepoSettings {
    pub statefiles: bool,
    pub index_limit: usize,
    pub chart_url: String,
    pub context_path: String,
    pub json_index: bool,
    /// Counts of packages read while indexing, for status reports during start-up.
    pub progress: Arc<Progress>,
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
    /// Serialises uploads that replace an existing object, so index and storage agree.
    pub overwrite_lock: tokio::sync::Mutex<()>,
    seq: AtomicU64,
    /// Files changed through the API, with the sequence number of the change: a
    /// reconciliation that started before the change must not undo it.
    recent: Mutex<HashMap<String, u64>>,
    state_dirty: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the index half-updated in a way that
    // matters more than refusing service would; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Deserialize)]
struct StateDoc {
    format: String,
    objects: HashMap<String, StateObject>,
}

#[derive(Deserialize)]
struct StateObject {
    size: u64,
    modified_ns: i64,
    entry: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Repo {
    fn new(key: String, layout: Layout) -> Repo {
        Repo {
            key,
            index: Mutex::new(RepoIndex::new(layout)),
            refresh: tokio::sync::Mutex::new(()),
            loaded: AtomicBool::new(false),
            overwrite_lock: tokio::sync::Mutex::new(()),
            seq: AtomicU64::new(0),
            recent: Mutex::new(HashMap::new()),
            state_dirty: AtomicBool::new(false),
        }
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
            Err(e) => {
                warn!("cannot read state file", "path" => &path, "error" => &e.to_string());
                return;
            }
        };
        let doc: StateDoc = match serde_json::from_slice(&data) {
            Ok(d) => d,
            Err(e) => {
                warn!("state file found but could not be parsed; rebuilding from storage",
                    "path" => &path, "error" => &e.to_string());
                return;
            }
        };
        if doc.format != STATE_FORMAT {
            warn!("state file has an unknown format; rebuilding from storage",
                "path" => &path, "format" => &doc.format);
            return;
        }
        let mut idx = self.index();
        let mut n = 0usize;
        for (file, obj) in doc.objects {
            if !file.ends_with(".tgz") || !chart::is_plain_file_name(&file) {
                continue;
            }
            let url = idx.url_for(&file);
            let entry = obj
                .entry
                .and_then(|e| Entry::from_value(e, &file, &url))
                .map(Arc::new);
            idx.upsert(
                &file,
                Object {
                    size: obj.size,
                    modified_ns: obj.modified_ns,
                    entry,
                },
            );
            n += 1;
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
        let results: Vec<Result<Option<(String, Object)>, StorageError>> =
            futures_util::stream::iter(to_fetch.into_iter().map(|meta| {
                let key = key.clone();
                let url_prefix = url_prefix.clone();
                async move {
                    let r = read_object(storage, &key, meta, &url_prefix).await;
                    progress.read.fetch_add(1, Ordering::Relaxed);
                    r
                }
            }))
            .buffer_unordered(limit)
            .collect()
            .await;
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
        Ok(stats)
    }

    /// Writes the state file if anything changed since the last write.
    pub async fn save_state(&self, storage: &dyn Storage) -> Result<bool, StorageError> {
        if !self.state_dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let body = {
            let idx = self.index();
            let mut out = String::with_capacity(1024 + idx.objects().len() * 700);
            out.push_str("{\"format\":\"");
            out.push_str(STATE_FORMAT);
            out.push_str("\",\"objects\":{");
            let mut files: Vec<(&String, &Object)> = idx.objects().iter().collect();
            files.sort_by(|a, b| a.0.cmp(b.0));
            for (i, (file, obj)) in files.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(file).unwrap_or_default());
                out.push_str(&format!(
                    ":{{\"size\":{},\"modified_ns\":{},\"entry\":",
                    obj.size, obj.modified_ns
                ));
                match &obj.entry {
                    Some(e) => out.push_str(&e.json),
                    None => out.push_str("null"),
                }
                out.push('}');
            }
            out.push_str("}}");
            Bytes::from(out)
        };
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

/// Downloads and reads one package; `None` when it vanished meanwhile.
async fn read_object(
    storage: &dyn Storage,
    key: &str,
    meta: ObjectMeta,
    url_prefix: &str,
) -> Result<Option<(String, Object)>, StorageError> {
    let path = join(key, &meta.name);
    let data = match storage.get(&path).await {
        Ok(d) => d,
        Err(StorageError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let parsed = chart::off_thread(move || {
        chart::read_metadata(&data).map(|md| {
            let digest = sha256_hex(&data);
            (md, digest)
        })
    })
    .await;
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
            warn!("invalid package in storage", "path" => &path, "error" => &e.to_string());
            None
        }
    };
    Ok(Some((
        meta.name.clone(),
        Object {
            size: meta.size,
            modified_ns: meta.modified_ns,
            entry,
        },
    )))
}

/// All repositories over one storage backend with one set of settings. A storage reload builds
/// a new registry and swaps it in whole; requests in flight keep the one they started with.
pub struct Registry {
    pub storage: Arc<dyn Storage>,
    pub settings: RepoSettings,
    repos: Mutex<HashMap<String, Arc<Repo>>>,
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, settings: RepoSettings) -> Registry {
        Registry {
            storage,
            settings,
            repos: Mutex::new(HashMap::new()),
        }
    }

    /// The repository `key`, loading its index on first use.
    pub async fn repo(&self, key: &str) -> Result<Arc<Repo>, StorageError> {
        let repo = {
            let mut repos = lock(&self.repos);
            repos
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(Repo::new(key.to_string(), self.settings.layout(key))))
                .clone()
        };
        repo.ensure_loaded(self.storage.as_ref(), &self.settings)
            .await?;
        Ok(repo)
    }

    pub fn loaded_repos(&self) -> Vec<Arc<Repo>> {
        lock(&self.repos).values().cloned().collect()
    }

    /// Reconciles every known repository with storage. Repositories other than the root that
    /// turn out empty are forgotten, so requests for made-up repository names cost memory only
    /// until the next refresh.
    pub async fn refresh_all(&self) -> Result<(), StorageError> {
        let mut first_err = None;
        for repo in self.loaded_repos() {
            match repo.refresh(self.storage.as_ref(), &self.settings).await {
                Ok(_) => {
                    if !repo.key.is_empty() && repo.is_empty() {
                        lock(&self.repos).remove(&repo.key);
                    }
                }
                Err(e) => {
                    warn!("index refresh failed; serving the last good index",
                        "repo" => &repo.key, "error" => &e.to_string());
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes the state files of repositories that changed.
    pub async fn save_states(&self) {
        if !self.settings.statefiles {
            return;
        }
        for repo in self.loaded_repos() {
            if let Err(e) = repo.save_state(self.storage.as_ref()).await {
                warn!("cannot write state file", "repo" => &repo.key, "error" => &e.to_string());
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
