//! Remote blobs as `crfs_core::ReadAt`: a registry blob and a plain HTTP(S) URL.
//!
//! Both are a [`Blob`]: an endpoint, a size and, when known, a digest (the cache key). A read
//! is served from the disk cache when an entry covers it, else fetched (see `fetch`) and stored.
//!
//! Neighbouring reads are coalesced. Each blob follows up to [`MAX_STREAMS`] read streams
//! (several readers walking different parts of a layer at once). A read that starts at most
//! [`COALESCE_GAP`] bytes after a stream's previous read ended (what reading files in blob
//! order, vfs readahead and `crfs cat` of a directory do: one chunk after the other) is
//! fetched together with the bytes after it, in one request of up to `Options::max_coalesce`
//! bytes (the extent doubles with each neighbouring read of the stream, from
//! [`COALESCE_START`]). A read ending at most that far before a stream's previous read started
//! (files read in reverse order, as a depth-first walk with a stack does) is fetched with the
//! bytes before it, likewise. Any other read starts a stream, in place of the one used least
//! recently. While a coalesced request is under way, concurrent reads it covers (other FUSE
//! threads, kernel readahead) wait for it instead of asking for the same bytes again; if it
//! fails they fetch on their own. The extra bytes go to the disk cache, or, without one, stay
//! in memory: the last [`MAX_WINDOWS`] coalesced requests are kept as windows that any read
//! is served from, whichever stream asked (with several threads reading one run, the stream
//! that asked has often moved on by the time its request lands). A read that is not a
//! neighbour fetches exactly its range.
//!
//! The bytes a coalesced request adds before and after its read stop where bytes held (a
//! window, a request under way, the disk cache) or fetched before begin: bytes fetched before
//! and no longer held were read already (the compressed TOC at the end of the blob, fetched
//! when the layer was opened, is the common case), so fetching them again on speculation is
//! bandwidth spent for nothing. The read's own bytes are always fetched when not held.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crfs_core::ReadAt;

use crate::cache::DiskCache;
use crate::client::{Client, Counters};
use crate::error::{EIO, FetchError};
use crate::fetch::{Endpoint, Got, fetch_range};

/// Prefetches are fetched and cached in pieces of this size (one request each).
pub const PREFETCH_PIECE: u64 = 16 << 20;

/// Low-priority fetches (whole layers in the background) go in pieces of this size, so a read
/// arriving meanwhile waits for at most one of them.
pub const IDLE_PIECE: u64 = 2 << 20;

pub use crate::client::IDLE_AFTER;

/// Reads starting at most this far past the end of the previous read are neighbours.
pub const COALESCE_GAP: u64 = 64 << 10;

/// The first coalesced request reaches this far past the read's start; the next ones double.
pub const COALESCE_START: u64 = 256 << 10;

/// Read streams followed per blob.
pub const MAX_STREAMS: usize = 4;

/// Coalesced requests kept in memory per blob without a disk cache (as many as streams, so
/// at most `MAX_STREAMS * Options::max_coalesce` bytes), the least recently read from dropped.
pub const MAX_WINDOWS: usize = MAX_STREAMS;

/// Ranges of a blob remembered as fetched (merged when they touch); past this many the
/// shortest is forgotten, so at worst a coalesced request fetches it again.
const MAX_FETCHED_RANGES: usize = 4096;

/// Where the reads of one blob have got to, for coalescing.
#[derive(Default)]
pub(crate) struct Ahead {
    /// The streams, most recently used last.
    streams: Vec<Stream>,
    /// Coalesced requests under way: a read they cover waits for them instead of asking again.
    flights: Vec<Arc<Flight>>,
    /// Without a disk cache: the bytes of the last coalesced requests and where they start,
    /// the one read from most recently last; at most [`MAX_WINDOWS`].
    windows: Vec<(u64, Arc<Vec<u8>>)>,
    /// The ranges fetched from the network so far.
    fetched: Fetched,
}

/// One run of neighbouring reads.
struct Stream {
    /// Start and end of the stream's previous read.
    last_start: u64,
    last_end: u64,
    /// How far past its start the stream's next neighbouring read is fetched (0: the previous
    /// read was not a neighbour).
    extent: u64,
}

