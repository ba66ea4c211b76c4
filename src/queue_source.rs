//! The queue as the autoscaler's [`StatsSource`]: the one place the two crates meet.

use std::time::Duration;

use fathom_autoscaler::{BusyMap, QueueSnapshot, StatsSource};
use fathom_queue::Queue;

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
        Ok(QueueSnapshot {
            queued: u64::try_from(stats.ready).unwrap_or(0),
            running: u64::try_from(stats.running).unwrap_or(0),
            oldest_queued_age: (stats.ready > 0)
                .then(|| Duration::from_secs_f64(stats.oldest_ready_age_s.max(0.0))),
        })
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
