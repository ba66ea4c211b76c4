//! The queue's counts as gauges on the core's `/metrics` (`services.api.queue_stats_interval`): the queue
//! panels and the backlog alert read these, so they work in every deployment shape, the manual-replicas
//! one (no autoscaler, whose `fathom_autoscaler_queue_*` gauges would be the only other source) included.
//!
//! Every core replica exports the same numbers (they are the database's), so dashboards take `max`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fathom_queue::{Queue, QueueStats};
use prometheus::core::Collector;
use prometheus::{Gauge, IntGaugeVec, Opts, Registry};
use tokio::sync::watch;

/// `state` of `fathom_queue_jobs`: claimable now, waiting for a retry time, leased by a worker.
const STATES: [&str; 3] = ["ready", "scheduled", "running"];

/// Reasons a job can die with beside the analyzer's: the queue's own (a lease that expired on the last
/// attempt, a failure recorded without a reason).
const QUEUE_DEATH_REASONS: [&str; 2] = ["lease_expired", "unknown"];

/// Handles on the queue gauges.
#[derive(Clone)]
pub struct QueueGauges {
    jobs: IntGaugeVec,
    oldest_ready_age: Gauge,
    dead: IntGaugeVec,
    /// Reasons whose series always exist (at 0 when no job died so).
    known: BTreeSet<String>,
}

impl QueueGauges {
    /// Registers `fathom_queue_jobs{state}`, `fathom_queue_oldest_ready_age_seconds` and
    /// `fathom_queue_dead_jobs{reason}`, every known series at 0.
    pub fn register(registry: &Registry) -> prometheus::Result<QueueGauges> {
        let jobs = IntGaugeVec::new(
            Opts::new(
                "fathom_queue_jobs",
                "Jobs in the queue by state (ready, scheduled, running), as the core last read them",
            ),
            &["state"],
        )?;
        let oldest_ready_age = Gauge::new(
            "fathom_queue_oldest_ready_age_seconds",
            "Age of the oldest claimable job (0 when none), as the core last read it",
        )?;
        let dead = IntGaugeVec::new(
            Opts::new(
                "fathom_queue_dead_jobs",
                "Dead jobs (out of attempts, not yet pruned) by the reason of their last failure",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(oldest_ready_age.clone()))?;
        registry.register(Box::new(dead.clone()))?;
        let known: BTreeSet<String> = fathom_analyzer::AnalyzeError::REASONS
            .iter()
            .chain(fathom_worker::metrics::JOB_FAILURE_REASONS)
            .chain(&QUEUE_DEATH_REASONS)
            .map(|r| r.to_string())
            .collect();
        for state in STATES {
            jobs.with_label_values(&[state]);
        }
        for reason in &known {
            dead.with_label_values(&[reason]);
        }
        Ok(QueueGauges {
            jobs,
            oldest_ready_age,
            dead,
            known,
        })
    }

    /// Sets the gauges from one reading. A reason no longer dead drops back to 0 (known reasons) or
    /// its series goes (others), so a requeued batch does not linger on the dashboard.
    fn set(&self, stats: &QueueStats, dead_by_reason: &BTreeMap<String, i64>) {
        for (state, n) in STATES
            .into_iter()
            .zip([stats.ready, stats.scheduled, stats.running])
        {
            self.jobs.with_label_values(&[state]).set(n);
        }
        self.oldest_ready_age.set(stats.oldest_ready_age_s);
        let shown: Vec<String> = self
            .dead
            .collect()
            .iter()
            .flat_map(|family| family.get_metric().iter())
            .flat_map(|m| m.get_label().iter().map(|l| l.value().to_string()))
            .collect();
        for reason in shown {
            if !dead_by_reason.contains_key(&reason) {
                if self.known.contains(&reason) {
                    self.dead.with_label_values(&[&reason]).set(0);
                } else {
                    let _ = self.dead.remove_label_values(&[&reason]);
                }
            }
        }
        for (reason, n) in dead_by_reason {
            self.dead.with_label_values(&[reason]).set(*n);
        }
    }

    /// Reads the queue every `every` until `shutdown` turns true (at once first, so a new core reports
    /// real numbers from its first scrape). A failed reading keeps the last values and is retried next
    /// turn: the core's own database trouble shows in its readiness and the workers' `database_up`.
    pub async fn run(self, queue: Queue, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let read = async {
                Ok::<_, fathom_queue::Error>((queue.stats().await?, queue.dead_by_kind().await?))
            };
            match read.await {
                Ok((stats, dead)) => self.set(&stats, &dead),
                Err(e) => tracing::warn!(error = %e, "reading the queue counts for metrics failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fathom_queue::QueueStats;

    use super::QueueGauges;

    fn render(registry: &prometheus::Registry) -> String {
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.gather(), &mut text)
            .unwrap();
        text
    }

    #[test]
    fn known_series_start_at_zero_and_dead_reasons_come_and_go() {
        let registry = prometheus::Registry::new();
        let gauges = QueueGauges::register(&registry).unwrap();
        let idle = render(&registry);
        for series in [
            "fathom_queue_jobs{state=\"ready\"} 0",
            "fathom_queue_jobs{state=\"scheduled\"} 0",
            "fathom_queue_jobs{state=\"running\"} 0",
            "fathom_queue_oldest_ready_age_seconds 0",
            "fathom_queue_dead_jobs{reason=\"manifest_unknown\"} 0",
            "fathom_queue_dead_jobs{reason=\"lease_expired\"} 0",
        ] {
            assert!(idle.contains(series), "{series} missing:\n{idle}");
        }
        let stats = QueueStats {
            ready: 4,
            scheduled: 1,
            running: 2,
            oldest_ready_age_s: 12.5,
            ..Default::default()
        };
        let dead = BTreeMap::from([("timeout".to_string(), 3), ("odd_new_kind".to_string(), 1)]);
        gauges.set(&stats, &dead);
        let busy = render(&registry);
        for series in [
            "fathom_queue_jobs{state=\"ready\"} 4",
            "fathom_queue_jobs{state=\"running\"} 2",
            "fathom_queue_oldest_ready_age_seconds 12.5",
            "fathom_queue_dead_jobs{reason=\"timeout\"} 3",
            "fathom_queue_dead_jobs{reason=\"odd_new_kind\"} 1",
        ] {
            assert!(busy.contains(series), "{series} missing:\n{busy}");
        }
        // Requeued: the known reason reads 0 again, the unknown one is gone.
        gauges.set(&QueueStats::default(), &BTreeMap::new());
        let after = render(&registry);
        assert!(
            after.contains("fathom_queue_dead_jobs{reason=\"timeout\"} 0"),
            "{after}"
        );
        assert!(!after.contains("odd_new_kind"), "{after}");
    }
}
