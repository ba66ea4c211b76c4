//! The per-layer results cache the analyzer consults before downloading a layer.
//!
//! Keyed by (layer digest, catalogers key): a layer shared by many images is analyzed once, and bumping a
//! cataloger's version changes the key, so exactly the affected results are recomputed. A cache failure is
//! never an analysis failure: the analyzer treats it as a miss and records a warning.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::layer::LayerResult;

/// Error a cache implementation reports (the analyzer only logs it).
pub type CacheError = Box<dyn std::error::Error + Send + Sync>;

/// Storage for [`LayerResult`]s.
#[async_trait::async_trait]
pub trait LayerCache: Send + Sync {
    /// The result stored for this layer under this catalogers key, if any.
    async fn get(&self, layer_digest: &str, key: &str) -> Result<Option<LayerResult>, CacheError>;
    /// Stores a result (overwriting is fine: the same inputs give the same result).
    async fn put(
        &self,
        layer_digest: &str,
        key: &str,
        result: &LayerResult,
    ) -> Result<(), CacheError>;

    /// Stores a result in place of any stored one (a forced re-analysis replaces a suspect result).
    async fn replace(
        &self,
        layer_digest: &str,
        key: &str,
        result: &LayerResult,
    ) -> Result<(), CacheError> {
        self.put(layer_digest, key, result).await
    }

    /// Claims computing this layer for `ttl`. `None` when another claim is live (another worker, or
    /// another job of this one, is computing it): wait for its result (polling [`LayerCache::get`]) and
    /// ask again. Caches shared by nobody always grant it.
    async fn begin(
        &self,
        _layer_digest: &str,
        _key: &str,
        _ttl: Duration,
    ) -> Result<Option<LayerClaim>, CacheError> {
        Ok(Some(LayerClaim::default()))
    }

    /// Extends a claim by `ttl` (while a slow layer is still being computed).
    async fn renew(
        &self,
        _layer_digest: &str,
        _key: &str,
        _claim: &LayerClaim,
        _ttl: Duration,
    ) -> Result<(), CacheError> {
        Ok(())
    }

    /// Withdraws a claim (after storing the result, or after failing).
    async fn end(
        &self,
        _layer_digest: &str,
        _key: &str,
        _claim: &LayerClaim,
    ) -> Result<(), CacheError> {
        Ok(())
    }

    /// Withdraws a claim without waiting: for a computation dropped mid-way (a failed sibling layer, a
    /// lost lease, a drain), so others do not wait out the claim's TTL.
    fn end_detached(&self, _layer_digest: &str, _key: &str, _claim: LayerClaim) {}
}

/// A claim on computing one layer, from [`LayerCache::begin`]; its token tells claims apart, so a caller
/// only ever renews or withdraws its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerClaim {
    /// Unique per claim (empty for caches without claims).
    pub token: String,
}

/// Reads nothing, writes through (replacing what is stored): a forced re-analysis recomputes every layer
/// and refreshes the cache. It claims nothing: a forced analysis does not wait for anyone.
pub struct WriteOnly<C>(pub C);

#[async_trait::async_trait]
impl<C: LayerCache> LayerCache for WriteOnly<C> {
    async fn get(&self, _: &str, _: &str) -> Result<Option<LayerResult>, CacheError> {
        Ok(None)
    }
    async fn put(
        &self,
        layer_digest: &str,
        key: &str,
        result: &LayerResult,
    ) -> Result<(), CacheError> {
        self.0.replace(layer_digest, key, result).await
    }
}

/// A cache that never hits: every layer is fetched and analyzed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCache;

#[async_trait::async_trait]
impl LayerCache for NoCache {
    async fn get(&self, _: &str, _: &str) -> Result<Option<LayerResult>, CacheError> {
        Ok(None)
    }
    async fn put(&self, _: &str, _: &str, _: &LayerResult) -> Result<(), CacheError> {
        Ok(())
    }
}

/// An in-process cache (tests, `fathom scan` of several images in one process).
#[derive(Debug, Default)]
pub struct MemoryCache {
    entries: Mutex<HashMap<(String, String), LayerResult>>,
}

impl MemoryCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of stored results.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait::async_trait]
impl LayerCache for MemoryCache {
    async fn get(&self, layer_digest: &str, key: &str) -> Result<Option<LayerResult>, CacheError> {
        let entries = self
            .entries
            .lock()
            .map_err(|_| "memory cache lock poisoned")?;
        Ok(entries
            .get(&(layer_digest.to_string(), key.to_string()))
            .cloned())
    }

    async fn put(
        &self,
        layer_digest: &str,
        key: &str,
        result: &LayerResult,
    ) -> Result<(), CacheError> {
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| "memory cache lock poisoned")?;
        entries.insert((layer_digest.to_string(), key.to_string()), result.clone());
        Ok(())
    }
}
