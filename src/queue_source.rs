//! The queue as the autoscaler's [`StatsSource`]: the one place the two crates meet.

use std::time::Duration;

use fathom_autoscaler::decision::WorkSnapshot;
use fathom_autoscaler::{BusyMap, QueueSnapshot, StatsSource};
use fathom_queue::{Queue, QueueStats};

/// Reads queue depth and lease owners for the autoscaler.
#[derive(Debug, Clone)]
pub struct QueueSource {
    queue: Queue,
}

impl QueueSource {
    /// Wraps a queue handle (a pool of one or two connections is plenty).
    pub fn new(queue: Queue) -> Self {
        Self { queue }
    }
}

impl StatsSource for QueueSource {
    async fn snapshot(&self) -> fathom_autoscaler::Result<QueueSnapshot> {
        let stats = self
            .queue
            .stats()
            .await
            .map_err(fathom_autoscaler::Error::stats)?;
        Ok(snapshot_of(&stats))
    }

    async fn busy(&self) -> fathom_autoscaler::Result<BusyMap> {
        let owners = self
            .queue
            .lease_owners()
            .await
            .map_err(fathom_autoscaler::Error::stats)?;
        Ok(owners
            .into_iter()
            .map(|(owner, jobs)| (owner, u32::try_from(jobs).unwrap_or(u32::MAX)))
            .collect())
    }
}

/// The queue's stats in the autoscaler's units (negative counts, which the queue never returns, read as 0).
pub fn snapshot_of(stats: &QueueStats) -> QueueSnapshot {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    let ms = |s: f64| (s.max(0.0) * 1000.0) as u64;
    let (r, w, h) = (&stats.ready_work, &stats.running_work, &stats.recent);
    QueueSnapshot {
        queued: n(stats.ready),
        running: n(stats.running),
        oldest_queued_age: (stats.ready > 0)
            .then(|| Duration::from_secs_f64(stats.oldest_ready_age_s.max(0.0))),
        work: WorkSnapshot {
            queued_bytes: n(r.bytes),
            running_bytes: n(w.bytes),
            queued_cached: n(r.cached_jobs),
            running_cached: n(w.cached_jobs),
            queued_unknown: n(r.unknown_jobs),
            running_unknown: n(w.unknown_jobs),
            recent_cold_jobs: n(h.cold_jobs),
            recent_cold_bytes: n(h.cold_bytes),
            recent_cold_ms: ms(h.cold_seconds),
            recent_cached_jobs: n(h.cached_jobs),
            recent_cached_ms: ms(h.cached_seconds),
            recent_sum_kb: h.sum_kb.max(0.0) as u64,
            recent_sum_kb2: h.sum_kb2.max(0.0) as u64,
            recent_sum_kb_ms: h.sum_kb_ms.max(0.0) as u64,
        },
    }
}
