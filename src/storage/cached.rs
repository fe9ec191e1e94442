//! A bounded in-memory cache of recently downloaded packages, in front of any backend.
//!
//! Only [`Storage::get_stream`] (what `GET /charts/<file>` uses) is answered from memory: a hit
//! costs no blocking-thread round trip and no copy (the cached [`Bytes`] are shared with the
//! response). Indexing reads ([`Storage::get`]) go to the backend and do not fill the cache.
//! Entries are dropped when chartroom writes or deletes the object, and when a listing of
//! their directory (every refresh lists) no longer shows the object with the size and time
//! it had when first listed after caching; so after a refresh nothing is served that storage
//! no longer holds. Objects larger than an eighth of the cache are streamed, not kept.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::{ObjectMeta, ObjectStream, RequestStats, Result, Storage, StorageError};

/// Least-recently-used objects by path, bounded by the sum of their sizes.
#[derive(Debug)]
pub struct ByteLru {
    max_bytes: usize,
    used: usize,
    tick: u64,
    /// Bumped by every invalidation: a read that started before one must not fill the cache.
    generation: u64,
    map: HashMap<String, Slot>,
    order: BTreeMap<u64, String>,
}

#[derive(Debug)]
struct Slot {
    data: Bytes,
    tick: u64,
    /// (size, modification time) the first listing after caching showed.
    listed: Option<(u64, i64)>,
}

impl ByteLru {
    pub fn new(max_bytes: usize) -> ByteLru {
        ByteLru {
            max_bytes,
            used: 0,
            tick: 0,
            generation: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Objects larger than this are not kept.
    pub fn max_object(&self) -> usize {
        self.max_bytes / 8
    }

    pub fn used(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&mut self, key: &str) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let slot = self.map.get_mut(key)?;
        self.order.remove(&slot.tick);
        slot.tick = tick;
        self.order.insert(tick, key.to_string());
        Some(slot.data.clone())
    }

    /// Drops `key` and makes reads that started earlier not fill the cache.
    pub fn invalidate(&mut self, key: &str) {
        self.generation += 1;
        self.drop_key(key);
    }

    fn drop_key(&mut self, key: &str) {
        if let Some(slot) = self.map.remove(key) {
            self.order.remove(&slot.tick);
            self.used -= slot.data.len();
        }
    }

    /// Keeps `data` under `key` if no invalidation happened since `generation` was read and
    /// it is small enough; evicts the least recently used objects beyond the limit.
    pub fn insert(&mut self, key: &str, data: Bytes, generation: u64) {
        if generation != self.generation {
            return;
        }
        self.drop_key(key);
        if data.len() > self.max_object() {
            return;
        }
        self.tick += 1;
        self.used += data.len();
        self.order.insert(self.tick, key.to_string());
        self.map.insert(
            key.to_string(),
            Slot {
                data,
                tick: self.tick,
                listed: None,
            },
        );
        while self.used > self.max_bytes {
            let Some((_, k)) = self.order.pop_first() else {
                break;
            };
            if let Some(slot) = self.map.remove(&k) {
                self.used -= slot.data.len();
            }
        }
    }

    /// Reconciles the objects directly under `prefix` with a listing of it: those not listed,
    /// or listed with another size or time than before, are dropped.
    pub fn reconcile(&mut self, prefix: &str, listing: &[ObjectMeta]) {
        let seen: HashMap<&str, (u64, i64)> = listing
            .iter()
            .map(|o| (o.name.as_str(), (o.size, o.modified_ns)))
            .collect();
        let mut stale = Vec::new();
        for (key, slot) in self.map.iter_mut() {
            let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
            if dir != prefix {
                continue;
            }
            match (seen.get(name), slot.listed) {
                (Some(&now), None) if now.0 == slot.data.len() as u64 => slot.listed = Some(now),
                (Some(&now), Some(before)) if now == before => {}
                _ => stale.push(key.clone()),
            }
        }
        if !stale.is_empty() {
            self.generation += 1;
        }
        for k in stale {
            self.drop_key(&k);
        }
    }
}

/// A backend with a download cache in front of it.
pub struct Cached {
    inner: Arc<dyn Storage>,
    lru: Mutex<ByteLru>,
}

/// Puts a cache of `max_bytes` in front of `storage` (none when 0).
pub fn cached(storage: Arc<dyn Storage>, max_bytes: usize) -> Arc<dyn Storage> {
    if max_bytes == 0 {
        return storage;
    }
    Arc::new(Cached {
        inner: storage,
        lru: Mutex::new(ByteLru::new(max_bytes)),
    })
}

impl Cached {
    fn lru(&self) -> MutexGuard<'_, ByteLru> {
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn once(data: Bytes) -> ObjectStream {
    ObjectStream {
        size: data.len() as u64,
        stream: Box::pin(futures_util::stream::once(async move { Ok(data) })),
    }
}

#[async_trait]
impl Storage for Cached {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let out = self.inner.list(prefix).await?;
        self.lru().reconcile(prefix, &out);
        Ok(out)
    }

