//! Decoded chunks as the chunk cache holds them.
//!
//! A big decoded chunk (eStargz and zstd:chunked writers make them up to 4 MiB) lives in an
//! anonymous memory mapping of its own, not on the heap, and so do its compressed bytes while
//! it is decoded when they are more than a decoding thread keeps (crfs-core's
//! `Scratch::KEEP_COMPRESSED`). The cache drops chunks in the order of their last use, not of
//! their allocation, from whichever thread inserts the chunk that evicts them; on the heap, buffers of megabytes
//! freed that way leave holes in the allocator's arenas (one per thread that allocated), and
//! the process keeps that memory. A mapping goes back to the system the moment its last reader
//! lets go of it, whatever the allocator, so what crfs holds follows what the cache holds.
//! Small chunks stay on the heap, where a mapping's page rounding and system calls would cost
//! more than they save.

use core::fmt;
use core::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::lock;
use crate::lru::LoadingLru;

/// A decoded chunk's key: (layer tag, file node, chunk index).
pub type ChunkKey = (u32, crfs_core::NodeId, u32);

/// Decoded chunks, bounded in bytes and shareable between the layers of an image; clones share
/// the chunks and the decoding budget.
///
/// Two bounds: the cache holds at most its size in decoded chunks, each weighed with what its
/// entry costs beside its bytes ([`ChunkData::weight`]); an insert evicts the least recently
/// used chunks before it returns, so the bound holds at every moment. And the chunks being
/// decoded at any moment, not yet in the cache, take at most half that (at least one chunk at
/// a time always proceeds). A miss waits for room in that budget; read-ahead does not wait, it
/// skips the chunk. So memory stays near the cache size plus half of it however many threads
/// read, and the page cache, not crfs, holds what was read. Half of the default 16 MiB is two
/// 4 MiB chunks decoding at once.
///
/// Concurrent misses on one chunk decode it once (see the `lru` module). A hit costs one lock
/// and no allocation; a miss allocates the chunk ([`ChunkData::zeroed`]) and its `Arc`, and the
/// cache's tables are reused from entry to entry.
#[derive(Clone)]
pub struct ChunkCache {
    chunks: Arc<LoadingLru<ChunkKey, Arc<ChunkData>, crfs_core::Error>>,
    decoding: Arc<DecodeBudget>,
}

impl ChunkCache {
    /// A cache of at most `bytes` bytes of decoded chunks, and up to half that being decoded.
    pub fn new(bytes: u64) -> Self {
        let chunks = LoadingLru::new(bytes, |chunk: &Arc<ChunkData>| chunk.weight());
        ChunkCache { chunks: Arc::new(chunks), decoding: Arc::new(DecodeBudget::new(bytes / 2)) }
    }

    /// The chunk at `key` (of `size` decoded bytes), from the cache or from `decode`, run once
    /// for all the callers that miss it meanwhile, within the decoding budget.
    pub fn get_or_load(
        &self,
        key: ChunkKey,
        size: u64,
        decode: impl FnOnce() -> Result<Arc<ChunkData>, crfs_core::Error>,
    ) -> Result<Arc<ChunkData>, Arc<crfs_core::Error>> {
        self.chunks.get_or_load(key, || {
            let _room = self.decoding.take(size);
            decode()
        })
    }

    /// Read-ahead: decodes the chunk at `key` into the cache if nobody is decoding it already
    /// and the budget has room for it now; otherwise leaves it to the read that will want it.
    /// Errors are left to that read too. It never waits while holding room: a read-ahead that
    /// held room while it waited for a reader's decode, which waits for room, would hang both.
    pub(crate) fn load_ahead(
        &self,
        key: ChunkKey,
        size: u64,
        decode: impl FnOnce() -> Result<Arc<ChunkData>, crfs_core::Error>,
    ) {
        let Some(_room) = self.decoding.try_take(size) else { return };
        let _ = self.chunks.load_unless_present(key, decode);
    }

    /// The cached chunk at `key`, if any, counted as a use; never decodes.
    pub fn get(&self, key: &ChunkKey) -> Option<Arc<ChunkData>> {
        self.chunks.get(key)
    }
}

/// Bytes of chunks being decoded, bounded: a decode takes room for its chunk before it starts
/// and gives it back when it ends. One decode always proceeds when none is running, whatever
/// its size, so the budget never stops a read.
struct DecodeBudget {
    limit: u64,
    in_flight: Mutex<u64>,
    freed: Condvar,
}

/// Room taken in a [`DecodeBudget`], given back when dropped.
struct Room<'a> {
    budget: &'a DecodeBudget,
    bytes: u64,
}

impl DecodeBudget {
    fn new(limit: u64) -> Self {
        DecodeBudget { limit, in_flight: Mutex::new(0), freed: Condvar::new() }
    }

    fn fits(&self, in_flight: u64, bytes: u64) -> bool {
        in_flight == 0 || in_flight.saturating_add(bytes) <= self.limit
    }

