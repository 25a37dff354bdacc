//! A map bounded by weight that evicts the least recently used values, and loads a missing
//! value once for all the callers that want it at the same time: the chunk cache's store.
//!
//! Why crfs has its own: the chunk cache must hold its bound at every moment and cost no
//! allocation per miss beyond the chunk itself. moka, which stored chunks before, evicts in
//! batches at its housekeeping, so a burst of 4 MiB chunks held the cache tens of MiB over its
//! bound until a settling thread caught up, and each insert made about nine allocations of
//! bookkeeping. Here an insert evicts at once, before it returns, and the map's tables grow
//! only to the most entries the cache ever held, then are reused.
//!
//! Shape: one mutex over a hash map from key to slot, a table of slots, and a list through
//! the slots from the newest use to the oldest. Every operation under the lock is a hash lookup
//! and a few links, so one lock for all threads is enough for a filesystem's request rate. The
//! values taken out by eviction are dropped after the lock is let go (dropping a mapped chunk
//! unmaps it, a system call).
//!
//! Loading, for one key:
//! - a caller that finds no entry becomes the leader: it puts a loading entry in the map
//!   (numbered, so that waiters can tell loads apart), lets go of the lock and loads;
//! - a caller that finds a loading entry counts itself as its waiter and sleeps on the
//!   condition variable, which every load's end wakes;
//! - the leader's value goes into the map as the newest entry (and may be evicted at once, if
//!   it weighs more than the bound); an error is not kept (the next miss loads again);
//! - either way, when the load had waiters, its outcome also goes into a side list with their
//!   number, and each waiter takes its copy from there: a waiter gets the outcome of the load
//!   it waited for even if the value has been evicted meanwhile;
//! - a leader that panics removes its entry; its waiters find no entry and load themselves.
//!
//! A map with a bound of 0 keeps nothing and only coalesces concurrent loads: the namespace
//! uses it so for image resolutions.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::lock;

/// "No slot": the end of the use list, or of the list of free slots.
const NONE: u32 = u32::MAX;

/// Values evicted under one hold of the lock, dropped once it is let go.
const EVICT_BATCH: usize = 8;

/// A map of at most `limit` weight, with loads of missing keys coalesced (see the module).
pub(crate) struct LoadingLru<K, V, E> {
    map: Mutex<Map<K, V, E>>,
    /// Woken when any load ends, with a value, an error or a panic.
    load_ended: Condvar,
    limit: u64,
    weigh: fn(&V) -> u64,
}

struct Map<K, V, E> {
    slot_of: HashMap<K, u32>,
    slots: Vec<Slot<K, V>>,
    /// First free slot; free slots chain through `older`.
    free: u32,
    /// The most and least recently used ready entries; NONE when there are none.
    newest: u32,
    oldest: u32,
    /// Sum of the weights of the ready entries.
    weight: u64,
    /// Number of the next load.
    next_load: u64,
    /// Outcomes of loads that had waiters, until each waiter has taken its copy.
    outcomes: Vec<Outcome<V, E>>,
}

struct Slot<K, V> {
    /// None while the slot is free.
    key: Option<K>,
    state: State<V>,
    /// Neighbours in the use list (ready entries), or the next free slot (`older`).
    newer: u32,
    older: u32,
}

enum State<V> {
    Free,
    Loading { load: u64, waiters: u32 },
    Ready { value: V, weight: u64 },
}

struct Outcome<V, E> {
    load: u64,
    result: Result<V, Arc<E>>,
    waiters: u32,
}

/// What a caller found for its key.
enum Found<V, E> {
    /// The value, or the outcome of the load the caller waited for.
    Done(Result<V, Arc<E>>),
    /// Nobody has it or is loading it: the caller leads a load, numbered so.
    Lead(u64),
    /// Another caller is loading it; the number of that load.
    Wait(u64),
}

impl<K: Clone + Hash + Eq, V: Clone, E> Map<K, V, E> {
    fn new() -> Self {
        Map {
            slot_of: HashMap::new(),
            slots: Vec::new(),
            free: NONE,
            newest: NONE,
            oldest: NONE,
            weight: 0,
            next_load: 0,
            outcomes: Vec::new(),
        }
    }

    fn slot(&mut self, i: u32) -> Option<&mut Slot<K, V>> {
        self.slots.get_mut(i as usize)
    }

