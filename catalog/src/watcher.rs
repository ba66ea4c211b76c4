//! The catalog's registry edge: the analyzer's [`TagWatcher`] behind a per-host pacer (at most
//! `services.catalog.requests_per_second_per_host`, whoever in this process asks, `Retry-After` holding
//! the host off), counting every request by host and kind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fathom_analyzer::source::reference::ImageRef;
use fathom_analyzer::source::watch::{TagWatcher, TagsPage};
use fathom_analyzer::AnalyzeError;
use tokio::time::Instant;

use crate::decide::Seen;
use crate::metrics::CatalogMetrics;
use crate::schedule;

/// Longest `Retry-After` honoured by holding a host off (a longer one waits for the next pass).
const MAX_HOLD_OFF: Duration = Duration::from_secs(300);

/// Requests sent, by kind (for a pass's report and the bench).
#[derive(Debug, Default)]
pub struct Counts {
    heads: AtomicU64,
    manifests: AtomicU64,
    tags: AtomicU64,
}

impl Counts {
    /// `(heads, manifests, tag list pages)` so far.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.heads.load(Ordering::Relaxed),
            self.manifests.load(Ordering::Relaxed),
            self.tags.load(Ordering::Relaxed),
        )
    }
}

/// A paced, counted registry client shared by everything the catalog of one process asks.
pub struct Watcher {
    client: TagWatcher,
    gap: Duration,
    origin: Instant,
    /// Per host: the earliest start of its next request, from `origin`. Held while a request waits for
    /// its slot, so waiters go one at a time and the next slot counts from when the last one really
    /// started (a process starved of CPU wakes late; its requests must not then go out in a bunch).
    next_free: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Duration>>>>,
    metrics: CatalogMetrics,
    counts: Counts,
}

impl Watcher {
    /// A watcher sending at most `rate` requests per second to any one host.
    pub fn new(client: TagWatcher, rate: f64, metrics: CatalogMetrics) -> Watcher {
        Watcher {
            client,
            gap: schedule::min_gap(rate),
            origin: Instant::now(),
            next_free: Mutex::new(HashMap::new()),
            metrics,
            counts: Counts::default(),
        }
    }

    /// Requests sent so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The metrics requests are counted in.
    pub fn metrics(&self) -> &CatalogMetrics {
        &self.metrics
    }

    fn slot(&self, host: &str) -> Arc<tokio::sync::Mutex<Duration>> {
        let mut hosts = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(hosts.entry(host.to_string()).or_default())
    }

    /// Waits for `host`'s next slot.
    async fn pace(&self, host: &str) {
        let slot = self.slot(host);
        let mut next = slot.lock().await;
        tokio::time::sleep_until(self.origin + *next).await;
        *next = self.origin.elapsed() + self.gap;
    }

    /// Keeps `host` quiet for `wait` (its `Retry-After`).
    async fn hold_off(&self, host: &str, wait: Duration) {
        let slot = self.slot(host);
        let mut next = slot.lock().await;
        *next = (*next).max(self.origin.elapsed() + wait.min(MAX_HOLD_OFF));
    }

    async fn noted<T>(
        &self,
        host: &str,
        result: Result<T, AnalyzeError>,
    ) -> Result<T, AnalyzeError> {
        if let Err(e) = &result {
            if let Some(wait) = e.retry_after() {
                self.hold_off(host, wait).await;
            }
        }
        result
    }

    /// Where `image` (a tag) points now: a `HEAD`, and a manifest `GET` only when the registry gave no
    /// digest. Missing (404, `MANIFEST_UNKNOWN`, `NAME_UNKNOWN`) and failing answers keep the registry's
    /// words.
    pub async fn resolve(&self, image: &ImageRef) -> Seen {
        let host = image.registry.as_str();
        self.pace(host).await;
        self.metrics.request(host, "head");
        self.counts.heads.fetch_add(1, Ordering::Relaxed);
        let head = self.noted(host, self.client.head_digest(image).await).await;
        let result = match head {
            Ok(Some(digest)) => Ok(digest),
            Ok(None) => {
                self.pace(host).await;
                self.metrics.request(host, "manifest");
                self.counts.manifests.fetch_add(1, Ordering::Relaxed);
                self.noted(host, self.client.get_digest(image).await).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(digest) => Seen::Digest(digest),
            Err(e @ AnalyzeError::ManifestUnknown { .. }) => Seen::Missing(e.to_string()),
            Err(e) => Seen::Failed(e.to_string()),
        }
    }

    /// A new watch's first look: what `image` names now and its layers (for the estimate of the job
    /// queued with the watch), from one paced manifest `GET` instead of a `HEAD` and a `GET`. The layers
    /// are `None` for an index.
    pub async fn look(&self, image: &ImageRef) -> (Seen, Option<Vec<(String, u64)>>) {
        let host = image.registry.as_str();
        self.pace(host).await;
        self.metrics.request(host, "manifest");
        self.counts.manifests.fetch_add(1, Ordering::Relaxed);
        match self.noted(host, self.client.manifest(image).await).await {
            Ok((digest, layers)) => (Seen::Digest(digest), layers),
            Err(e @ AnalyzeError::ManifestUnknown { .. }) => (Seen::Missing(e.to_string()), None),
            Err(e) => (Seen::Failed(e.to_string()), None),
        }
    }

    /// The layers (`(digest, compressed size)`) of what `image` names now, for the work estimate of the
    /// job a change queues: one paced manifest `GET`, only when a tag changed. `None` when it names an
    /// index or the registry did not answer: the job is then queued without an estimate, never held up.
    pub async fn layers(&self, image: &ImageRef) -> Option<Vec<(String, u64)>> {
        let host = image.registry.as_str();
        self.pace(host).await;
        self.metrics.request(host, "manifest");
        self.counts.manifests.fetch_add(1, Ordering::Relaxed);
        match self
            .noted(host, self.client.manifest_layers(image).await)
            .await
        {
            Ok(layers) => layers,
            Err(e) => {
                tracing::debug!(%image, error = %e, "no work estimate: the manifest could not be read");
                None
            }
        }
    }

    /// One page of `repository`'s tags (see [`TagWatcher::tags_page`]).
    pub async fn tags_page(
        &self,
        repository: &ImageRef,
        page: Option<&str>,
    ) -> Result<TagsPage, AnalyzeError> {
        let host = repository.registry.as_str();
        self.pace(host).await;
        self.metrics.request(host, "tags");
        self.counts.tags.fetch_add(1, Ordering::Relaxed);
        self.noted(host, self.client.tags_page(repository, page).await)
            .await
    }
}
