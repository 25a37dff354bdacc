//! A bounded cache whose misses are loaded once for all the callers that want the same key at
//! the same time: the namespace's resolved images (decoded chunks have a store of their own,
//! the `lru` module, which holds its bound at every insert).
//!
//! moka's own `try_get_with` does this, but in moka 0.12.16 it leaks: when two threads insert
//! their waiter for one key at the same moment, the thread whose compare-and-swap loses and
//! then finds the other's waiter drops its own attempted bucket without dropping the waiter in
//! it (the value sits in a `MaybeUninit`). That is 40 bytes per race, forever, in a mount that
//! may run for months (found by the `nfs_records` fuzz target; see fuzz/RESULTS.md). So moka
//! only stores and evicts here (`get`, `insert`, `invalidate`, `contains_key`), and the
//! coalescing of concurrent misses is this module's: a map of loads in progress, one mutex per
//! load.
//!
//! Protocol, for one key:
//! - a caller that misses the cache takes the map lock; if no load is in progress it becomes
//!   the leader: it registers a slot, locks it before letting go of the map, looks at the cache
//!   once more (a load may have finished in between), loads, stores the value in the cache,
//!   puts the outcome in the slot, and removes the slot from the map;
//! - a caller that finds a slot waits on its mutex and takes the outcome the leader left, the
//!   value or the shared error. A slot left empty (its leader panicked) sends it to load on its
//!   own.
//!
//! The leader stores into the cache before it removes its slot, so a caller that comes after
//! the removal finds the value in the cache. Lock order: a leader holds its slot while it takes
//! the map lock to remove it; nobody waits for a slot while holding the map lock, so there is
//! no cycle.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The outcome of one load, shared by the callers that waited for it.
type Outcome<V, E> = Option<Result<V, Arc<E>>>;
/// One load in progress: its leader holds the lock until the outcome is in.
type Slot<V, E> = Arc<Mutex<Outcome<V, E>>>;

/// A moka cache (bounded as its builder says) plus the loads in progress; clones share both.
pub struct LoadingCache<K, V, E> {
    values: moka::sync::Cache<K, V>,
    loading: Arc<Mutex<HashMap<K, Slot<V, E>>>>,
}

impl<K, V, E> Clone for LoadingCache<K, V, E> {
    fn clone(&self) -> Self {
        LoadingCache { values: self.values.clone(), loading: self.loading.clone() }
    }
}

/// Locks `mutex`, ignoring poisoning: for data a panicked holder leaves consistent (here, a map
/// of slots, or an outcome that is either set or not).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Removes a leader's slot from the map when the leader is done, also if its load panicked.
struct Registered<'a, K: Hash + Eq, V, E> {
    loading: &'a Mutex<HashMap<K, Slot<V, E>>>,
    key: &'a K,
}

impl<K: Hash + Eq, V, E> Drop for Registered<'_, K, V, E> {
    fn drop(&mut self) {
        lock(self.loading).remove(self.key);
    }
}

