//! Decoded chunks as the chunk cache holds them.
//!
//! A big decoded chunk (eStargz and zstd:chunked writers make them up to 4 MiB) lives in an
//! anonymous memory mapping of its own, not on the heap, and so do its compressed bytes while
//! it is decoded when they are more than a decoding thread keeps (crfs-core's
//! `Scratch::KEEP_COMPRESSED`). The cache drops chunks in no
//! particular order, from whichever thread evicts them; on the heap, buffers of megabytes
//! freed that way leave holes in the allocator's arenas (one per thread that allocated), and
//! the process keeps that memory. A mapping goes back to the system the moment its last reader
//! lets go of it, whatever the allocator, so what crfs holds follows what the cache holds.
//! Small chunks stay on the heap, where a mapping's page rounding and system calls would cost
//! more than they save.

use core::fmt;
use core::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::loading::{LoadingCache, lock};

/// A decoded chunk's key: (layer tag, file node, chunk index).
pub type ChunkKey = (u32, crfs_core::NodeId, u32);

/// Decoded chunks, bounded in bytes and shareable between the layers of an image; clones share
/// the chunks and the decoding budget.
///
/// Two bounds: the cache holds at most its size in decoded chunks (moka evicts the rest; after
/// a big chunk arrives, within about 20 ms), and
/// the chunks being decoded at any moment, not yet in the cache, take at most half that (at
/// least one chunk at a time always proceeds). A miss waits for room in that budget; read-ahead
/// does not wait, it skips the chunk. So memory stays near the cache size plus half of it
/// however many threads read, and the page cache, not crfs, holds what was read. Half of the
/// default 16 MiB is two 4 MiB chunks decoding at once.
#[derive(Clone)]
pub struct ChunkCache {
    chunks: LoadingCache<ChunkKey, Arc<ChunkData>, crfs_core::Error>,
    decoding: Arc<DecodeBudget>,
    settler: Arc<Settler>,
}

impl ChunkCache {
    /// After decoding a chunk of at least this many bytes, the cache asks for moka's pending
    /// evictions to be applied soon (see [`Settler`]).
    const SETTLE_FROM: u64 = ChunkData::MAP_FROM as u64;

    /// A cache of at most `bytes` bytes of decoded chunks, and up to half that being decoded.
    pub fn new(bytes: u64) -> Self {
        let chunks = LoadingCache::new(chunk_store(bytes));
        let settler = Arc::new(Settler::new(chunks.clone()));
        ChunkCache { chunks, decoding: Arc::new(DecodeBudget::new(bytes / 2)), settler }
    }

    /// The chunk at `key` (of `size` decoded bytes), from the cache or from `decode`, run once
    /// for all the callers that miss it meanwhile, within the decoding budget.
    pub fn get_or_load(
        &self,
        key: ChunkKey,
        size: u64,
        decode: impl FnOnce() -> Result<Arc<ChunkData>, crfs_core::Error>,
    ) -> Result<Arc<ChunkData>, Arc<crfs_core::Error>> {
        let mut decoded = false;
        let chunk = self.chunks.get_or_load(key, || {
            let _room = self.decoding.take(size);
            decoded = true;
            decode()
        });
        if decoded && size >= Self::SETTLE_FROM {
            self.settler.wake();
        }
        chunk
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
        let loaded = self.chunks.load_unless_loading(key, decode).is_some();
        if loaded && size >= Self::SETTLE_FROM {
            self.settler.wake();
        }
    }

    /// The cached chunk at `key`, if any; never decodes.
    pub fn get(&self, key: &ChunkKey) -> Option<Arc<ChunkData>> {
        self.chunks.get(key)
    }
}

/// The moka cache a [`ChunkCache`] stores in: at most `bytes` bytes of decoded chunks, each
/// weighed by its length. Public so that a benchmark can drive the same store without
/// crfs-vfs's coalescing of misses.
pub fn chunk_store(bytes: u64) -> moka::sync::Cache<ChunkKey, Arc<ChunkData>> {
    moka::sync::Cache::builder()
        .max_capacity(bytes)
        .weigher(|_, v: &Arc<ChunkData>| u32::try_from(v.len()).unwrap_or(u32::MAX))
        .build()
}

/// A thread that applies moka's pending evictions soon after big chunks arrive.
///
/// moka evicts in batches, at its housekeeping (after enough writes, or every few hundred
/// milliseconds), so a burst of big chunks holds the cache over its bound meanwhile: reading
/// every file of the 55k-entry corpus with a 16 MiB cache peaked 20 MiB higher that way.
/// Settling on the reading thread after each big chunk kept the bound but cost that read 40 %
/// more time; this thread does it off the readers' path, at most once per [`Settler::PAUSE`]
/// (measured there: peak 77 → 66 MiB, read 4.5 → 5.0 s; a 5 ms pause gained 1 MiB more and
/// cost 0.4 s more). It starts with the first big chunk and ends when the cache is dropped.
struct Settler {
    chunks: LoadingCache<ChunkKey, Arc<ChunkData>, crfs_core::Error>,
    /// A wake-up for the thread (one pending at most), made with the thread on first use.
    wake: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<()>>>,
}

impl Settler {
    /// The least time between two settles.
    const PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

    fn new(chunks: LoadingCache<ChunkKey, Arc<ChunkData>, crfs_core::Error>) -> Self {
        Settler { chunks, wake: std::sync::OnceLock::new() }
    }

    /// Asks for a settle soon; returns at once.
    fn wake(&self) {
        let sender = self.wake.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
            let chunks = self.chunks.clone();
            let run = move || {
                // Ends when the last ChunkCache clone (and so the sender) is dropped.
                while rx.recv().is_ok() {
                    chunks.settle();
                    std::thread::sleep(Self::PAUSE);
                }
            };
            match std::thread::Builder::new().name("crfs-cache-settle".into()).spawn(run) {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::debug!("no cache settling thread ({e}); moka's own housekeeping only");
                    None
                }
            }
        });
        if let Some(tx) = sender {
            // Full: a settle is already pending, which will see this chunk too.
            let _ = tx.try_send(());
        }
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
            in_flight = self.freed.wait(in_flight).unwrap_or_else(std::sync::PoisonError::into_inner);
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