    /// Takes a free slot (or a new one) for `key` in `state`; None only when the table has
    /// u32::MAX slots.
    fn occupy(&mut self, key: &K, state: State<V>) -> Option<u32> {
        let slot = Slot { key: Some(key.clone()), state, newer: NONE, older: NONE };
        let i = if self.free != NONE {
            let i = self.free;
            let free = self.slot(i)?;
            let next_free = free.older;
            *free = slot;
            self.free = next_free;
            i
        } else {
            let i = u32::try_from(self.slots.len()).ok().filter(|&i| i != NONE)?;
            self.slots.push(slot);
            i
        };
        self.slot_of.insert(key.clone(), i);
        Some(i)
    }

    /// Takes slot `i` out of the use list (a ready entry's slot).
    fn unlink(&mut self, i: u32) {
        let Some(slot) = self.slot(i) else { return };
        let (newer, older) = (slot.newer, slot.older);
        (slot.newer, slot.older) = (NONE, NONE);
        match self.slot(newer) {
            Some(s) => s.older = older,
            None => self.newest = older,
        }
        match self.slot(older) {
            Some(s) => s.newer = newer,
            None => self.oldest = newer,
        }
    }

    /// Puts slot `i` at the newest end of the use list.
    fn link_newest(&mut self, i: u32) {
        let old_newest = self.newest;
        if let Some(slot) = self.slot(i) {
            (slot.newer, slot.older) = (NONE, old_newest);
        }
        match self.slot(old_newest) {
            Some(s) => s.newer = i,
            None => self.oldest = i,
        }
        self.newest = i;
    }

    /// Removes slot `i`'s entry from the map (unlinked already if it was ready) and frees it;
    /// returns its state.
    fn release(&mut self, i: u32) -> State<V> {
        let free = self.free;
        let Some(slot) = self.slot(i) else { return State::Free };
        let key = slot.key.take();
        let state = std::mem::replace(&mut slot.state, State::Free);
        slot.older = free;
        self.free = i;
        if let Some(key) = key {
            self.slot_of.remove(&key);
        }
        state
    }

    /// The number of a new load.
    fn number_load(&mut self) -> u64 {
        let number = self.next_load;
        self.next_load += 1;
        number
    }

    /// The value in slot `i` if it is ready, which becomes the most recently used.
    fn use_ready(&mut self, i: u32) -> Option<V> {
        let value = match self.slot(i).map(|s| &s.state) {
            Some(State::Ready { value, .. }) => value.clone(),
            _ => return None,
        };
        self.unlink(i);
        self.link_newest(i);
        Some(value)
    }

    /// What a caller that waits for load `waited` (if any) finds for `key` now, counting it as
    /// a waiter of the load it finds in progress.
    fn find(&mut self, key: &K, waited: Option<u64>) -> Found<V, E> {
        if let Some(load) = waited
            && let Some(pos) = self.outcomes.iter().position(|o| o.load == load)
            && let Some(outcome) = self.outcomes.get_mut(pos)
        {
            outcome.waiters = outcome.waiters.saturating_sub(1);
            let result = outcome.result.clone();
            if outcome.waiters == 0 {
                self.outcomes.swap_remove(pos);
            }
            return Found::Done(result);
        }
        let Some(&i) = self.slot_of.get(key) else {
            return Found::Lead(self.number_load());
        };
        if let Some(value) = self.use_ready(i) {
            return Found::Done(Ok(value));
        }
        match self.slot(i).map(|s| &mut s.state) {
            Some(State::Loading { load, waiters }) => {
                if waited != Some(*load) {
                    *waiters = waiters.saturating_add(1);
                }
                Found::Wait(*load)
            }
            // A mapped slot is never free; treat a broken table as a miss without caching.
            _ => Found::Lead(u64::MAX),
        }
    }

    /// The loading slot of `key` for load `load`, if it is still there.
    fn loading_slot(&self, key: &K, load: u64) -> Option<u32> {
        let &i = self.slot_of.get(key)?;
        match self.slots.get(i as usize).map(|s| &s.state) {
            Some(State::Loading { load: l, .. }) if *l == load => Some(i),
            _ => None,
        }
    }

    /// Evicts the oldest entries while the map weighs more than `limit`, at most a batch's
    /// worth, into `out`; true if more remain to evict.
    fn evict_into(&mut self, limit: u64, out: &mut [Option<V>; EVICT_BATCH]) -> bool {
        for place in out.iter_mut() {
            if self.weight <= limit || self.oldest == NONE {
                return false;
            }
            let i = self.oldest;
            self.unlink(i);
            if let State::Ready { value, weight } = self.release(i) {
                self.weight = self.weight.saturating_sub(weight);
                *place = Some(value);
            }
        }
        self.weight > limit && self.oldest != NONE
    }
}