impl<K, V, E> LoadingCache<K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Wraps a cache built with moka's builder (capacity, weigher, time to live).
    pub fn new(values: moka::sync::Cache<K, V>) -> Self {
        LoadingCache { values, loading: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// The cached value of `key`, if any; never loads.
    pub fn get(&self, key: &K) -> Option<V> {
        self.values.get(key)
    }

    /// Whether `key` has a cached value; unlike [`get`](Self::get), not counted as a use by
    /// the eviction policy.
    pub fn contains(&self, key: &K) -> bool {
        self.values.contains_key(key)
    }

    /// Applies the evictions moka has pending, so that the cache is back within its bound now
    /// rather than at moka's next housekeeping.
    pub fn settle(&self) {
        self.values.run_pending_tasks();
    }

    /// Drops the cached value of `key` (a load in progress is not affected).
    pub fn invalidate(&self, key: &K) {
        self.values.invalidate(key);
    }

    /// The cached value of `key`, or the outcome of `load`, run once for all the callers that
    /// miss `key` while it runs. An error is shared by those callers and not cached: the next
    /// miss loads again.
    pub fn get_or_load(&self, key: K, load: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>> {
        if let Some(value) = self.values.get(&key) {
            return Ok(value);
        }
        let slot = {
            let loading = lock(&self.loading);
            let existing = loading.get(&key).cloned();
            match existing {
                Some(slot) => slot,
                None => return self.lead_new(loading, key, load),
            }
        };
        let waited = lock(&slot).clone();
        match waited {
            Some(outcome) => outcome,
            // The leader panicked before it had an outcome: load without coalescing.
            None => self.store(key, load),
        }
    }

    /// Loads `key` unless it is cached or another caller is loading it: never waits for
    /// another caller's load. `None` when it did not load.
    pub fn load_unless_loading(&self, key: K, load: impl FnOnce() -> Result<V, E>) -> Option<Result<V, Arc<E>>> {
        if self.values.contains_key(&key) {
            return None;
        }
        let loading = lock(&self.loading);
        if loading.contains_key(&key) {
            return None;
        }
        Some(self.lead_new(loading, key, load))
    }

    /// Registers a load of `key` in the map of loads, which the caller holds locked and found
    /// without one, and leads it.
    fn lead_new(
        &self,
        mut loading: MutexGuard<'_, HashMap<K, Slot<V, E>>>,
        key: K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>> {
        let slot: Slot<V, E> = Arc::new(Mutex::new(None));
        loading.insert(key.clone(), slot.clone());
        // Locked before the map is let go, so a waiter cannot see an empty slot of a leader
        // that is still to start.
        let outcome = lock(&slot);
        drop(loading);
        self.lead(&key, outcome, load)
    }

    /// The leader's part: load (unless the value arrived meanwhile), publish, deregister.
    fn lead(
        &self,
        key: &K,
        mut outcome: MutexGuard<'_, Outcome<V, E>>,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>> {
        let _registered = Registered { loading: &self.loading, key };
        let result = match self.values.get(key) {
            Some(value) => Ok(value),
            None => self.store(key.clone(), load),
        };
        *outcome = Some(result.clone());
        // Locals drop before parameters: `_registered` takes the slot out of the map while
        // `outcome` still holds it, and then the waiters wake up to the outcome.
        result
    }

    fn store(&self, key: K, load: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>> {
        let value = load().map_err(Arc::new)?;
        self.values.insert(key, value.clone());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_threads::{slow_misses, together};
    use std::sync::Barrier;
    use std::time::Duration;

    fn cache() -> LoadingCache<u32, u64, String> {
        LoadingCache::new(moka::sync::Cache::builder().max_capacity(100).build())
    }

    #[test]
    fn concurrent_misses_on_one_key_load_once() {
        let cache = cache();
        let (loads, results) = slow_misses(8, Ok(49), |load| cache.get_or_load(7, load));
        assert_eq!(loads, 1);
        assert!(results.iter().all(|r| r.as_ref().ok() == Some(&49)), "{results:?}");
        assert_eq!(cache.get(&7), Some(49));
        assert!(lock(&cache.loading).is_empty());
    }

    #[test]
    fn an_error_reaches_the_waiters_and_is_not_cached() {
        let cache = cache();
        let (loads, results) = slow_misses(4, Err("corrupt".to_string()), |load| cache.get_or_load(1, load));
        assert_eq!(loads, 1);
        assert!(results.iter().all(|r| r.as_ref().err().map(|e| e.as_str()) == Some("corrupt")), "{results:?}");
        assert_eq!(cache.get(&1), None);
        let mut reloaded = false;
        let retry = cache.get_or_load(1, || {
            reloaded = true;
            Ok(2)
        });
        assert_eq!(retry, Ok(2));
        assert!(reloaded, "the next miss loads again");
        assert!(lock(&cache.loading).is_empty());
    }

    #[test]
    fn a_leader_that_panics_leaves_no_slot_and_others_load_themselves() {
        let cache = cache();
        let started = Barrier::new(2);
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                cache.get_or_load(3, || {
                    started.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("load failed hard");
                })
            });
            started.wait();
            // Arrives while the leader loads: waits for it, finds no outcome, loads itself.
            let other = cache.get_or_load(3, || Ok(9));
            assert_eq!(other, Ok(9));
            assert!(leader.join().is_err(), "the leader's panic reaches its own caller");
        });
        assert_eq!(cache.get(&3), Some(9));
        assert!(lock(&cache.loading).is_empty());
    }

    #[test]
    fn different_keys_load_side_by_side() {
        let cache = cache();
        let both_loading = Barrier::new(2);
        // Each load waits for the other to start: they only finish if they run at once.
        let results = together(2, |k| {
            cache.get_or_load(k as u32, || {
                both_loading.wait();
                Ok(k as u64 + 10)
            })
        });
        assert_eq!(results, vec![Ok(10), Ok(11)]);
    }
}