impl Stream {
    fn follows(&self, start: u64) -> bool {
        self.last_end > 0 && start >= self.last_end && start - self.last_end <= COALESCE_GAP
    }

    fn precedes(&self, end: u64) -> bool {
        self.last_end > 0 && end <= self.last_start && self.last_start - end <= COALESCE_GAP
    }
}

impl Ahead {
    /// The stream `[start, end)` continues (forwards, or backwards), moved to the back; else a
    /// new stream there, in place of the least recently used when all are taken.
    fn stream_for(&mut self, start: u64, end: u64) -> (&mut Stream, bool, bool) {
        let found = self.streams.iter().rposition(|s| s.follows(start) || s.precedes(end));
        let stream = match found {
            Some(i) => self.streams.remove(i),
            None => {
                if self.streams.len() >= MAX_STREAMS {
                    self.streams.remove(0);
                }
                Stream { last_start: 0, last_end: 0, extent: 0 }
            }
        };
        let (after, before) = (stream.follows(start), stream.precedes(end));
        self.streams.push(stream);
        let last = self.streams.len() - 1;
        (&mut self.streams[last], after, before)
    }

    /// The ranges held without the disk cache: the memory windows and the requests under way.
    fn held_in_memory(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let windows = self.windows.iter().map(|(at, w)| (*at, at + w.len() as u64));
        windows.chain(self.flights.iter().map(|f| (f.start, f.end)))
    }

    /// Copies bytes `[start, start + out.len())` from a memory window into `out`; false if no
    /// window holds them all. The window becomes the most recently read from.
    fn copy_windowed(&mut self, start: u64, out: &mut [u8]) -> bool {
        let Some(i) = self.windows.iter().position(|(w_start, w)| copy_from(w, *w_start, start, out)) else {
            return false;
        };
        let window = self.windows.remove(i);
        self.windows.push(window);
        true
    }

    /// Keeps the bytes of a coalesced request that landed, dropping the window read from least
    /// recently when there are more than [`MAX_WINDOWS`].
    fn keep_window(&mut self, start: u64, bytes: Arc<Vec<u8>>) {
        self.windows.push((start, bytes));
        if self.windows.len() > MAX_WINDOWS {
            self.windows.remove(0);
        }
    }
}

/// The ranges of a blob fetched so far: sorted, disjoint, not touching.
#[derive(Default)]
struct Fetched {
    ranges: Vec<(u64, u64)>,
}

impl Fetched {
    /// Notes `[start, end)` as fetched.
    fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // The ranges that touch or overlap the new one are merged into it.
        let first = self.ranges.partition_point(|&(_, e)| e < start);
        let last = self.ranges.partition_point(|&(s, _)| s <= end);
        let (mut lo, mut hi) = (start, end);
        if let Some(&(s, _)) = self.ranges.get(first).filter(|_| first < last) {
            lo = lo.min(s);
        }
        if let Some(&(_, e)) = last.checked_sub(1).and_then(|l| self.ranges.get(l)).filter(|_| first < last) {
            hi = hi.max(e);
        }
        self.ranges.splice(first..last, [(lo, hi)]);
        if self.ranges.len() > MAX_FETCHED_RANGES
            && let Some((shortest, _)) = self.ranges.iter().enumerate().min_by_key(|(_, (s, e))| e - s)
        {
            self.ranges.remove(shortest);
        }
    }

    /// Where the first range fetched at or after `at` starts.
    fn next_start(&self, at: u64) -> Option<u64> {
        let i = self.ranges.partition_point(|&(s, _)| s < at);
        self.ranges.get(i).map(|&(s, _)| s)
    }

    /// Where the last range fetched that ends at or before `at` ends.
    fn prev_end(&self, at: u64) -> Option<u64> {
        let i = self.ranges.partition_point(|&(_, e)| e <= at);
        i.checked_sub(1).and_then(|i| self.ranges.get(i)).map(|&(_, e)| e)
    }
}