impl<K: Clone + Hash + Eq, V: Clone, E> LoadingLru<K, V, E> {
    /// An empty map that holds at most `limit` of the weight `weigh` gives each value.
    pub(crate) fn new(limit: u64, weigh: fn(&V) -> u64) -> Self {
        LoadingLru { map: Mutex::new(Map::new()), load_ended: Condvar::new(), limit, weigh }
    }

    /// The value of `key`, counted as a use; never loads.
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut map = lock(&self.map);
        let &i = map.slot_of.get(key)?;
        map.use_ready(i)
    }

    /// The value of `key`, or the outcome of `load`, run once for all the callers that miss
    /// `key` while it runs. An error is shared by those callers and not kept.
    pub(crate) fn get_or_load(&self, key: K, load: impl FnOnce() -> Result<V, E>) -> Result<V, Arc<E>> {
        let mut map = lock(&self.map);
        let mut waited = None;
        loop {
            match map.find(&key, waited) {
                Found::Done(result) => return result,
                Found::Lead(number) => return self.lead(map, key, number, load),
                Found::Wait(number) => {
                    waited = Some(number);
                    map = self.load_ended.wait(map).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// Loads `key` unless it is present or being loaded: never waits for another caller's
    /// load. None when it did not load.
    pub(crate) fn load_unless_present(&self, key: K, load: impl FnOnce() -> Result<V, E>) -> Option<Result<V, Arc<E>>> {
        let mut map = lock(&self.map);
        if map.slot_of.contains_key(&key) {
            return None;
        }
        let number = map.number_load();
        Some(self.lead(map, key, number, load))
    }

    /// The leader's part: registers load `number` of `key` (absent from the locked `map`),
    /// loads without the lock, and publishes the outcome.
    fn lead(
        &self,
        mut map: MutexGuard<'_, Map<K, V, E>>,
        key: K,
        number: u64,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, Arc<E>> {
        let registered = number != u64::MAX && map.occupy(&key, State::Loading { load: number, waiters: 0 }).is_some();
        drop(map);
        if !registered {
            // No slot to coalesce in: load for this caller alone, and keep nothing.
            return load().map_err(Arc::new);
        }
        let mut leading = Leading { lru: self, key, number, ended: false };
        let outcome = load();
        leading.ended = true;
        let mut map = lock(&self.map);
        let Some(i) = map.loading_slot(&leading.key, number) else {
            // Unreachable: only this leader ends its load; give the outcome to this caller.
            drop(map);
            self.load_ended.notify_all();
            return outcome.map_err(Arc::new);
        };
        let waiters = match map.slot(i).map(|s| &s.state) {
            Some(State::Loading { waiters, .. }) => *waiters,
            _ => 0,
        };
        let mut evicted: [Option<V>; EVICT_BATCH] = Default::default();
        let result = match outcome {
            Ok(value) => {
                let weight = (self.weigh)(&value);
                if let Some(slot) = map.slot(i) {
                    slot.state = State::Ready { value: value.clone(), weight };
                }
                if waiters > 0 {
                    map.outcomes.push(Outcome { load: number, result: Ok(value.clone()), waiters });
                }
                map.link_newest(i);
                map.weight = map.weight.saturating_add(weight);
                let mut more = map.evict_into(self.limit, &mut evicted);
                while more {
                    drop(map);
                    evicted = Default::default();
                    map = lock(&self.map);
                    more = map.evict_into(self.limit, &mut evicted);
                }
                Ok(value)
            }
            Err(error) => {
                let error = Arc::new(error);
                map.release(i);
                if waiters > 0 {
                    map.outcomes.push(Outcome { load: number, result: Err(error.clone()), waiters });
                }
                Err(error)
            }
        };
        drop(map);
        self.load_ended.notify_all();
        drop(evicted);
        result
    }

    /// The weight of the values held now.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> u64 {
        lock(&self.map).weight
    }

    /// Entries (values and loads in progress) and outcomes not yet taken by their waiters.
    #[cfg(test)]
    fn entries(&self) -> (usize, usize) {
        let map = lock(&self.map);
        (map.slot_of.len(), map.outcomes.len())
    }
}

/// A leader's load in progress: if the leader unwinds before its load ends, its entry goes and
/// its waiters are woken to load themselves.
struct Leading<'a, K: Clone + Hash + Eq, V: Clone, E> {
    lru: &'a LoadingLru<K, V, E>,
    key: K,
    number: u64,
    ended: bool,
}

impl<K: Clone + Hash + Eq, V: Clone, E> Drop for Leading<'_, K, V, E> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut map = lock(&self.lru.map);
        if let Some(i) = map.loading_slot(&self.key, self.number) {
            map.release(i);
        }
        drop(map);
        self.lru.load_ended.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_threads::{slow_misses, together};
    use std::sync::Barrier;
    use std::time::Duration;

    type Lru = LoadingLru<u32, Arc<Vec<u8>>, String>;

    fn lru(limit: u64) -> Lru {
        LoadingLru::new(limit, |v| v.len() as u64)
    }

    fn value(len: usize, byte: u8) -> Result<Arc<Vec<u8>>, String> {
        Ok(Arc::new(vec![byte; len]))
    }

    #[test]
    fn concurrent_misses_on_one_key_load_once() {
        let lru = lru(100);
        let (loads, results) = slow_misses(8, value(3, 49), |load| lru.get_or_load(7, load));
        assert_eq!(loads, 1);
        assert!(results.iter().all(|r| r.as_ref().ok().map(|v| v[0]) == Some(49)), "{results:?}");
        assert_eq!(lru.get(&7).map(|v| v[0]), Some(49));
        assert_eq!(lru.entries(), (1, 0));
    }

    /// A value heavier than the bound is evicted as soon as it is stored, yet the callers
    /// that waited for its load get it, without loading again; so a bound of 0 coalesces
    /// loads and keeps nothing.
    #[test]
    fn waiters_get_the_value_of_their_load_even_when_it_is_not_kept() {
        for bound in [0, 2] {
            let lru = lru(bound);
            let (loads, results) = slow_misses(6, value(3, 8), |load| lru.get_or_load(5, load));
            assert_eq!(loads, 1, "bound {bound}");
            assert!(results.iter().all(|r| r.as_ref().ok().map(|v| v[0]) == Some(8)), "{results:?}");
            assert_eq!((lru.weight(), lru.entries()), (0, (0, 0)), "nothing kept, nothing left behind");
        }
    }

    #[test]
    fn an_error_reaches_every_waiter_once_and_is_not_kept() {
        let lru = lru(100);
        let (loads, results) = slow_misses(4, Err("corrupt".to_string()), |load| lru.get_or_load(1, load));
        assert_eq!(loads, 1);
        assert!(results.iter().all(|r| r.as_ref().err().map(|e| e.as_str()) == Some("corrupt")), "{results:?}");
        assert_eq!(lru.get(&1), None);
        assert_eq!(lru.entries(), (0, 0), "the error is gone once every waiter has it");
        let mut reloaded = false;
        let retry = lru.get_or_load(1, || {
            reloaded = true;
            value(1, 2)
        });
        assert_eq!(retry.map(|v| v[0]), Ok(2));
        assert!(reloaded, "the next miss loads again");
    }

    #[test]
    fn a_leader_that_panics_leaves_no_entry_and_its_waiters_load_themselves() {
        let lru = lru(100);
        let started = Barrier::new(2);
        std::thread::scope(|s| {
            let leader = s.spawn(|| {
                lru.get_or_load(3, || {
                    started.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("load failed hard");
                })
            });
            started.wait();
            // Arrives while the leader loads: waits, finds no entry, loads itself.
            let other = lru.get_or_load(3, || value(1, 9));
            assert_eq!(other.map(|v| v[0]), Ok(9));
            assert!(leader.join().is_err(), "the leader's panic reaches its own caller");
        });
        assert_eq!(lru.get(&3).map(|v| v[0]), Some(9));
        assert_eq!(lru.entries(), (1, 0));
    }

    #[test]
    fn different_keys_load_side_by_side() {
        let lru = lru(100);
        let both_loading = Barrier::new(2);
        // Each load waits for the other to start: they only finish if they run at once.
        let results = together(2, |k| {
            lru.get_or_load(k as u32, || {
                both_loading.wait();
                value(1, k as u8 + 10)
            })
        });
        assert_eq!(results.into_iter().map(|r| r.map(|v| v[0])).collect::<Vec<_>>(), vec![Ok(10), Ok(11)]);
    }

    #[test]
    fn the_bound_holds_after_every_insert_and_the_least_recently_used_go_first() {
        let lru = lru(10);
        for k in 0..4 {
            lru.get_or_load(k, || value(3, k as u8)).unwrap();
            assert!(lru.weight() <= 10, "after {k}: {}", lru.weight());
        }
        // 0 went when 3 arrived (4 × 3 > 10); using 1 makes 2 the oldest.
        assert_eq!(lru.get(&0), None);
        assert!(lru.get(&1).is_some());
        lru.get_or_load(4, || value(3, 4)).unwrap();
        assert_eq!(lru.get(&2), None, "the least recently used goes first");
        assert!(lru.get(&1).is_some() && lru.get(&3).is_some() && lru.get(&4).is_some());
        assert_eq!(lru.weight(), 9);
        // One value heavier than everything else together pushes them all out.
        lru.get_or_load(5, || value(9, 5)).unwrap();
        assert_eq!((lru.weight(), lru.entries()), (9, (1, 0)));
        // A value heavier than the bound reaches its caller and is not kept.
        assert_eq!(lru.get_or_load(6, || value(11, 6)).map(|v| v.len()), Ok(11));
        assert_eq!((lru.weight(), lru.entries()), (0, (0, 0)));
    }

    #[test]
    fn evicting_more_than_a_batch_at_once_keeps_the_bound() {
        let lru = lru(100);
        for k in 0..50 {
            lru.get_or_load(k, || value(2, 0)).unwrap();
        }
        assert_eq!(lru.weight(), 100);
        lru.get_or_load(99, || value(90, 1)).unwrap();
        assert_eq!(lru.weight(), 100, "45 entries of 2 evicted in batches of {EVICT_BATCH}");
        assert_eq!(lru.entries(), (6, 0));
        assert!((45..50).all(|k| lru.get(&k).is_some()) && lru.get(&44).is_none());
    }

    #[test]
    fn slots_are_reused_so_the_table_stays_at_the_most_entries_held() {
        let lru = lru(30);
        for k in 0..1000 {
            lru.get_or_load(k, || value(10, 0)).unwrap();
        }
        let map = lock(&lru.map);
        assert_eq!(map.slot_of.len(), 3);
        assert!(map.slots.len() <= 4, "{} slots", map.slots.len());
    }

    #[test]
    fn load_unless_present_skips_held_and_loading_keys() {
        let lru = lru(100);
        lru.get_or_load(1, || value(1, 1)).unwrap();
        assert!(lru.load_unless_present(1, || panic!("loaded a held key")).is_none());
        let (started, release) = (Barrier::new(2), Barrier::new(2));
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                lru.get_or_load(2, || {
                    started.wait();
                    release.wait();
                    value(1, 2)
                })
            });
            started.wait();
            assert!(lru.load_unless_present(2, || panic!("loaded a key being loaded")).is_none());
            release.wait();
            assert_eq!(reader.join().unwrap().map(|v| v[0]), Ok(2));
        });
        assert_eq!(lru.load_unless_present(3, || value(1, 3)).map(|r| r.map(|v| v[0])), Some(Ok(3)));
        assert_eq!(lru.get(&3).map(|v| v[0]), Some(3));
    }

    /// Many threads, few keys, a small bound, some loads failing: every caller gets its key's
    /// value or that load's error, the bound holds, and nothing is left behind.
    #[test]
    fn a_storm_of_readers_leaves_the_map_consistent() {
        let lru = lru(16);
        let results = together(8, |t| {
            let mut got = 0usize;
            for i in 0..2000u32 {
                let k = (i * 7 + t as u32) % 13;
                match lru
                    .get_or_load(k, || if k.is_multiple_of(5) { Err(format!("bad {k}")) } else { value(4, k as u8) })
                {
                    Ok(v) => {
                        assert_eq!(v[0] as u32, k);
                        got += 1;
                    }
                    Err(e) => assert_eq!(*e, format!("bad {k}")),
                }
                assert!(lru.weight() <= 16);
            }
            got
        });
        assert!(results.iter().all(|&got| got > 0));
        let (entries, failed) = lru.entries();
        assert!(entries <= 4, "{entries} entries");
        assert_eq!(failed, 0, "every outcome was taken by its waiters");
        // The use list and the map agree.
        let map = lock(&lru.map);
        let mut listed = 0;
        let mut i = map.newest;
        while i != NONE {
            listed += 1;
            i = map.slots[i as usize].older;
        }
        assert_eq!(listed, map.slot_of.len());
    }
}
