//! An async lock per key (here: per stored file), so that the storage write and the index
//! update of one request happen together with respect to other requests on the same file,
//! while requests on other files go on in parallel. A key's entry lives only while someone
//! holds or waits for it, so the table cannot grow with the number of names ever used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

type Table = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

#[derive(Default)]
pub struct KeyLock {
    table: Mutex<Table>,
}

/// Held while one caller owns a key; dropping it releases the key (and forgets it when nobody
/// else waits for it).
pub struct KeyGuard<'a> {
    // Field order matters: the mutex guard goes before the entry checks whether it was the last.
    _held: OwnedMutexGuard<()>,
    _entry: Entry<'a>,
}

/// One caller's reference to a key's mutex; removes the key from the table when it was the
/// last one, also when a wait for the key is given up (the future dropped).
struct Entry<'a> {
    owner: &'a KeyLock,
    key: String,
    mutex: Option<Arc<tokio::sync::Mutex<()>>>,
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        let mut table = self.owner.table();
        drop(self.mutex.take());
        // The table holds one reference; every other holder or waiter holds one more, and
        // references are only taken with the table locked.
        if table
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            table.remove(&self.key);
        }
    }
}

impl KeyLock {
    pub fn new() -> KeyLock {
        KeyLock::default()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding this lock; a poisoned one is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `key` is free and holds it until the guard is dropped.
    pub async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let mutex = self
            .table()
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        let entry = Entry {
            owner: self,
            key: key.to_string(),
            mutex: Some(mutex.clone()),
        };
        let held = mutex.lock_owned().await;
        KeyGuard {
            _held: held,
            _entry: entry,
        }
    }

    /// How many keys are held or waited for.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_holder_per_key_and_nothing_left() {
        let locks = Arc::new(KeyLock::new());
        let inside = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let mut tasks = Vec::new();
        for i in 0..64usize {
            let (locks, inside) = (locks.clone(), inside.clone());
            tasks.push(tokio::spawn(async move {
                let k = i % 2;
                let _g = locks.lock(&format!("key{k}")).await;
                assert_eq!(inside[k].fetch_add(1, Ordering::SeqCst), 0, "two holders");
                tokio::task::yield_now().await;
                inside[k].fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn other_keys_do_not_wait() {
        let locks = KeyLock::new();
        let _a = locks.lock("a").await;
        let b = tokio::time::timeout(Duration::from_secs(5), locks.lock("b")).await;
        assert!(b.is_ok());
        assert_eq!(locks.len(), 2);
    }

    #[tokio::test]
    async fn a_wait_given_up_leaves_nothing() {
        let locks = KeyLock::new();
        let held = locks.lock("a").await;
        let waited = tokio::time::timeout(Duration::from_millis(20), locks.lock("a")).await;
        assert!(waited.is_err());
        drop(held);
        assert!(locks.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any sequence of takes and releases over a few keys leaves exactly the held keys in
        /// the table.
        #[test]
        fn table_holds_only_held_keys(ops in proptest::collection::vec((0u8..4, any::<bool>()), 0..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async {
                let locks = KeyLock::new();
                let mut held: HashMap<u8, KeyGuard<'_>> = HashMap::new();
                for (k, take) in ops {
                    if take && !held.contains_key(&k) {
                        held.insert(k, locks.lock(&k.to_string()).await);
                    } else if !take {
                        held.remove(&k);
                    }
                    prop_assert_eq!(locks.len(), held.len());
                }
                drop(held);
                prop_assert!(locks.is_empty());
                Ok(())
            })?;
        }
    }
}