    async fn get(&self, path: &str) -> Result<Bytes> {
        self.inner.get(path).await
    }

    async fn get_stream(&self, path: &str) -> Result<ObjectStream> {
        let (hit, generation, max) = {
            let mut l = self.lru();
            (l.get(path), l.generation(), l.max_object())
        };
        if let Some(data) = hit {
            return Ok(once(data));
        }
        let mut obj = self.inner.get_stream(path).await?;
        if obj.size > max as u64 {
            return Ok(obj);
        }
        // Small enough to keep: read it whole (one chunk from the local backend, no copy).
        let mut first: Option<Bytes> = None;
        let mut rest = BytesMut::new();
        while let Some(chunk) = obj.stream.next().await {
            let chunk = chunk.map_err(|e| StorageError::io(path, e))?;
            match &first {
                None => first = Some(chunk),
                Some(f) => {
                    if rest.is_empty() {
                        rest.extend_from_slice(f);
                    }
                    rest.extend_from_slice(&chunk);
                }
            }
            if first.as_ref().map_or(0, Bytes::len).max(rest.len()) > max {
                return Err(StorageError::io(path, "object grew while it was read"));
            }
        }
        let data = if rest.is_empty() {
            first.unwrap_or_default()
        } else {
            rest.freeze()
        };
        if data.len() as u64 != obj.size {
            return Err(StorageError::io(path, "object changed while it was read"));
        }
        self.lru().insert(path, data.clone(), generation);
        Ok(once(data))
    }

    async fn stat(&self, path: &str) -> Result<ObjectMeta> {
        self.inner.stat(path).await
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.lru().invalidate(path);
        let res = self.inner.put(path, data).await;
        self.lru().invalidate(path);
        res
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<ObjectMeta> {
        self.lru().invalidate(path);
        let res = self.inner.put_if_absent(path, data).await;
        self.lru().invalidate(path);
        res
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.lru().invalidate(path);
        let res = self.inner.delete(path).await;
        self.lru().invalidate(path);
        res
    }

    async fn check(&self) -> Result<()> {
        self.inner.check().await
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
    use proptest::prelude::*;

    fn meta(name: &str, size: u64, t: i64) -> ObjectMeta {
        ObjectMeta {
            name: name.into(),
            size,
            modified_ns: t,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn total_stays_within_the_limit(
            max in 0usize..4000,
            ops in proptest::collection::vec((0u8..3, 0usize..12, 0usize..1200), 0..200),
        ) {
            let mut c = ByteLru::new(max);
            for (op, key, len) in ops {
                let k = format!("r/k{key}");
                match op {
                    0 => { let g = c.generation(); c.insert(&k, Bytes::from(vec![0u8; len]), g) }
                    1 => { c.get(&k); }
                    _ => c.invalidate(&k),
                }
                prop_assert!(c.used() <= max);
                prop_assert_eq!(c.len(), c.order.len());
                prop_assert_eq!(c.used(), c.map.values().map(|s| s.data.len()).sum::<usize>());
            }
        }
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut c = ByteLru::new(800);
        for k in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            c.insert(k, Bytes::from(vec![0u8; 100]), c.generation());
        }
        assert!(c.get("a").is_some());
        c.insert("i", Bytes::from(vec![0u8; 100]), c.generation());
        assert!(c.get("a").is_some());
        assert!(c.get("b").is_none());
        // Too large for the cache (over an eighth): not kept.
        c.insert("big", Bytes::from(vec![0u8; 101]), c.generation());
        assert!(c.get("big").is_none());
    }

    #[test]
    fn a_read_older_than_an_invalidation_is_not_kept() {
        let mut c = ByteLru::new(8000);
        let g = c.generation();
        c.invalidate("r/a.tgz");
        c.insert("r/a.tgz", Bytes::from_static(b"old"), g);
        assert!(c.get("r/a.tgz").is_none());
    }

    #[test]
    fn listings_drop_what_storage_no_longer_holds() {
        let mut c = ByteLru::new(8000);
        c.insert("r/a.tgz", Bytes::from_static(b"aaa"), c.generation());
        c.insert("r/b.tgz", Bytes::from_static(b"bbb"), c.generation());
        c.insert("c.tgz", Bytes::from_static(b"ccc"), c.generation());
        c.reconcile("r", &[meta("a.tgz", 3, 1), meta("b.tgz", 3, 1)]);
        assert_eq!(c.len(), 3);
        // b removed, a replaced with the same size and a new time; c is in another directory.
        c.reconcile("r", &[meta("a.tgz", 3, 2)]);
        assert!(c.get("r/a.tgz").is_none());
        assert!(c.get("r/b.tgz").is_none());
        assert!(c.get("c.tgz").is_some());
        // A size that differs at the first listing also drops it.
        c.reconcile("", &[meta("c.tgz", 4, 1)]);
        assert!(c.is_empty());
    }
}
