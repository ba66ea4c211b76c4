//! The policy engine's metrics: checks answered by final action, their duration, evaluation cache hits.

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Registered once, beside the API's (or the standalone engine's) other metrics.
#[derive(Clone)]
pub struct PolicyMetrics {
    /// Checks answered, by final action (`stop`, `warn`, `go`), cached or not.
    pub evaluations: IntCounterVec,
    /// Time to answer a check (facts, evaluation, history), by `cache` = hit | miss.
    pub duration: HistogramVec,
    /// Checks answered from the evaluation cache.
    pub cache_hits: IntCounter,
    /// Checks that evaluated (cache off, cold, or expired).
    pub cache_misses: IntCounter,
}

impl PolicyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<PolicyMetrics> {
        let evaluations = IntCounterVec::new(
            Opts::new(
                "fathom_policy_evaluations_total",
                "Policy checks answered, by final action (stop, warn, go), from the cache or not",
            ),
            &["final_action"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fathom_policy_evaluation_duration_seconds",
                "Time to answer a policy check, by whether the evaluation cache answered",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            &["cache"],
        )?;
        let cache_hits = IntCounter::new(
            "fathom_policy_cache_hits_total",
            "Policy checks answered from the evaluation cache",
        )?;
        let cache_misses = IntCounter::new(
            "fathom_policy_cache_misses_total",
            "Policy checks that evaluated the bundle (cache off, cold or expired)",
        )?;
        registry.register(Box::new(evaluations.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(cache_hits.clone()))?;
        registry.register(Box::new(cache_misses.clone()))?;
        // Every series exists from the start: dashboards see zeros, not gaps.
        for action in ["stop", "warn", "go"] {
            evaluations.with_label_values(&[action]);
        }
        for cache in ["hit", "miss"] {
            duration.with_label_values(&[cache]);
        }
        Ok(PolicyMetrics {
            evaluations,
            duration,
            cache_hits,
            cache_misses,
        })
    }
}
