//! The worker's Prometheus metrics, registered once in their own registry and served at `/metrics`.
//!
//! Names follow Prometheus conventions: `fathom_` prefix, base units in the name, `_total` counters.
//! Failures carry a low-cardinality `reason` label ([`fathom_analyzer::AnalyzeError::reason`] or `store`,
//! `lease_lost`, ...), so dashboards can split them by kind.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every metric the worker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `fathom_worker_jobs_claimed_total`: jobs claimed from the queue.
    pub jobs_claimed: IntCounter,
    /// `fathom_worker_claims_total{outcome}`: claim statements, by outcome: `jobs` (got some) or `empty`
    /// (wasted: someone else took the work, or there was none).
    pub claims: IntCounterVec,
    /// `fathom_worker_wakeups_total{reason}`: why the idle job loop woke: `notified` (won the draw for new
    /// jobs), `chained` (work a full batch left behind), `forwarded` (a busy winner's share),
    /// `reconnected` (the listener (re)connected) or `poll` (its polling turn).
    pub wakeups: IntCounterVec,
    /// `fathom_worker_jobs_completed_total{outcome}`: jobs completed (`analyzed`, or `reused` when the
    /// manifest was already analyzed with the same catalogers).
    pub jobs_completed: IntCounterVec,
    /// `fathom_worker_jobs_failed_total{outcome,reason}`: failed attempts; outcome `retry`, `failed`
    /// (permanent) or `dead` (out of attempts).
    pub jobs_failed: IntCounterVec,
    /// `fathom_worker_jobs_abandoned_total{reason}`: jobs this worker stopped working on without an
    /// outcome: `lease_lost` (another worker owns it now) or `released` (put back at shutdown).
    pub jobs_abandoned: IntCounterVec,
    /// `fathom_worker_analysis_duration_seconds`: claim → result stored.
    pub analysis_duration: Histogram,
    /// `fathom_worker_queue_wait_seconds`: enqueue → claim.
    pub queue_wait: Histogram,
    /// `fathom_worker_layer_cache_hits_total`: layers answered by the layer cache.
    pub layer_cache_hits: IntCounter,
    /// `fathom_worker_layer_cache_misses_total`: layers fetched and analyzed.
    pub layer_cache_misses: IntCounter,
    /// `fathom_worker_fetched_bytes_total`: compressed layer bytes downloaded.
    pub fetched_bytes: IntCounter,
    /// `fathom_worker_inflated_bytes_total`: uncompressed layer bytes walked.
    pub inflated_bytes: IntCounter,
    /// `fathom_worker_jobs_in_flight`: jobs being worked on now.
    pub jobs_in_flight: IntGauge,
    /// `fathom_worker_job_slots`: configured concurrency.
    pub job_slots: IntGauge,
    /// `fathom_worker_rescued_jobs_total`: expired leases this worker put back in the queue.
    pub rescued_jobs: IntCounter,
    /// `fathom_worker_database_errors_total{operation}`: failed queue/store round trips.
    pub database_errors: IntCounterVec,
    /// `fathom_worker_database_up`: 1 when the last round trip to Postgres succeeded.
    pub database_up: Gauge,
    /// `fathom_worker_draining`: 1 once shutdown began.
    pub draining: IntGauge,
    /// `fathom_worker_registry_breakers{state}`: registry hosts per breaker state (`closed`, `open`,
    /// `half_open`), as this worker last read the fleet's shared breakers.
    pub registry_breakers: IntGaugeVec,
    /// `fathom_worker_registry_breaker{host,state}`: 1 for each known host's current breaker state, 0 for
    /// the others. Hosts appear once they first fail, so it is not part of the idle scrape.
    pub registry_breaker: IntGaugeVec,
    /// `fathom_worker_jobs_deferred_total{reason}`: jobs given back without charging an attempt:
    /// `breaker_open` (their registry's breaker was open), `rate_limited` (the registry asked to wait).
    pub jobs_deferred: IntCounterVec,
    /// `fathom_worker_registry_slot_waits_total`: jobs that waited for a per-host concurrency slot.
    pub registry_slot_waits: IntCounter,
    /// `fathom_worker_registry_requests_total{host,kind}`: requests this process sent to each registry,
    /// by kind (`manifest`, `blob`, `token`), so an operator sees what the fleet costs each registry.
    /// Copied from the engine's process-wide counts at scrape time (the engine has no metrics registry).
    pub registry_requests: IntCounterVec,
}

