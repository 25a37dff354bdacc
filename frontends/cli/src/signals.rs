//! Stop signals: SIGINT and SIGTERM, handled on a thread of their own.

use crfs_image::{Error, Result};

/// Runs `on_signal` once, on a thread of its own, at the first SIGINT or SIGTERM. Returns the
/// handle that stops waiting.
pub fn on_stop_signal(on_signal: impl FnOnce(i32) + Send + 'static) -> Result<signal_hook::iterator::Handle> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .map_err(|e| Error::io("installing signal handlers", e))?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            on_signal(sig);
        }
    });
    Ok(handle)
}
