//! Reading ahead in blob order, across files.
//!
//! Programs that read a whole tree (tar, cp -r, a container starting) tend to visit files in
//! the order a layer stores them, one file at a time, so each chunk is decoded only when its
//! read arrives and one core does all the inflating. When misses walk forward through the
//! blob, the next chunks in blob order are queued to a background thread that decodes them
//! into the shared chunk cache, where the coming reads find them; for remote blobs this also
//! fetches them ahead. Concurrent demand for a chunk being read ahead waits for that one decode
//! (the cache's single flight). Random access does not trigger it.
//!
//! What is queued ahead is bounded by the cache, not only by a count: at most [`AHEAD`] chunks
//! and at most half the cache's bytes, so a small cache is not filled with chunks decoded
//! ahead that evict each other (or the chunk a reader is part-way through) before they are
//! read. The table of chunks in blob order is built once and shared with the thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, OnceLock};

use crfs_core::{Index, Kind, Layer, NodeId, ReadAt};

use crate::ChunkCache;

/// Chunks queued ahead of a forward miss.
const AHEAD: usize = 8;
/// Most requests waiting for the background thread; more are dropped.
const QUEUE: usize = 64;

/// Every stored chunk of a layer in blob order, and the thread that decodes ahead.
pub(crate) struct ReadAhead {
    /// (member offset, file, chunk index), sorted; shared with the background thread.
    order: Arc<[(u64, NodeId, u32)]>,
    /// Most decoded bytes queued ahead of one miss: half the cache.
    budget: u64,
    queue: OnceLock<Option<SyncSender<usize>>>,
    /// Position in `order` of the last miss, to tell forward walks from random access.
    last_miss: AtomicUsize,
}

impl ReadAhead {
    /// The chunks of `layer` in blob order, to read ahead into a cache of `cache_bytes`.
    pub(crate) fn new<R: ReadAt>(layer: &Layer<R>, cache_bytes: u64) -> Self {
        let index = layer.index();
        let mut order: Vec<(u64, NodeId, u32)> = Vec::new();
        for id in 0..index.len() as NodeId {
            if index.kind(id) == Some(Kind::Reg) {
                for (i, c) in index.chunks(id).iter().enumerate() {
                    if !c.zeros {
                        order.push((c.offset, id, i as u32));
                    }
                }
            }
        }
        order.sort_unstable();
        ReadAhead {
            order: order.into(),
            budget: cache_bytes / 2,
            queue: OnceLock::new(),
            last_miss: AtomicUsize::new(usize::MAX),
        }
    }

    /// Called by the reader that missed chunk `chunk` of `file` (stored at blob `offset`):
    /// if misses are walking forward, queue the chunks that follow.
    pub(crate) fn on_miss<R: ReadAt + Send + Sync + 'static>(
        &self,
        index: &Index,
        offset: u64,
        file: NodeId,
        chunk: u32,
        start: impl FnOnce() -> Option<(Arc<Layer<R>>, ChunkCache, u32, bool)>,
    ) {
        let Ok(pos) = self.order.binary_search(&(offset, file, chunk)) else { return };
        let last = self.last_miss.swap(pos, Ordering::Relaxed);
        let forward = last != usize::MAX && pos > last && pos - last <= 2 * AHEAD;
        if !forward {
            return;
        }
        let Some(queue) = self.queue.get_or_init(|| start().and_then(|ctx| spawn(ctx, Arc::clone(&self.order)))) else {
            return;
        };
        let mut bytes = 0u64;
        for next in pos + 1..(pos + 1 + AHEAD).min(self.order.len()) {
            let size =
                self.order.get(next).and_then(|&(_, f, c)| index.chunks(f).get(c as usize)).map_or(0, |c| c.size);
            bytes = bytes.saturating_add(size);
            if bytes > self.budget || queue.try_send(next).is_err() {
                break;
            }
        }
    }
}

/// The background decoder; it ends when its queue's sender is dropped with the filesystem.
fn spawn<R: ReadAt + Send + Sync + 'static>(
    (layer, cache, tag, verify): (Arc<Layer<R>>, ChunkCache, u32, bool),
    order: Arc<[(u64, NodeId, u32)]>,
) -> Option<SyncSender<usize>> {
    let (tx, rx) = sync_channel::<usize>(QUEUE);
    let worker = move || {
        for pos in rx {
            let Some(&(_, file, chunk)) = order.get(pos) else { continue };
            let size = layer.index().chunks(file).get(chunk as usize).map_or(0, |c| c.size);
            // Skipped while the cache's decoding budget is full; errors are left to the read
            // that needs the chunk: it decodes again and reports.
            cache.load_ahead((tag, file, chunk), size, || crate::decode_chunk(&layer, file, chunk as usize, verify));
        }
    };
    match std::thread::Builder::new().name("crfs-readahead".into()).spawn(worker) {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::debug!("no read-ahead thread: {e}");
            None
        }
    }
}
