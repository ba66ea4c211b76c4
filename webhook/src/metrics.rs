//! The webhook's Prometheus metrics, registered once in the registry the caller passes in.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use crate::error::Result;

/// Handles to every webhook metric.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `fathom_webhook_decisions_total{result, mode, reason}`: answers sent. `result` is `allowed` or
    /// `denied`; `mode` is `policy`, `analysis`, `breakglass` or `none` (unreadable request); `reason`
    /// is the decisive one (see [`Reason`](crate::Reason)).
    pub decisions: IntCounterVec,
    /// `fathom_webhook_request_duration_seconds`: from request arrival to answer.
    pub latency: Histogram,
    /// `fathom_webhook_timeouts_total`: answers sent by failure policy because the deadline passed.
    pub timeouts: IntCounter,
    /// `fathom_webhook_enqueued_total`: analyses queued for images seen at admission.
    pub enqueued: IntCounter,
    /// `fathom_webhook_enqueues_limited_total`: unanalyzed images denied without queueing because their
    /// namespace reached `services.webhook.max_enqueues_per_minute`.
    pub enqueues_limited: IntCounter,
    /// `fathom_webhook_pinned_images_total`: image references rewritten to their checked digest by
    /// `POST /mutate` (`services.webhook.pin_digests`).
    pub pinned: IntCounter,
    /// `fathom_webhook_tag_cache_total{result="hit|miss"}`: tag → digest lookups.
    pub tag_cache: IntCounterVec,
    /// `fathom_webhook_cert_reloads_total{result="ok|error"}`: serving certificate rotations seen.
    pub cert_reloads: IntCounterVec,
}

/// `(result, mode, reason)` series created at zero, so dashboards and alert ratios see zeros instead of
/// absent series before the first admission: the common answers of each mode.
const PRIMED_DECISIONS: &[(&str, &str, &str)] = &[
    ("allowed", "policy", "go"),
    ("allowed", "policy", "warn"),
    ("denied", "policy", "stop"),
    ("denied", "policy", "unanalyzed"),
    ("denied", "policy", "queued"),
    ("allowed", "analysis", "analyzed"),
    ("denied", "analysis", "unanalyzed"),
    ("denied", "analysis", "queued"),
    ("allowed", "breakglass", "breakglass"),
    ("allowed", "policy", "stale"),
    ("denied", "policy", "stale"),
    ("allowed", "analysis", "stale"),
];

impl Metrics {
    fn prime(&self) {
        for labels in PRIMED_DECISIONS {
            self.decisions
                .with_label_values(&[labels.0, labels.1, labels.2]);
        }
        for result in ["hit", "miss"] {
            self.tag_cache.with_label_values(&[result]);
        }
        for result in ["ok", "error"] {
            self.cert_reloads.with_label_values(&[result]);
        }
    }

    /// Creates the metrics and registers them in `registry` (fails if they are registered there already).
    pub fn register(registry: &Registry) -> Result<Self> {
        let m = Metrics {
            decisions: IntCounterVec::new(
                Opts::new(
                    "fathom_webhook_decisions_total",
                    "Admission answers by result, mode and reason",
                ),
                &["result", "mode", "reason"],
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "fathom_webhook_request_duration_seconds",
                    "Time from an AdmissionReview's arrival to its answer",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            )?,
            timeouts: IntCounter::new(
                "fathom_webhook_timeouts_total",
                "Admission answers sent by failure policy because the time budget ran out",
            )?,
            enqueued: IntCounter::new(
                "fathom_webhook_enqueued_total",
                "Image analyses queued by the admission webhook",
            )?,
            enqueues_limited: IntCounter::new(
                "fathom_webhook_enqueues_limited_total",
                "Unanalyzed images denied unqueued: their namespace reached max_enqueues_per_minute",
            )?,
            pinned: IntCounter::new(
                "fathom_webhook_pinned_images_total",
                "Image references pinned to their checked digest by the mutating webhook",
            )?,
            tag_cache: IntCounterVec::new(
                Opts::new(
                    "fathom_webhook_tag_cache_total",
                    "Tag to digest lookups by cache result",
                ),
                &["result"],
            )?,
            cert_reloads: IntCounterVec::new(
                Opts::new(
                    "fathom_webhook_cert_reloads_total",
                    "Serving certificate changes picked up (ok) or refused (error)",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(m.decisions.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.timeouts.clone()))?;
        registry.register(Box::new(m.enqueued.clone()))?;
        registry.register(Box::new(m.enqueues_limited.clone()))?;
        registry.register(Box::new(m.pinned.clone()))?;
        registry.register(Box::new(m.tag_cache.clone()))?;
        registry.register(Box::new(m.cert_reloads.clone()))?;
        m.prime();
        Ok(m)
    }
}