    /// Waits until `bytes` fit, then takes them.
    fn take(&self, bytes: u64) -> Room<'_> {
        let mut in_flight = lock(&self.in_flight);
        while !self.fits(*in_flight, bytes) {
            in_flight = self.freed.wait(in_flight).unwrap_or_else(PoisonError::into_inner);
        }
        *in_flight = in_flight.saturating_add(bytes);
        Room { budget: self, bytes }
    }

    /// Takes `bytes` if they fit now.
    fn try_take(&self, bytes: u64) -> Option<Room<'_>> {
        let mut in_flight = lock(&self.in_flight);
        if !self.fits(*in_flight, bytes) {
            return None;
        }
        *in_flight = in_flight.saturating_add(bytes);
        Some(Room { budget: self, bytes })
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.budget.in_flight);
        *in_flight = in_flight.saturating_sub(self.bytes);
        drop(in_flight);
        self.budget.freed.notify_all();
    }
}

/// One decoded chunk: its bytes, on the heap or in a mapping of their own (see the module),
/// and whether the whole chunk was handed out once already (see
/// [`ChunkData::hand_out_whole_once`]).
pub struct ChunkData {
    bytes: Repr,
    handed_out_whole: AtomicBool,
}

enum Repr {
    Heap(Box<[u8]>),
    Mapped(memmap2::MmapMut),
}

impl ChunkData {
    /// Chunks of at least this many bytes are mapped: 128 KiB, where glibc's allocator starts
    /// mapping too (its default `M_MMAP_THRESHOLD`, before it raises it on its own).
    pub const MAP_FROM: usize = 128 << 10;

    /// A buffer of `len` zero bytes for a chunk to be decoded into. A mapping's pages take
    /// memory only once written, so a length the data does not back costs address space only.
    pub fn zeroed(len: usize) -> ChunkData {
        if len >= Self::MAP_FROM {
            match memmap2::MmapMut::map_anon(len) {
                Ok(map) => return ChunkData::new(Repr::Mapped(map)),
                Err(e) => tracing::debug!("mapping {len} bytes for a chunk failed ({e}); using the heap"),
            }
        }
        ChunkData::new(Repr::Heap(vec![0u8; len].into_boxed_slice()))
    }

    fn new(bytes: Repr) -> ChunkData {
        ChunkData { bytes, handed_out_whole: AtomicBool::new(false) }
    }

    /// True the first time it is asked of this chunk, false ever after: lets a front-end hand
    /// the whole chunk to the OS's page cache once per decode (see
    /// [`ReadOnlyFs::take_whole_chunk`](crate::ReadOnlyFs::take_whole_chunk)).
    pub fn hand_out_whole_once(&self) -> bool {
        !self.handed_out_whole.swap(true, Ordering::Relaxed)
    }

    /// What the chunk costs the cache that holds it: its bytes (a mapping's rounded up to whole
    /// pages) and about what its entry, its `Arc` and its allocation take beside them, so that a
    /// cache of many tiny chunks is bounded too.
    pub fn weight(&self) -> u64 {
        const ENTRY: u64 = 160;
        const PAGE: u64 = 4096;
        let len = self.len() as u64;
        let bytes = if self.is_mapped() { len.div_ceil(PAGE).saturating_mul(PAGE) } else { len };
        bytes.saturating_add(ENTRY)
    }

    /// Whether the bytes live in a mapping of their own.
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Repr::Mapped(_))
    }
}

impl Deref for ChunkData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.bytes {
            Repr::Heap(bytes) => bytes,
            Repr::Mapped(map) => map,
        }
    }
}

impl AsMut<[u8]> for ChunkData {
    fn as_mut(&mut self) -> &mut [u8] {
        match &mut self.bytes {
            Repr::Heap(bytes) => bytes,
            Repr::Mapped(map) => map,
        }
    }
}

impl From<Vec<u8>> for ChunkData {
    fn from(bytes: Vec<u8>) -> Self {
        ChunkData::new(Repr::Heap(bytes.into_boxed_slice()))
    }
}

