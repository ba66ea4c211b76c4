//! The notifications' metrics, on the core's `/metrics`.

use prometheus::{
    Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::deliveries::Owed;

/// Every type fathom writes (the events-written counter starts at zero for each).
pub const EVENT_TYPES: &[&str] = &[
    crate::types::IMAGE_ANALYZED,
    crate::types::IMAGE_ANALYSIS_FAILED,
    crate::types::TAG_MOVED,
    crate::types::IMAGE_VULNERABILITIES_CHANGED,
    crate::types::VULNERABILITY_NEW,
    crate::types::IMAGE_POLICY_CHANGED,
    crate::types::FEED_SYNCED,
    crate::types::IMAGE_DELETED,
];

/// Outcomes of the deliveries counter.
pub const OUTCOMES: &[&str] = &["delivered", "failed", "dead"];

/// The dispatcher's metrics. Counters move on the dispatching core; the gauges are read from the
/// database by every core, so any replica's scrape shows what is owed.
#[derive(Clone)]
pub struct NotifyMetrics {
    events: IntCounterVec,
    deliveries: IntCounterVec,
    latency: HistogramVec,
    pending: IntGaugeVec,
    dead: IntGaugeVec,
    oldest: GaugeVec,
    unfanned: IntGauge,
    unfanned_oldest: Gauge,
    dead_all: IntGauge,
    backlog: Gauge,
    leader: IntGauge,
}

impl NotifyMetrics {
    /// Registers on `registry`, with every endpoint's series (and every event type's) at zero.
    pub fn register(
        registry: &Registry,
        endpoints: &[String],
    ) -> prometheus::Result<NotifyMetrics> {
        let m = NotifyMetrics {
            events: IntCounterVec::new(
                Opts::new("fathom_notify_events_total", "Events written to the outbox (counted when fanned out), by type"),
                &["type"],
            )?,
            deliveries: IntCounterVec::new(
                Opts::new(
                    "fathom_notify_deliveries_total",
                    "Delivery attempts by endpoint and outcome (delivered: 2xx; failed: will be retried; dead: retry window passed)",
                ),
                &["endpoint", "outcome"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "fathom_notify_delivery_latency_seconds",
                    "From the event's write to its 2xx, by endpoint",
                )
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0]),
                &["endpoint"],
            )?,
            pending: IntGaugeVec::new(
                Opts::new("fathom_notify_pending_deliveries", "Deliveries owed (pending), by endpoint"),
                &["endpoint"],
            )?,
            dead: IntGaugeVec::new(
                Opts::new("fathom_notify_dead_deliveries", "Dead deliveries kept for retry, by endpoint"),
                &["endpoint"],
            )?,
            oldest: GaugeVec::new(
                Opts::new(
                    "fathom_notify_oldest_pending_seconds",
                    "Age of the oldest pending delivery's event, by endpoint (0 when none)",
                ),
                &["endpoint"],
            )?,
            unfanned: IntGauge::new(
                "fathom_notify_outbox_depth",
                "Events in the outbox not yet fanned out to endpoints",
            )?,
            unfanned_oldest: Gauge::new(
                "fathom_notify_outbox_oldest_seconds",
                "Age of the oldest event not yet fanned out (0 when none)",
            )?,
            dead_all: IntGauge::new(
                "fathom_notify_deliveries_dead",
                "Dead deliveries kept for retry, all endpoints (the alert's series: it exists with no endpoint)",
            )?,
            backlog: Gauge::new(
                "fathom_notify_backlog_seconds",
                "Age of the oldest owed event: not yet fanned out, or pending to any endpoint (0 when none)",
            )?,
            leader: IntGauge::new(
                "fathom_notify_dispatcher_leader",
                "1 on the core that dispatches notifications",
            )?,
        };
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.deliveries.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.pending.clone()))?;
        registry.register(Box::new(m.dead.clone()))?;
        registry.register(Box::new(m.oldest.clone()))?;
        registry.register(Box::new(m.unfanned.clone()))?;
        registry.register(Box::new(m.unfanned_oldest.clone()))?;
        registry.register(Box::new(m.dead_all.clone()))?;
        registry.register(Box::new(m.backlog.clone()))?;
        registry.register(Box::new(m.leader.clone()))?;
        for t in EVENT_TYPES {
            m.events.with_label_values(&[t]);
        }
        for e in endpoints {
            for o in OUTCOMES {
                m.deliveries.with_label_values(&[e.as_str(), o]);
            }
            m.latency.with_label_values(&[e]);
            m.pending.with_label_values(&[e]);
            m.dead.with_label_values(&[e]);
            m.oldest.with_label_values(&[e]);
        }
        Ok(m)
    }

    /// Metrics on a registry of their own (tests, `fathom notifications test`).
    pub fn unregistered() -> prometheus::Result<NotifyMetrics> {
        Self::register(&Registry::new(), &[])
    }

    /// Events fanned out, one type per event.
    pub fn written(&self, types: &[String]) {
        for t in types {
            self.events.with_label_values(&[t]).inc();
        }
    }

    /// One delivery attempt's outcome.
    pub fn outcome(&self, endpoint: &str, outcome: &str) {
        self.deliveries
            .with_label_values(&[endpoint, outcome])
            .inc();
    }

    /// Write → 2xx latencies of deliveries to `endpoint`.
    pub fn latencies(&self, endpoint: &str, secs: &[f64]) {
        let h = self.latency.with_label_values(&[endpoint]);
        for s in secs {
            h.observe(*s);
        }
    }

    /// Sets the owed gauges; endpoints not in `owed` (nothing owed) read zero.
    pub fn owed(
        &self,
        endpoints: &[String],
        owed: &[(String, Owed)],
        unfanned: i64,
        unfanned_oldest: f64,
    ) {
        let zero = Owed::default();
        let names = endpoints.iter().chain(owed.iter().map(|(n, _)| n));
        for name in names {
            let o = owed
                .iter()
                .find(|(n, _)| n == name)
                .map_or(&zero, |(_, o)| o);
            self.pending.with_label_values(&[name]).set(o.pending);
            self.dead.with_label_values(&[name]).set(o.dead);
            self.oldest
                .with_label_values(&[name])
                .set(o.oldest_pending_secs);
        }
        self.unfanned.set(unfanned);
        self.unfanned_oldest.set(unfanned_oldest);
        self.dead_all.set(owed.iter().map(|(_, o)| o.dead).sum());
        let oldest_pending = owed
            .iter()
            .map(|(_, o)| o.oldest_pending_secs)
            .fold(0.0, f64::max);
        self.backlog.set(oldest_pending.max(unfanned_oldest));
    }

    /// Whether this core dispatches.
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }
}
