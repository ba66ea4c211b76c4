//! The autoscaler's Prometheus metrics, registered once into a registry the caller owns.

use std::time::Instant;

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::decision::{Decision, Override, QueueSnapshot, Reason, ScaleOn};
use crate::error::{Error, Result};

/// Every autoscaler metric. Cheap to clone (handles into the registry).
#[derive(Clone)]
pub struct Metrics {
    queue_jobs: IntGaugeVec,
    oldest_queued_age: Gauge,
    desired: IntGauge,
    current: IntGauge,
    scale_events: IntCounterVec,
    override_mode: IntGaugeVec,
    override_replicas: IntGauge,
    decision_errors: IntCounterVec,
    conflict: IntGauge,
    leader: IntGauge,
    tick_duration: Histogram,
    work_bytes: IntGaugeVec,
    throughput: Gauge,
    throughput_learned: IntGauge,
    desired_by_policy: IntGaugeVec,
}

const OVERRIDE_MODES: [&str; 3] = ["none", "pinned", "paused"];
/// `state` of `fathom_autoscaler_queue_jobs`, as [`Metrics::observe_queue`] sets it.
const QUEUE_STATES: [&str; 2] = ["queued", "running"];
/// `direction` of `fathom_autoscaler_scale_events_total`: only written changes are counted, so never
/// `none`.
const SCALE_DIRECTIONS: [&str; 2] = ["up", "down"];

impl Metrics {
    /// Creates the metrics and registers them; fails if the names are already registered there.
    pub fn register(registry: &Registry) -> Result<Metrics> {
        let m = Metrics {
            queue_jobs: IntGaugeVec::new(
                Opts::new("fathom_autoscaler_queue_jobs", "Jobs in the queue by state, as last seen"),
                &["state"],
            )?,
            oldest_queued_age: Gauge::new(
                "fathom_autoscaler_oldest_queued_age_seconds",
                "Age of the oldest queued job (0 when none is queued)",
            )?,
            desired: IntGauge::new("fathom_autoscaler_desired_replicas", "Replicas the last decision asked for")?,
            current: IntGauge::new("fathom_autoscaler_current_replicas", "Replicas the target was set to")?,
            scale_events: IntCounterVec::new(
                Opts::new("fathom_autoscaler_scale_events_total", "Replica changes written, by direction and reason"),
                &["direction", "reason"],
            )?,
            override_mode: IntGaugeVec::new(
                Opts::new("fathom_autoscaler_override", "1 for the override mode in force (none, pinned, paused)"),
                &["mode"],
            )?,
            override_replicas: IntGauge::new(
                "fathom_autoscaler_override_replicas",
                "Replicas pinned by the override (0 when not pinned)",
            )?,
            decision_errors: IntCounterVec::new(
                Opts::new("fathom_autoscaler_decision_errors_total", "Control-loop rounds that failed, by error kind"),
                &["kind"],
            )?,
            conflict: IntGauge::new(
                "fathom_autoscaler_conflicting_autoscaler",
                "1 while an HPA or KEDA ScaledObject targets the same workload (nothing is written)",
            )?,
            leader: IntGauge::new("fathom_autoscaler_leader", "1 while this process holds the leader Lease")?,
            tick_duration: Histogram::with_opts(
                HistogramOpts::new("fathom_autoscaler_tick_duration_seconds", "Duration of one control-loop round")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            )?,
            work_bytes: IntGaugeVec::new(
                Opts::new(
                    "fathom_autoscaler_queue_work_bytes",
                    "Estimated uncached compressed bytes of the jobs by state (jobs without an estimate at the \
                     recent median), as last seen",
                ),
                &["state"],
            )?,
            throughput: Gauge::new(
                "fathom_autoscaler_throughput_bytes_per_second",
                "Bytes per second one busy replica analyzes: learned from finished jobs, or the configured floor",
            )?,
            throughput_learned: IntGauge::new(
                "fathom_autoscaler_throughput_learned",
                "1 once the throughput is learned from finished jobs, 0 while the configured floor stands in",
            )?,
            desired_by_policy: IntGaugeVec::new(
                Opts::new(
                    "fathom_autoscaler_policy_desired_replicas",
                    "Replicas each policy (scale_on jobs or work) would ask for, before min/max and rate limits",
                ),
                &["policy"],
            )?,
        };
        for c in m.collectors() {
            registry.register(c)?;
        }
        // Every series of a closed label set exists from the start, so dashboards and alerts see zeros
        // rather than gaps, and a scrape of an idle autoscaler names every family (the CI check that
        // dashboards use only exported names relies on it).
        for state in QUEUE_STATES {
            m.queue_jobs.with_label_values(&[state]).set(0);
            m.work_bytes.with_label_values(&[state]).set(0);
        }
        for policy in ScaleOn::ALL {
            m.desired_by_policy
                .with_label_values(&[policy.as_str()])
                .set(0);
        }
        for direction in SCALE_DIRECTIONS {
            for reason in Reason::ALL {
                m.scale_events
                    .with_label_values(&[direction, reason.as_str()]);
            }
        }
        for kind in Error::KINDS {
            m.decision_errors.with_label_values(&[kind]);
        }
        m.set_override(Override::None);
        Ok(m)
    }