impl fmt::Debug for ChunkData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkData").field("len", &self.len()).field("mapped", &self.is_mapped()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    #[test]
    fn decodes_in_flight_stay_within_half_the_cache_and_one_always_runs() {
        const CHUNK: u64 = 4 << 20;
        let cache = ChunkCache::new(16 << 20); // 8 MiB of decodes: two 4 MiB chunks at once
        let (now, most) = (AtomicU64::new(0), AtomicU64::new(0));
        std::thread::scope(|s| {
            for t in 0..6u32 {
                let (cache, now, most) = (&cache, &now, &most);
                s.spawn(move || {
                    for c in 0..4u32 {
                        let got = cache.get_or_load((0, t, c), CHUNK, || {
                            let n = now.fetch_add(CHUNK, Ordering::SeqCst) + CHUNK;
                            most.fetch_max(n, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            now.fetch_sub(CHUNK, Ordering::SeqCst);
                            Ok(Arc::new(ChunkData::from(vec![t as u8; 16])))
                        });
                        assert_eq!(got.unwrap()[0], t as u8);
                    }
                });
            }
        });
        assert_eq!(most.load(Ordering::SeqCst), 2 * CHUNK, "most bytes decoding at once");
        // A chunk bigger than the whole budget still decodes, alone.
        let small = ChunkCache::new(1 << 20);
        assert_eq!(small.get_or_load((0, 0, 0), CHUNK, || Ok(Arc::new(ChunkData::from(vec![1; 4])))).unwrap()[0], 1);
        // Read-ahead skips a chunk while the budget is full, and decodes it once there is room.
        let room = cache.decoding.take(8 << 20);
        cache.load_ahead((1, 0, 0), CHUNK, || panic!("decoded while the budget was full"));
        drop(room);
        cache.load_ahead((1, 0, 0), CHUNK, || Ok(Arc::new(ChunkData::from(vec![2; 4]))));
        assert_eq!(cache.get(&(1, 0, 0)).map(|c| c[0]), Some(2));
    }

    /// A cache smaller than two chunks: a reader decoding a chunk and read-ahead wanting the
    /// same one must not hang each other (read-ahead skips a chunk being decoded).
    #[test]
    fn read_ahead_never_waits_for_a_readers_decode() {
        const CHUNK: u64 = 4 << 20;
        let cache = ChunkCache::new(4 << 20); // room for 2 MiB: one 4 MiB decode at a time
        let (started, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                cache.get_or_load((0, 0, 0), CHUNK, || {
                    started.wait();
                    release.wait();
                    Ok(Arc::new(ChunkData::from(vec![3; 4])))
                })
            });
            started.wait();
            // The reader holds the room and is decoding (0, 0, 0): read-ahead of it returns at
            // once instead of waiting for that decode.
            cache.load_ahead((0, 0, 0), CHUNK, || panic!("decoded twice"));
            release.wait();
            assert_eq!(reader.join().unwrap().unwrap()[0], 3);
        });
        // With the room free but the chunk being loaded by someone else, read-ahead skips too.
        let (started, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                cache.chunks.get_or_load((0, 0, 1), || {
                    started.wait();
                    release.wait();
                    Ok(Arc::new(ChunkData::from(vec![4; 4])))
                })
            });
            started.wait();
            let t0 = std::time::Instant::now();
            cache.load_ahead((0, 0, 1), CHUNK, || panic!("decoded twice"));
            assert!(t0.elapsed() < Duration::from_secs(5));
            release.wait();
            assert_eq!(reader.join().unwrap().unwrap()[0], 4);
        });
    }

    /// Big chunks arriving one after another never hold the cache over its size, not even
    /// for a moment (moka, before, evicted at its housekeeping, tens of MiB late).
    #[test]
    fn the_cache_holds_its_bound_after_every_big_chunk() {
        const CHUNK: usize = 4 << 20;
        let cache = ChunkCache::new(16 << 20);
        for c in 0..12u32 {
            let got = cache.get_or_load((0, 0, c), CHUNK as u64, || Ok(Arc::new(ChunkData::zeroed(CHUNK)))).unwrap();
            assert_eq!(got.weight(), CHUNK as u64 + 160);
            assert!(cache.chunks.weight() <= 16 << 20, "after chunk {c}: {}", cache.chunks.weight());
        }
        // Three 4 MiB chunks and their entries fit in 16 MiB, four do not: the newest three stay.
        assert_eq!(cache.chunks.weight(), 3 * (CHUNK as u64 + 160));
        assert!(cache.get(&(0, 0, 8)).is_none() && (9..12).all(|c| cache.get(&(0, 0, c)).is_some()));
    }

    #[test]
    fn a_chunk_weighs_its_bytes_its_pages_and_its_entry() {
        assert_eq!(ChunkData::from(vec![1; 10]).weight(), 10 + 160);
        assert_eq!(ChunkData::from(Vec::new()).weight(), 160);
        assert_eq!(ChunkData::zeroed(ChunkData::MAP_FROM + 1).weight(), (ChunkData::MAP_FROM + 4096) as u64 + 160);
    }

    #[test]
    fn small_chunks_on_the_heap_big_ones_mapped_both_zeroed_and_writable() {
        for (len, mapped) in
            [(0, false), (4096, false), (ChunkData::MAP_FROM - 1, false), (ChunkData::MAP_FROM, true), (4 << 20, true)]
        {
            let mut chunk = ChunkData::zeroed(len);
            assert_eq!((chunk.len(), chunk.is_mapped()), (len, mapped), "{len}");
            assert!(chunk.iter().all(|&b| b == 0));
            if let Some(last) = chunk.as_mut().last_mut() {
                *last = 7;
                assert_eq!(chunk.last(), Some(&7));
            }
        }
        assert_eq!(&*ChunkData::from(b"abc".to_vec()), b"abc");
    }

    #[test]
    fn a_chunk_is_handed_out_whole_once() {
        let chunk = ChunkData::zeroed(ChunkData::MAP_FROM);
        assert!(chunk.hand_out_whole_once());
        assert!(!chunk.hand_out_whole_once());
        assert!(!chunk.hand_out_whole_once());
    }
}