/// `reason` of `fathom_worker_jobs_deferred_total`.
pub const DEFERRED_REASONS: [&str; 2] = ["breaker_open", "rate_limited"];

/// Analysis durations span cached manifests (milliseconds) to multi-GiB images (minutes).
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Queue waits span an idle fleet (milliseconds) to a backlog of hours.
const WAIT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

/// `outcome` of `fathom_worker_claims_total`.
const CLAIM_OUTCOMES: [&str; 2] = ["jobs", "empty"];
/// `outcome` of `fathom_worker_jobs_completed_total`.
const COMPLETED_OUTCOMES: [&str; 2] = ["analyzed", "reused"];
/// `outcome` of `fathom_worker_jobs_failed_total`: put back for another attempt, failed for good, or
/// out of attempts.
const FAILED_OUTCOMES: [&str; 3] = ["retry", "failed", "dead"];
/// `reason` of `fathom_worker_jobs_failed_total` beside [`fathom_analyzer::AnalyzeError::REASONS`]: a job payload
/// the worker cannot read, and a results store that refused the write.
pub const JOB_FAILURE_REASONS: &[&str] = &["invalid_job", "store"];
/// `reason` of `fathom_worker_jobs_abandoned_total`.
const ABANDONED_REASONS: [&str; 2] = ["lease_lost", "released"];
/// `operation` of `fathom_worker_database_errors_total`: the round trips the job loop makes.
const DATABASE_OPERATIONS: [&str; 6] = ["claim", "heartbeat", "rescue", "release", "fail", "store"];

static METRICS: OnceLock<Metrics> = OnceLock::new();