/// A coalesced request under way, `[start, end)` of the blob.
pub(crate) struct Flight {
    start: u64,
    end: u64,
    /// `None` while under way; then the bytes, or `Some(None)` when it failed.
    result: Mutex<Option<Option<Arc<Vec<u8>>>>>,
    landed: Condvar,
}

impl Flight {
    fn covers(&self, start: u64, end: u64) -> bool {
        self.start <= start && end <= self.end
    }

    /// Copies `[start, start + out.len())` from this request into `out` once it has landed;
    /// false if it failed or took longer than `patience`.
    fn wait_into(&self, start: u64, out: &mut [u8], patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut r = self.result.lock().unwrap_or_else(|p| p.into_inner());
        while r.is_none() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
            r = self.landed.wait_timeout(r, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        r.as_ref().and_then(Option::as_ref).is_some_and(|data| copy_from(data, self.start, start, out))
    }
}

/// Copies blob bytes `[start, start + out.len())` into `out` from `held`, which holds the
/// blob's bytes from `held_at`; false (and `out` untouched) unless `held` has them all.
fn copy_from(held: &[u8], held_at: u64, start: u64, out: &mut [u8]) -> bool {
    let Some(lo) = start.checked_sub(held_at).and_then(|lo| usize::try_from(lo).ok()) else { return false };
    match lo.checked_add(out.len()).and_then(|hi| held.get(lo..hi)) {
        Some(bytes) => {
            out.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

/// What to do for a read.
enum Plan {
    /// A memory window held it: it is copied already.
    Have,
    /// A coalesced request under way covers it.
    Wait(Arc<Flight>),
    /// Fetch exactly the read.
    Exact,
    /// Fetch this coalesced request (registered as under way).
    Coalesced(Arc<Flight>),
    /// Bytes from the start up to this offset are held (a window, a request under way, the
    /// disk cache) and the rest are not: read the two parts apart, so the held bytes are not
    /// fetched again.
    Split(u64),
}

/// The shared part of remote blobs.
pub(crate) struct Blob {
    pub inner: Arc<Client>,
    pub ep: Arc<Endpoint>,
    pub size: u64,
    /// The blob digest (`sha256:…`), when known: the disk cache key.
    pub digest: Option<String>,
    pub ahead: Mutex<Ahead>,
    /// Bytes this blob fetched from the network so far.
    pub fetched: std::sync::atomic::AtomicU64,
    /// Reads of this blob the disk cache served.
    pub cache_hits: std::sync::atomic::AtomicU64,
}

impl Blob {
    /// Notes a read of `[start, end)` (`out` is its buffer) and decides how to serve it: from a
    /// memory window (copied into `out` at once), by
    /// waiting for a coalesced request that covers it, or by a request of its own (larger than
    /// asked when the read is a neighbour of the previous one).
    fn plan(&self, start: u64, end: u64, out: &mut [u8]) -> Plan {
        let max = self.inner.options.max_coalesce;
        let size = self.size;
        let mut guard = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        let a = &mut *guard;
        if let Some(held_to) = self.held_from(a, start).filter(|&h| start < h && h < end) {
            return Plan::Split(held_to);
        }
        let have = a.copy_windowed(start, out);
        let under_way = a.flights.iter().find(|f| f.covers(start, end)).cloned();
        let (stream, after, before) = a.stream_for(start, end);
        (stream.last_start, stream.last_end) = (start, end);
        if have {
            return Plan::Have;
        }
        if let Some(f) = under_way {
            return Plan::Wait(f);
        }
        if !(after || before) || max == 0 {
            stream.extent = 0;
            return Plan::Exact;
        }
        stream.extent = if stream.extent == 0 { COALESCE_START } else { stream.extent.saturating_mul(2) }.min(max);
        let (f_start, f_end) = if after {
            (start, end.max(start.saturating_add(stream.extent)).min(size))
        } else {
            (start.min(end.saturating_sub(stream.extent)), end)
        };
        let (f_start, f_end) = self.unheld_around(a, start, end, f_start, f_end);
        let flight = Arc::new(Flight { start: f_start, end: f_end, result: Mutex::new(None), landed: Condvar::new() });
        a.flights.push(Arc::clone(&flight));
        Plan::Coalesced(flight)
    }

    /// How far from `start` the bytes are held without a new request: by a memory window, a
    /// request under way, or the disk cache (as far as this process knows it).
    fn held_from(&self, a: &Ahead, start: u64) -> Option<u64> {
        let held = a.held_in_memory().filter(|&(s, e)| s <= start && start < e).map(|(_, e)| e).max();
        let cached = self.cache().and_then(|(cache, digest)| cache.held_from(digest, start));
        held.max(cached)
    }

    /// Narrows the request `[f_start, f_end)` for the read `[start, end)` so that the bytes it
    /// adds before and after the read stop where held bytes begin (windows, requests under way,
    /// the disk cache): reads arriving slightly out of order would otherwise make a backward
    /// request that fetches again what the forward run just brought. They also stop where
    /// bytes fetched before begin, held or not (see the module docs): a forward run reaching
    /// the TOC, fetched when the layer was opened, would otherwise fetch it again.
    fn unheld_around(&self, a: &Ahead, start: u64, end: u64, f_start: u64, f_end: u64) -> (u64, u64) {
        let (mut lo, mut hi) = (f_start, f_end);
        for (s, e) in a.held_in_memory() {
            if e > end && s < hi {
                hi = hi.min(s.max(end));
            }
            if s < start && e > lo {
                lo = lo.max(e.min(start));
            }
        }
        if let Some(s) = a.fetched.next_start(end) {
            hi = hi.min(s.max(end));
        }
        if let Some(e) = a.fetched.prev_end(start) {
            lo = lo.max(e.min(start));
        }
        if let Some((cache, digest)) = self.cache() {
            if hi > end {
                hi = cache.first_held_in(digest, end, hi).unwrap_or(hi);
            }
            if lo < start {
                lo = cache.last_held_end_in(digest, lo, start).unwrap_or(lo);
            }
        }
        (lo, hi)
    }

    /// Ends a coalesced request: wakes the reads waiting for it, and without a disk cache keeps
    /// its bytes as a memory window.
    fn land(&self, flight: &Arc<Flight>, data: Option<Arc<Vec<u8>>>) {
        {
            let mut a = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
            a.flights.retain(|f| !Arc::ptr_eq(f, flight));
            if let (Some(d), None) = (&data, self.cache()) {
                a.keep_window(flight.start, Arc::clone(d));
            }
        }
        *flight.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(data);
        flight.landed.notify_all();
    }

    /// Reads `[start, start + out.len())` into `out` for a reader: coalesced with the bytes
    /// after it when it is a neighbour of the previous read (see the module docs). The bytes
    /// are copied into `out` once, from wherever they are held (a window, a request under way,
    /// the disk cache, the response).
    fn read_range_into(&self, start: u64, out: &mut [u8]) -> Result<(), FetchError> {
        let end = start.saturating_add(out.len() as u64);
        let flight = match self.plan(start, end, out) {
            Plan::Have => {
                Counters::add(&self.inner.counters.cache_hits, 1);
                return Ok(());
            }
            Plan::Wait(f) => {
                let patience = self.inner.options.retry.deadline + self.inner.options.request_timeout;
                if f.wait_into(start, out, patience) {
                    Counters::add(&self.inner.counters.cache_hits, 1);
                    return Ok(());
                }
                // It failed (or is stuck): this read asks on its own, with its own retries.
                return self.fetch_into(start, out);
            }
            Plan::Exact => return self.fetch_into(start, out),
            Plan::Split(held_to) => {
                let at = usize::try_from(held_to - start).unwrap_or(usize::MAX).min(out.len());
                let (head, tail) = out.split_at_mut(at);
                self.read_range_into(start, head)?;
                return self.read_range_into(held_to, tail);
            }
            Plan::Coalesced(f) => f,
        };
        if self.read_disk_cache(start, out) {
            self.land(&flight, None);
            return Ok(());
        }
        let got = self.fetch_network(flight.start, flight.end, true).map(Arc::new);
        self.land(&flight, got.as_ref().ok().cloned());
        let data = got?;
        if copy_from(&data, flight.start, start, out) {
            Ok(())
        } else {
            Err(FetchError::permanent("coalesced read came back short", format!("{} bytes", data.len())))
        }
    }

    fn cache(&self) -> Option<(&Arc<DiskCache>, &str)> {
        Some((self.inner.cache.as_ref()?, self.digest.as_deref()?))
    }

    /// Copies `[start, start + out.len())` into `out` from the disk cache if it holds them all;
    /// a hit is counted.
    fn read_disk_cache(&self, start: u64, out: &mut [u8]) -> bool {
        let hit = self.cache().is_some_and(|(cache, digest)| cache.get_into(digest, start, out));
        if hit {
            self.count_disk_cache_hit();
        }
        hit
    }

    /// Counts a read the disk cache served, for the client and for this blob.
    fn count_disk_cache_hit(&self) {
        Counters::add(&self.inner.counters.cache_hits, 1);
        Counters::add(&self.cache_hits, 1);
    }

    /// Reads `[start, start + out.len())` into `out`, from the cache or the network.
    fn fetch_into(&self, start: u64, out: &mut [u8]) -> Result<(), FetchError> {
        if self.read_disk_cache(start, out) {
            return Ok(());
        }
        let end = start.saturating_add(out.len() as u64);
        let data = self.fetch_network(start, end, true)?;
        if data.len() != out.len() {
            return Err(FetchError::permanent("the server sent the wrong length", format!("{} bytes", data.len())));
        }
        out.copy_from_slice(&data);
        Ok(())
    }

    /// Reads `[start, end)`, from the cache or the network.
    pub fn fetch(&self, start: u64, end: u64) -> Result<Vec<u8>, FetchError> {
        if let Some((cache, digest)) = self.cache()
            && let Some(data) = cache.get(digest, start, end)
        {
            self.count_disk_cache_hit();
            return Ok(data);
        }
        self.fetch_network(start, end, true)
    }

    /// Reads `[start, end)` from the network, bypassing the disk cache (whole-blob copies,
    /// which keep the bytes elsewhere).
    pub fn fetch_uncached(&self, start: u64, end: u64) -> Result<Vec<u8>, FetchError> {
        self.fetch_network(start, end, false)
    }

    /// One range from the network; with `store`, the bytes also go to the disk cache.
    fn fetch_network(&self, start: u64, end: u64, store: bool) -> Result<Vec<u8>, FetchError> {
        let inner = Arc::clone(&self.inner);
        let ep = Arc::clone(&self.ep);
        let size = self.size;
        let cache = self.inner.cache.clone().filter(|_| store && self.digest.is_some());
        let got = self
            .inner
            .run(async move { fetch_range(&inner, &ep, size, start, end, cache.as_deref()).await }, || {
                FetchError::permanent("the I/O runtime stopped", String::new())
            })?;
        let fetched = match &got {
            Got::Range(d) | Got::FromWhole(d, _) => d.len() as u64,
        };
        tracing::debug!(start, end, fetched, "blob bytes fetched");
        Counters::add(&self.fetched, fetched);
        if store {
            self.ahead.lock().unwrap_or_else(|p| p.into_inner()).fetched.add(start, end);
        }
        let data = match got {
            Got::Range(d) => {
                if let Some((cache, digest)) = self.cache().filter(|_| store) {
                    cache.put(digest, start, &d);
                }
                d
            }
            Got::FromWhole(d, writer) => {
                // The whole blob went to the cache, so the next reads are local.
                if let (Some((cache, digest)), Some(w)) = (self.cache(), writer) {
                    cache.commit(w, digest, 0);
                }
                if !self.ep.warned_whole.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(
                        url = %crate::http::redact(&self.ep.url),
                        "the server ignores Range requests and sends the whole blob; \
                         use a disk cache to fetch it only once"
                    );
                }
                d
            }
        };
        Ok(data)
    }

    /// Fetches `[start, end)` into the disk cache in pieces of [`PREFETCH_PIECE`] bytes,
    /// skipping pieces already there; later reads inside a piece are local. Returns the bytes
    /// fetched. Without a disk cache (or a digest to key it) there is nowhere to keep them.
    pub fn prefetch(&self, start: u64, end: u64) -> crate::Result<u64> {
        self.fetch_into_cache(start, end, PREFETCH_PIECE, false)
    }

    /// As [`Blob::prefetch`], at low priority: pieces of [`IDLE_PIECE`] bytes, each fetched
    /// only once no read has been in progress for [`IDLE_AFTER`].
    pub fn prefetch_when_idle(&self, start: u64, end: u64) -> crate::Result<u64> {
        self.fetch_into_cache(start, end, IDLE_PIECE, true)
    }

    fn fetch_into_cache(&self, start: u64, end: u64, piece: u64, idle: bool) -> crate::Result<u64> {
        let Some((cache, digest)) = self.cache() else {
            return Err(crate::Error::invalid("prefetching needs a disk cache (CacheOptions)"));
        };
        let end = end.min(self.size);
        let mut fetched = 0;
        let mut at = start;
        while at < end {
            let piece_end = at.saturating_add(piece).min(end);
            if !cache.contains(digest, at, piece_end) {
                if idle {
                    self.inner.reading.wait_idle();
                }
                let data = self.fetch(at, piece_end).map_err(|e| e.to_error())?;
                fetched += data.len() as u64;
                if !cache.contains(digest, at, piece_end) {
                    cache.put(digest, at, &data);
                }
            }
            at = piece_end;
        }
        Ok(fetched)
    }

    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> crfs_core::Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let _reading = self.inner.reading.begin();
        let len = (buf.len() as u64).min(self.size - offset);
        let Some(out) = usize::try_from(len).ok().and_then(|len| buf.get_mut(..len)) else {
            return Err(crfs_core::Error::Io(crfs_core::error::IoError { errno: EIO, what: "remote read too long" }));
        };
        tracing::trace!(start = offset, end = offset + len, "blob read");
        match self.read_range_into(offset, out) {
            Ok(()) => Ok(out.len()),
            Err(e) => {
                tracing::warn!(offset, len, url = %crate::http::redact(&self.ep.url), "{e}");
                Err(e.to_core())
            }
        }
    }
}

/// A blob in an OCI registry, read by Range requests. Made by [`crate::Remote::open_layer`]
/// or [`crate::Remote::open_blob`].
pub struct RegistryBlob {
    pub(crate) blob: Blob,
}

impl RegistryBlob {
    /// The blob digest.
    pub fn digest(&self) -> &str {
        self.blob.digest.as_deref().unwrap_or_default()
    }

    /// The blob URL at the registry.
    pub fn url(&self) -> &str {
        self.blob.ep.url.as_str()
    }

    /// Fetches `[start, end)` into the disk cache (prefetch at mount: the range before the
    /// prefetch landmark). See [`PREFETCH_PIECE`].
    pub fn prefetch(&self, start: u64, end: u64) -> crate::Result<u64> {
        self.blob.prefetch(start, end)
    }

    /// Fetches `[start, end)` into the disk cache at low priority (`--background-fetch`: the
    /// whole blob): in pieces of [`IDLE_PIECE`], each once no read through this blob's
    /// `Remote` has been in progress for [`IDLE_AFTER`].
    pub fn prefetch_when_idle(&self, start: u64, end: u64) -> crate::Result<u64> {
        self.blob.prefetch_when_idle(start, end)
    }
    /// Reads `[start, end)` from the registry without the disk cache (see
    /// [`crate::SourceLayer::copy_whole`]).
    pub fn read_uncached(&self, start: u64, end: u64) -> crate::Result<Vec<u8>> {
        self.blob.fetch_uncached(start, end.min(self.blob.size)).map_err(|e| e.to_error())
    }
}

impl std::fmt::Debug for RegistryBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryBlob").field("url", &self.url()).field("size", &self.blob.size).finish()
    }
}

