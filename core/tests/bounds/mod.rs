//! Time and memory bounds for the hostile-input tests (hostile.rs, fuzz_corpus.rs): a counting
//! global allocator (per-thread current and peak bytes) and per-thread CPU-time limits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------------
// Counting allocator: current and peak bytes allocated by this thread.

#[allow(unsafe_code)]
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static CURRENT: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn grow(n: usize) {
        let _ = CURRENT.try_with(|c| {
            let v = c.get().saturating_add(n as isize);
            c.set(v);
            let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
        });
    }

    fn shrink(n: usize) {
        let _ = CURRENT.try_with(|c| c.set(c.get().saturating_sub(n as isize)));
    }

    /// Forwards to the system allocator, counting bytes per thread.
    pub struct Counting;

    // SAFETY: every call is forwarded unchanged to `System`; the counters are thread-local
    // `Cell`s with const initialisers, which never allocate.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as ours.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same contract as ours.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as ours.
            unsafe { System.dealloc(ptr, layout) };
            shrink(layout.size());
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: same contract as ours.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                // Old and new blocks may coexist during the move: count the new one first.
                grow(new_size);
                shrink(layout.size());
            }
            p
        }
    }

    /// Runs `f` and returns its result and the peak bytes it held at once on this thread
    /// (above what was allocated before it started).
    pub fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let base = CURRENT.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let out = f();
        let peak = PEAK.with(Cell::get);
        (out, (peak - base).max(0) as usize)
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

pub use counting::peak;

// ------------------------------------------------------------------------------------------------
// Time bounds.

/// The issue asks for "a clear error within a second". Time is measured as this thread's CPU
/// time where Linux reports it (/proc/thread-self/schedstat), so a loaded machine (CI, parallel
/// test processes) does not make the bound flaky; wall time is the fallback, and is also held
/// to a much looser bound so that a hang fails too. Debug builds are an order of magnitude
/// slower than release builds, and the bound holds for them as well.
pub const SECOND: Duration = Duration::from_secs(1);

pub fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: u64 = stat.split_whitespace().next()?.parse().ok()?;
    (nanos > 0).then(|| Duration::from_nanos(nanos))
}

/// Runs `f`; returns its result, the CPU time it took (wall time where unknown) and wall time.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let cpu_start = thread_cpu();
    let wall_start = Instant::now();
    let out = f();
    let wall = wall_start.elapsed();
    let took = match (cpu_start, thread_cpu()) {
        (Some(a), Some(b)) if b >= a => b - a,
        _ => wall,
    };
    (out, took, wall)
}

pub fn within<T>(what: &str, limit: Duration, f: impl FnOnce() -> T) -> T {
    let (out, took, wall) = timed(f);
    if took > limit / 4 {
        eprintln!("{what}: {took:?} (limit {limit:?})");
    }
    assert!(took <= limit, "{what}: took {took:?} of CPU time, limit {limit:?}");
    assert!(wall <= limit * 30, "{what}: took {wall:?} of wall time");
    out
}
