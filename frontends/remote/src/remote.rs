//! `Remote`: the handle front-ends hold, a cheap clone of one shared [`Client`] (see `client`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cache::DiskCache;
use crate::client::{Client, Options, Stats};
use crate::error::Result;
use crate::platform::Platform;

/// The shared context: cheap to clone, safe to use from any thread.
#[derive(Clone)]
pub struct Remote {
    pub(crate) inner: Arc<Client>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("platform", &self.inner.platform).finish_non_exhaustive()
    }
}

impl Remote {
    /// Creates the context: a small runtime (two worker threads), the HTTP pool and the cache.
    pub fn new(options: Options) -> Result<Remote> {
        Ok(Remote { inner: Arc::new(Client::new(options)?) })
    }

    /// What this context has fetched so far.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// The disk cache, if this context has one.
    pub fn disk_cache(&self) -> Option<Arc<DiskCache>> {
        self.inner.cache.clone()
    }

    /// The platform used to pick from manifest lists.
    pub fn platform(&self) -> &Platform {
        &self.inner.platform
    }
}