/// Both blob kinds read through their [`Blob`]: sizes, verified range reads, and prefetch
/// into the disk cache (a prefetch that cannot happen is only logged by callers).
macro_rules! read_at_through_blob {
    ($($kind:ty),*) => {$(
        impl ReadAt for $kind {
            fn size(&self) -> u64 {
                self.blob.size
            }

            fn read_at(&self, offset: u64, buf: &mut [u8]) -> crfs_core::Result<usize> {
                self.blob.read_at(offset, buf)
            }

            fn prefetch(&self, start: u64, end: u64) -> crfs_core::Result<()> {
                self.blob.prefetch(start, end).map(|_| ()).map_err(|e| {
                    tracing::debug!("prefetch of [{start}, {end}) skipped: {e}");
                    crfs_core::Error::Io(crfs_core::error::IoError { errno: 0, what: "prefetching the blob" })
                })
            }

            fn transfer_counts(&self) -> Option<crfs_core::TransferCounts> {
                use std::sync::atomic::Ordering::Relaxed;
                Some(crfs_core::TransferCounts {
                    fetched_bytes: self.blob.fetched.load(Relaxed),
                    cache_hits: self.blob.cache_hits.load(Relaxed),
                })
            }

            fn prefetch_when_idle(&self, start: u64, end: u64) -> crfs_core::Result<()> {
                self.blob.prefetch_when_idle(start, end).map(|_| ()).map_err(|e| {
                    tracing::debug!("background fetch of [{start}, {end}) skipped: {e}");
                    crfs_core::Error::Io(crfs_core::error::IoError { errno: 0, what: "fetching the blob in the background" })
                })
            }
        }
    )*};
}