impl Metrics {
    /// The process's metrics, registered on first use.
    pub fn get() -> &'static Metrics {
        METRICS.get_or_init(Metrics::build)
    }

    fn build() -> Metrics {
        let registry = Registry::new();
        let m = Metrics {
            jobs_claimed: IntCounter::new(
                "fathom_worker_jobs_claimed_total",
                "Jobs claimed from the queue.",
            )
            .unwrap_or_else(unreachable_metric),
            claims: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_claims_total",
                    "Claim statements, by outcome (jobs, empty).",
                ),
                &["outcome"],
            )
            .unwrap_or_else(unreachable_metric),
            wakeups: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_wakeups_total",
                    "Wake-ups of the idle job loop, by reason (notified, chained, forwarded, reconnected, poll).",
                ),
                &["reason"],
            )
            .unwrap_or_else(unreachable_metric),
            jobs_completed: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_jobs_completed_total",
                    "Jobs completed, by outcome.",
                ),
                &["outcome"],
            )
            .unwrap_or_else(unreachable_metric),
            jobs_failed: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_jobs_failed_total",
                    "Failed job attempts, by outcome (retry, failed, dead) and reason.",
                ),
                &["outcome", "reason"],
            )
            .unwrap_or_else(unreachable_metric),
            jobs_abandoned: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_jobs_abandoned_total",
                    "Jobs dropped without an outcome: lease lost or released at shutdown.",
                ),
                &["reason"],
            )
            .unwrap_or_else(unreachable_metric),
            analysis_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "fathom_worker_analysis_duration_seconds",
                    "Claim to stored result, per completed job.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
            )
            .unwrap_or_else(unreachable_metric),
            queue_wait: Histogram::with_opts(
                HistogramOpts::new(
                    "fathom_worker_queue_wait_seconds",
                    "Enqueue to claim, per claimed job.",
                )
                .buckets(WAIT_BUCKETS.to_vec()),
            )
            .unwrap_or_else(unreachable_metric),
            layer_cache_hits: IntCounter::new(
                "fathom_worker_layer_cache_hits_total",
                "Layers answered by the layer cache.",
            )
            .unwrap_or_else(unreachable_metric),
            layer_cache_misses: IntCounter::new(
                "fathom_worker_layer_cache_misses_total",
                "Layers fetched and analyzed.",
            )
            .unwrap_or_else(unreachable_metric),
            fetched_bytes: IntCounter::new(
                "fathom_worker_fetched_bytes_total",
                "Compressed layer bytes downloaded.",
            )
            .unwrap_or_else(unreachable_metric),
            inflated_bytes: IntCounter::new(
                "fathom_worker_inflated_bytes_total",
                "Uncompressed layer bytes walked.",
            )
            .unwrap_or_else(unreachable_metric),
            jobs_in_flight: IntGauge::new(
                "fathom_worker_jobs_in_flight",
                "Jobs being worked on now.",
            )
            .unwrap_or_else(unreachable_metric),
            job_slots: IntGauge::new("fathom_worker_job_slots", "Configured concurrency.")
                .unwrap_or_else(unreachable_metric),
            rescued_jobs: IntCounter::new(
                "fathom_worker_rescued_jobs_total",
                "Expired leases this worker put back in the queue.",
            )
            .unwrap_or_else(unreachable_metric),
            database_errors: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_database_errors_total",
                    "Failed round trips to Postgres, by operation.",
                ),
                &["operation"],
            )
            .unwrap_or_else(unreachable_metric),
            database_up: Gauge::new(
                "fathom_worker_database_up",
                "1 when the last round trip to Postgres succeeded.",
            )
            .unwrap_or_else(unreachable_metric),
            draining: IntGauge::new("fathom_worker_draining", "1 once shutdown began.")
                .unwrap_or_else(unreachable_metric),
            registry_breakers: IntGaugeVec::new(
                Opts::new(
                    "fathom_worker_registry_breakers",
                    "Registry hosts per breaker state (closed, open, half_open), fleet-wide as last read.",
                ),
                &["state"],
            )
            .unwrap_or_else(unreachable_metric),
            registry_breaker: IntGaugeVec::new(
                Opts::new(
                    "fathom_worker_registry_breaker",
                    "1 for a registry host's current breaker state, 0 for its other states.",
                ),
                &["host", "state"],
            )
            .unwrap_or_else(unreachable_metric),
            jobs_deferred: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_jobs_deferred_total",
                    "Jobs given back without charging an attempt, by reason (breaker_open, rate_limited).",
                ),
                &["reason"],
            )
            .unwrap_or_else(unreachable_metric),
            registry_slot_waits: IntCounter::new(
                "fathom_worker_registry_slot_waits_total",
                "Jobs that waited for a per-registry-host concurrency slot.",
            )
            .unwrap_or_else(unreachable_metric),
            registry_requests: IntCounterVec::new(
                Opts::new(
                    "fathom_worker_registry_requests_total",
                    "Requests sent to each registry host, by kind (manifest, blob, token).",
                ),
                &["host", "kind"],
            )
            .unwrap_or_else(unreachable_metric),
            registry,
        };
        for c in m.collectors().into_iter().chain(m.per_host_collectors()) {
            if let Err(err) = m.registry.register(c) {
                tracing::error!(%err, "metric registration failed");
            }
        }
        // Every series of a closed label set starts at zero, so a dashboard shows 0 instead of no data,
        // rate() sees the first increment, and a scrape of an idle worker names every family (the CI
        // check that dashboards use only exported names relies on it).
        for outcome in CLAIM_OUTCOMES {
            m.claims.with_label_values(&[outcome]);
        }
        for reason in fathom_queue::Wake::LABELS {
            m.wakeups.with_label_values(&[reason]);
        }
        for outcome in COMPLETED_OUTCOMES {
            m.jobs_completed.with_label_values(&[outcome]);
        }
        for outcome in FAILED_OUTCOMES {
            for reason in fathom_analyzer::AnalyzeError::REASONS
                .iter()
                .chain(JOB_FAILURE_REASONS)
            {
                m.jobs_failed.with_label_values(&[outcome, reason]);
            }
        }
        for reason in ABANDONED_REASONS {
            m.jobs_abandoned.with_label_values(&[reason]);
        }
        for operation in DATABASE_OPERATIONS {
            m.database_errors.with_label_values(&[operation]);
        }
        for state in crate::job::breaker::STATES {
            m.registry_breakers.with_label_values(&[state]);
        }
        for reason in DEFERRED_REASONS {
            m.jobs_deferred.with_label_values(&[reason]);
        }
        m
    }

    /// Families whose series appear per registry host, once one is known.
    fn per_host_collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.registry_breaker.clone()),
            Box::new(self.registry_requests.clone()),
        ]
    }

    /// Brings `fathom_worker_registry_requests_total` up to the engine's counts. Both only grow, so
    /// adding the difference keeps the counter exact without a second copy of the state.
    fn sync_registry_requests(&self) {
        for count in fathom_analyzer::source::requests::registry_requests() {
            let counter = self
                .registry_requests
                .with_label_values(&[&count.host, count.kind.as_str()]);
            let behind = count.count.saturating_sub(counter.get());
            if behind > 0 {
                counter.inc_by(behind);
            }
        }
    }

    /// Sets the breaker gauges from the fleet's breakers, `(host, state)` each.
    pub fn set_breakers(&self, breakers: &[(String, String)]) {
        self.registry_breaker.reset();
        for state in crate::job::breaker::STATES {
            let n = breakers.iter().filter(|(_, s)| s == state).count();
            self.registry_breakers
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (host, current) in breakers {
            for state in crate::job::breaker::STATES {
                self.registry_breaker
                    .with_label_values(&[host, state])
                    .set(i64::from(current == state));
            }
        }
    }

    /// Every family, for registration (and the test that each is exported before first use).
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.jobs_claimed.clone()),
            Box::new(self.claims.clone()),
            Box::new(self.wakeups.clone()),
            Box::new(self.jobs_completed.clone()),
            Box::new(self.jobs_failed.clone()),
            Box::new(self.jobs_abandoned.clone()),
            Box::new(self.analysis_duration.clone()),
            Box::new(self.queue_wait.clone()),
            Box::new(self.layer_cache_hits.clone()),
            Box::new(self.layer_cache_misses.clone()),
            Box::new(self.fetched_bytes.clone()),
            Box::new(self.inflated_bytes.clone()),
            Box::new(self.jobs_in_flight.clone()),
            Box::new(self.job_slots.clone()),
            Box::new(self.rescued_jobs.clone()),
            Box::new(self.database_errors.clone()),
            Box::new(self.database_up.clone()),
            Box::new(self.draining.clone()),
            Box::new(self.registry_breakers.clone()),
            Box::new(self.jobs_deferred.clone()),
            Box::new(self.registry_slot_waits.clone()),
        ]
    }

    /// The registry the metrics live in: the binary adds the process's own series (start time, build
    /// info) here, so one scrape carries them.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        self.sync_registry_requests();
        let mut out = Vec::new();
        if let Err(err) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(%err, "metric encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Metric construction fails only on invalid names or label sets, which are constants here.
fn unreachable_metric<T>(e: prometheus::Error) -> T {
    panic!("invalid metric definition: {e}")
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn every_family_is_exported_before_first_use() {
        // A labelled family without children is left out of the exposition; build() must create them.
        let fresh = Metrics::build();
        let text = fresh.render();
        for collector in fresh.collectors() {
            for desc in collector.desc() {
                assert!(
                    text.contains(&format!("\n# TYPE {} ", desc.fq_name)),
                    "{} missing from an idle scrape:\n{text}",
                    desc.fq_name
                );
            }
        }
    }

    #[test]
    fn renders_every_family_with_units_and_prefix() {
        let m = Metrics::get();
        m.jobs_failed
            .with_label_values(&["retry", "registry_unavailable"])
            .inc();
        m.queue_wait.observe(0.2);
        let text = m.render();
        for name in [
            "fathom_worker_jobs_claimed_total",
            "fathom_worker_claims_total{outcome=\"empty\"}",
            "fathom_worker_wakeups_total{reason=\"poll\"}",
            "fathom_worker_jobs_completed_total{outcome=\"reused\"} 0",
            "fathom_worker_jobs_failed_total{outcome=\"dead\",reason=\"digest_mismatch\"} 0",
            "fathom_worker_jobs_failed_total{outcome=\"failed\",reason=\"invalid_job\"} 0",
            "fathom_worker_database_errors_total{operation=\"heartbeat\"} 0",
            "fathom_worker_jobs_failed_total{outcome=\"retry\",reason=\"registry_unavailable\"} 1",
            "fathom_worker_analysis_duration_seconds_bucket",
            "fathom_worker_queue_wait_seconds_count 1",
            "fathom_worker_layer_cache_hits_total",
            "fathom_worker_fetched_bytes_total",
            "fathom_worker_jobs_in_flight",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
