//! Queue maintenance run by the core: rescue leases of dead workers (workers do it too, but a fleet
//! scaled to zero has nobody left to) and prune finished jobs past their retention. Core replicas take
//! turns through the queue ([`Queue::take_turn`]), so the replicas together run each task about once
//! per interval.

use std::time::Duration;

use crate::core::config::ApiServiceConfig;
use fathom_queue::Queue;
use tokio::sync::watch;

use super::ApiMetrics;

/// Jobs rescued per round.
const RESCUE_BATCH: usize = 500;

/// A replica takes its turn when the last run is at least this share of the interval old: ticks on
/// different replicas drift, and a replica that ticks a little early should not skip a whole period.
const TURN_SLACK: f64 = 0.8;

/// Rescues every expired lease, a batch at a time: one replica's turn stands for the whole fleet's
/// interval, so a mass expiry (a node lost with its workers) is not drained one batch per interval.
async fn rescue_all(queue: &Queue, metrics: &ApiMetrics) {
    let mut total = 0;
    loop {
        match queue.rescue_expired(RESCUE_BATCH).await {
            Ok(rescued) => {
                total += rescued.len();
                metrics.rescued.inc_by(rescued.len() as u64);
                if rescued.len() < RESCUE_BATCH {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "rescuing expired leases failed");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(count = total, "rescued jobs with expired leases");
    }
}

/// Whether this replica runs `task` this tick; a failed check skips the tick (the next one retries).
async fn my_turn(queue: &Queue, task: &str, every: Duration) -> bool {
    match queue.take_turn(task, every.mul_f64(TURN_SLACK)).await {
        Ok(mine) => mine,
        Err(e) => {
            tracing::warn!(error = %e, task, "taking a maintenance turn failed");
            false
        }
    }
}

/// Runs until `shutdown` turns true. Errors are logged and retried next round: maintenance must never
/// take the API down with it.
pub async fn run(
    queue: Queue,
    config: ApiServiceConfig,
    metrics: ApiMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let rescue = (!config.rescue_interval.is_zero()).then_some(config.rescue_interval);
    let prune = (!config.prune_interval.is_zero()).then_some(config.prune_interval);
    if rescue.is_none() && prune.is_none() {
        return;
    }
    let tick = rescue
        .unwrap_or(Duration::MAX)
        .min(prune.unwrap_or(Duration::MAX));
    let mut since_prune = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        since_prune += tick;
        if let Some(every) = rescue {
            if my_turn(&queue, "core-rescue", every).await {
                rescue_all(&queue, &metrics).await;
            }
        }
        if let Some(every) = prune {
            if since_prune >= every {
                since_prune = Duration::ZERO;
                if my_turn(&queue, "core-prune", every).await {
                    match queue.prune(config.job_retention).await {
                        Ok(0) => {}
                        Ok(n) => {
                            metrics.pruned.inc_by(n);
                            tracing::info!(count = n, "pruned finished jobs");
                        }
                        Err(e) => tracing::warn!(error = %e, "pruning finished jobs failed"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use fathom_queue::{NewJob, Queue, QueueConfig};
    use fathom_testkit::pg::TestDb;

    use super::{rescue_all, ApiMetrics, RESCUE_BATCH};

    #[tokio::test]
    async fn one_turn_rescues_every_expired_lease_not_one_batch() {
        let db = TestDb::create(&[&fathom_queue::migrator()]).await.unwrap();
        let queue = Queue::connect(db.url(), QueueConfig::default()).unwrap();
        let jobs = 2 * RESCUE_BATCH + 7;
        let new: Vec<NewJob> = (0..jobs)
            .map(|i| NewJob::new("analyze", serde_json::json!({ "n": i })))
            .collect();
        queue.enqueue_many(&new).await.unwrap();
        let mut claimed = 0;
        while claimed < jobs {
            claimed += queue
                .claim("analyze", 500, "lost-node", Duration::from_millis(1))
                .await
                .unwrap()
                .len();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let metrics = ApiMetrics::new().unwrap();
        rescue_all(&queue, &metrics).await;
        assert_eq!(metrics.rescued.get(), jobs as u64);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.running, stats.queued()), (0, jobs as i64));
    }
}