read_at_through_blob!(RegistryBlob, HttpBlob);

/// A blob at a plain HTTP(S) URL: size from HEAD, bytes by Range requests, the same rules as
/// registry blobs. Made by [`crate::Remote::open_url`].
pub struct HttpBlob {
    pub(crate) blob: Blob,
}

impl HttpBlob {
    /// The URL.
    pub fn url(&self) -> &str {
        self.blob.ep.url.as_str()
    }

    /// Fetches `[start, end)` into the disk cache, as [`RegistryBlob::prefetch`] (the blob
    /// needs a digest, given to [`crate::Remote::open_url`]).
    pub fn prefetch(&self, start: u64, end: u64) -> crate::Result<u64> {
        self.blob.prefetch(start, end)
    }

    /// Fetches `[start, end)` into the disk cache at low priority (`--background-fetch`: the
    /// whole blob): in pieces of [`IDLE_PIECE`], each once no read through this blob's
    /// `Remote` has been in progress for [`IDLE_AFTER`].
    pub fn prefetch_when_idle(&self, start: u64, end: u64) -> crate::Result<u64> {
        self.blob.prefetch_when_idle(start, end)
    }
}

impl std::fmt::Debug for HttpBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBlob").field("url", &self.url()).field("size", &self.blob.size).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::Fetched;

    #[test]
    fn fetched_ranges_merge_and_bound_coalesced_requests() {
        let mut f = Fetched::default();
        f.add(100, 200);
        f.add(300, 400);
        f.add(200, 250); // touches the first
        f.add(500, 500); // empty
        assert_eq!(f.ranges, [(100, 250), (300, 400)]);
        f.add(240, 310); // bridges both
        assert_eq!(f.ranges, [(100, 400)]);
        f.add(0, 10);
        f.add(1000, 2000);
        assert_eq!(f.ranges, [(0, 10), (100, 400), (1000, 2000)]);
        assert_eq!(f.next_start(400), Some(1000));
        assert_eq!(f.next_start(50), Some(100));
        assert_eq!(f.next_start(2000), None);
        assert_eq!(f.prev_end(999), Some(400));
        assert_eq!(f.prev_end(400), Some(400));
        assert_eq!(f.prev_end(5), None);
    }

    #[test]
    fn fetched_ranges_forget_the_shortest_past_the_bound() {
        let mut f = Fetched::default();
        for i in 0..=super::MAX_FETCHED_RANGES as u64 {
            f.add(i * 100, i * 100 + if i == 7 { 1 } else { 10 });
        }
        assert_eq!(f.ranges.len(), super::MAX_FETCHED_RANGES);
        assert!(!f.ranges.contains(&(700, 701)));
    }
}
