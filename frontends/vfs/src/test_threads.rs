//! Threads that start together, for the tests of the caches' coalesced loads.

use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Runs `call(i)` on `n` threads that start together; their results in thread order.
pub(crate) fn together<T: Send>(n: usize, call: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, call) = (&barrier, &call);
                s.spawn(move || {
                    barrier.wait();
                    call(i)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// `n` threads miss one key together through `get_or_load`, whose load (the function it is
/// given) returns `outcome` slowly, long enough for the others to arrive while it runs.
/// Returns how many loads ran, and each thread's result.
pub(crate) fn slow_misses<V: Clone + Sync, R: Send>(
    n: usize,
    outcome: V,
    get_or_load: impl Fn(&dyn Fn() -> V) -> R + Sync,
) -> (usize, Vec<R>) {
    let loads = AtomicUsize::new(0);
    let load = || {
        loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
        outcome.clone()
    };
    let results = together(n, |_| get_or_load(&load));
    (loads.into_inner(), results)
}
