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

    /// Announces that the caller is about to compute this layer, for `ttl` at most. `false` when another
    /// process announced it first and has neither finished nor given up: the caller should wait for that
    /// result (polling [`LayerCache::get`]) and ask again. Caches shared by nobody always say `true`.
    async fn begin(
        &self,
        _layer_digest: &str,
        _key: &str,
        _ttl: Duration,
    ) -> Result<bool, CacheError> {
        Ok(true)
    }

    /// Withdraws the caller's announcement (after storing the result, or after failing).
    async fn end(&self, _layer_digest: &str, _key: &str) -> Result<(), CacheError> {
        Ok(())
    }
}

/// Reads nothing, writes through: a forced re-analysis recomputes every layer and refreshes the cache.
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
        self.0.put(layer_digest, key, result).await
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
