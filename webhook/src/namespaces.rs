//! Namespace labels for selectors, cached per namespace: one lookup per namespace per TTL however many
//! requests arrive at once, "no labels" (logged once per outage) when the source cannot answer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use crate::cluster::{Labels, NamespaceSource};

/// Namespaces remembered at most (a cluster has far fewer; this bounds a flood of made-up names).
const MAX_ENTRIES: usize = 10_000;

/// After a failed lookup, the next one waits this long (or the TTL, if shorter): an unreachable API
/// server is not asked again by every admission request.
const RETRY_AFTER: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Fetched {
    labels: Labels,
    ok: bool,
    at: Instant,
}

type Pending = Shared<BoxFuture<'static, Fetched>>;

/// The per-namespace cache; lookups run in their own task, so a request that gives up waiting does
/// not cancel the lookup the others share.
pub(crate) struct NamespaceCache {
    source: Arc<dyn NamespaceSource>,
    ttl: Duration,
    /// A lookup taking longer is abandoned (as failed).
    call_timeout: Duration,
    entries: Mutex<HashMap<String, Pending>>,
    /// Set by the first failure of an outage, cleared by the next success: one warning per outage.
    failing: Arc<AtomicBool>,
}

impl NamespaceCache {
    pub(crate) fn new(
        source: Arc<dyn NamespaceSource>,
        ttl: Duration,
        call_timeout: Duration,
    ) -> Self {
        NamespaceCache {
            source,
            ttl,
            call_timeout,
            entries: Mutex::new(HashMap::new()),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    fn fresh(&self, pending: &Pending) -> bool {
        match pending.peek() {
            // In flight: join it.
            None => true,
            Some(f) => {
                f.at.elapsed()
                    < if f.ok {
                        self.ttl
                    } else {
                        self.ttl.min(RETRY_AFTER)
                    }
            }
        }
    }

    /// The labels of `namespace`, waiting at most `budget` for a lookup (then: none).
    pub(crate) async fn labels(&self, namespace: &str, budget: Duration) -> Labels {
        let pending = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            match entries.get(namespace) {
                Some(p) if self.fresh(p) => p.clone(),
                _ => {
                    if entries.len() >= MAX_ENTRIES {
                        entries.retain(|_, p| self.fresh(p));
                        if entries.len() >= MAX_ENTRIES {
                            entries.clear();
                        }
                    }
                    let p = self.spawn_lookup(namespace);
                    entries.insert(namespace.to_owned(), p.clone());
                    p
                }
            }
        };
        match tokio::time::timeout(budget, pending).await {
            Ok(fetched) => fetched.labels,
            Err(_) => {
                tracing::debug!(
                    namespace,
                    "namespace labels not back within the request's budget"
                );
                None
            }
        }
    }

    fn spawn_lookup(&self, namespace: &str) -> Pending {
        let (source, failing) = (Arc::clone(&self.source), Arc::clone(&self.failing));
        let (name, limit) = (namespace.to_owned(), self.call_timeout);
        let task = tokio::spawn(async move {
            let result = match tokio::time::timeout(limit, source.labels(&name)).await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {}",
                    humantime::format_duration(limit)
                )),
            };
            match result {
                Ok(labels) => {
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("namespace labels available again");
                    }
                    (labels, true)
                }
                Err(e) => {
                    if failing.swap(true, Ordering::Relaxed) {
                        tracing::debug!(namespace = %name, "namespace labels unavailable: {e}");
                    } else {
                        tracing::warn!(
                            namespace = %name,
                            "namespace labels unavailable, selectors on them do not match until they \
                             are back (logged once): {e}"
                        );
                    }
                    (None, false)
                }
            }
        });
        async move {
            let (labels, ok) = task.await.unwrap_or((None, false));
            Fetched {
                labels,
                ok,
                at: Instant::now(),
            }
        }
        .boxed()
        .shared()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::OracleError;
    use async_trait::async_trait;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    /// Counts lookups; each waits for a permit, so a test decides when lookups finish.
    struct Gate {
        calls: AtomicUsize,
        permits: Semaphore,
        fail: AtomicBool,
    }

    #[async_trait]
    impl NamespaceSource for Gate {
        async fn labels(&self, namespace: &str) -> Result<Labels, OracleError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.permits.acquire().await.unwrap().forget();
            if self.fail.load(Ordering::SeqCst) {
                return Err(OracleError::Unavailable("down".into()));
            }
            Ok(Some(BTreeMap::from([(
                "ns".to_owned(),
                namespace.to_owned(),
            )])))
        }
    }

    fn gate() -> Arc<Gate> {
        Arc::new(Gate {
            calls: AtomicUsize::new(0),
            permits: Semaphore::new(0),
            fail: AtomicBool::new(false),
        })
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn concurrent_requests_share_one_lookup_per_namespace() {
        let source = gate();
        let cache = Arc::new(NamespaceCache::new(source.clone(), LONG, LONG));
        let lookups: Vec<_> = (0..32)
            .map(|i| {
                let cache = Arc::clone(&cache);
                let ns = if i % 2 == 0 { "a" } else { "b" };
                tokio::spawn(async move { cache.labels(ns, LONG).await })
            })
            .collect();
        // Every request is waiting on a lookup before any lookup may finish.
        while cache.entries.lock().unwrap().len() < 2 || source.calls.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        source.permits.add_permits(100);
        for (i, l) in lookups.into_iter().enumerate() {
            let labels = l.await.unwrap().unwrap();
            assert_eq!(labels["ns"], if i % 2 == 0 { "a" } else { "b" });
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
        // Within the TTL: no further lookup.
        assert!(cache.labels("a", LONG).await.is_some());
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    // A paused clock: "within the retry interval" holds however slow the machine is.
    #[tokio::test(start_paused = true)]
    async fn failures_mean_no_labels_and_a_request_never_waits_past_its_budget() {
        let source = gate();
        source.fail.store(true, Ordering::SeqCst);
        source.permits.add_permits(100);
        let cache = NamespaceCache::new(source.clone(), LONG, LONG);
        assert_eq!(cache.labels("a", LONG).await, None);
        // The failure is remembered briefly: the next request does not ask again at once.
        assert_eq!(cache.labels("a", LONG).await, None);
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        assert!(cache.failing.load(Ordering::SeqCst));

        // A lookup that never finishes: the request goes on without labels after its budget.
        let stuck = gate();
        let cache = NamespaceCache::new(stuck.clone(), LONG, LONG);
        assert_eq!(cache.labels("x", Duration::from_millis(1)).await, None);
        // ... and the lookup it started is still the one later requests join.
        stuck.permits.add_permits(1);
        assert!(cache.labels("x", LONG).await.is_some());
        assert_eq!(stuck.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn zero_ttl_asks_every_time() {
        let source = gate();
        source.permits.add_permits(100);
        let cache = NamespaceCache::new(source.clone(), Duration::ZERO, LONG);
        cache.labels("a", LONG).await;
        cache.labels("a", LONG).await;
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }
}