    /// Every family, for registration (and the test that each is exported before first use).
    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.queue_jobs.clone()),
            Box::new(self.oldest_queued_age.clone()),
            Box::new(self.desired.clone()),
            Box::new(self.current.clone()),
            Box::new(self.scale_events.clone()),
            Box::new(self.override_mode.clone()),
            Box::new(self.override_replicas.clone()),
            Box::new(self.decision_errors.clone()),
            Box::new(self.conflict.clone()),
            Box::new(self.leader.clone()),
            Box::new(self.tick_duration.clone()),
            Box::new(self.work_bytes.clone()),
            Box::new(self.throughput.clone()),
            Box::new(self.throughput_learned.clone()),
            Box::new(self.desired_by_policy.clone()),
        ]
    }

    pub(crate) fn observe_queue(&self, s: &QueueSnapshot) {
        let [queued, running] = QUEUE_STATES;
        self.queue_jobs
            .with_label_values(&[queued])
            .set(clamp(s.queued));
        self.queue_jobs
            .with_label_values(&[running])
            .set(clamp(s.running));
        self.oldest_queued_age
            .set(s.oldest_queued_age.map_or(0.0, |a| a.as_secs_f64()));
        self.work_bytes
            .with_label_values(&[queued])
            .set(clamp(s.work.queued_bytes));
        self.work_bytes
            .with_label_values(&[running])
            .set(clamp(s.work.running_bytes));
    }

    pub(crate) fn observe_decision(&self, d: &Decision) {
        self.desired.set(i64::from(d.desired));
        self.current.set(i64::from(d.current));
        let f = &d.figures;
        self.throughput.set(f.throughput_bytes_per_s);
        self.throughput_learned.set(i64::from(f.throughput_learned));
        for policy in ScaleOn::ALL {
            self.desired_by_policy
                .with_label_values(&[policy.as_str()])
                .set(i64::from(f.raw(policy)));
        }
    }

    pub(crate) fn scaled(&self, d: &Decision) {
        self.scale_events
            .with_label_values(&[d.direction(), d.reason.as_str()])
            .inc();
        self.current.set(i64::from(d.desired));
    }

    pub(crate) fn set_override(&self, ov: Override) {
        let (mode, n) = match ov {
            Override::None => ("none", 0),
            Override::Pinned(n) => ("pinned", i64::from(n)),
            Override::Paused => ("paused", 0),
        };
        for m in OVERRIDE_MODES {
            self.override_mode
                .with_label_values(&[m])
                .set(i64::from(m == mode));
        }
        self.override_replicas.set(n);
    }

    pub(crate) fn error(&self, kind: &str) {
        self.decision_errors.with_label_values(&[kind]).inc();
    }

    pub(crate) fn set_conflict(&self, on: bool) {
        self.conflict.set(i64::from(on));
    }

    pub(crate) fn set_leader(&self, on: bool) {
        self.leader.set(i64::from(on));
    }

    /// Records the round's duration when dropped, whichever way the round ends.
    pub(crate) fn tick_timer(&self) -> TickTimer {
        TickTimer {
            histogram: self.tick_duration.clone(),
            start: Instant::now(),
        }
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Drop guard recording one round's duration.
pub(crate) struct TickTimer {
    histogram: Histogram,
    start: Instant,
}

impl Drop for TickTimer {
    fn drop(&mut self) {
        self.histogram.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn every_family_is_exported_before_first_use() {
        // A labelled family without children is left out of the exposition; register() must create them.
        let registry = prometheus::Registry::new();
        let m = Metrics::register(&registry).unwrap();
        let families: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        for collector in m.collectors() {
            for desc in collector.desc() {
                assert!(
                    families.contains(&desc.fq_name),
                    "{} missing from an idle scrape: {families:?}",
                    desc.fq_name
                );
            }
        }
    }
}
