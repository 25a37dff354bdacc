//! Prefetch and background fetch: what is read before anyone asks.

use crate::Blob;
use crate::layer::OpenedLayer;

/// In the background: each layer's prioritized region (before `.prefetch.landmark`), then,
/// with `whole`, every layer in full at low priority (only while no read is in progress). Only
/// remote blobs with a disk cache act on it.
pub fn start(layers: &[OpenedLayer], whole: bool) {
    let prioritized: Vec<(String, Blob, u64)> = layers
        .iter()
        .filter_map(|l| l.layer.index().prefetch_landmark().map(|end| (l.name.clone(), l.layer.blob().clone(), end)))
        .collect();
    let complete: Vec<(String, Blob)> =
        layers.iter().filter(|_| whole).map(|l| (l.name.clone(), l.layer.blob().clone())).collect();
    if prioritized.is_empty() && complete.is_empty() {
        return;
    }
    std::thread::spawn(move || {
        for (name, blob, end) in prioritized {
            match blob.prefetch(0, end) {
                Ok(()) => tracing::debug!(layer = %name, bytes = end, "prefetched the prioritized files"),
                Err(e) => tracing::debug!(layer = %name, "prefetch skipped: {e}"),
            }
        }
        for (name, blob) in complete {
            match blob.prefetch_when_idle(0, blob.size()) {
                Ok(()) => tracing::debug!(layer = %name, bytes = blob.size(), "fetched in the background"),
                Err(e) => tracing::debug!(layer = %name, "background fetch skipped: {e}"),
            }
        }
    });
}
