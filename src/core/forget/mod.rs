//! The store forgets on purpose: deleting an image ([`delete`]), sweeping layers no image uses any more
//! ([`sweep`]) and the retention rules ([`retention`]). The core runs the sweep and the rules on their
//! intervals ([`run`]); core replicas take turns through the queue's maintenance turns, so about one
//! core does each per interval.

pub mod delete;
pub mod metrics;
pub mod retention;
pub mod sweep;

use std::time::{Duration, Instant};

use fathom_catalog::CatalogConfig;
use fathom_queue::Queue;
use sqlx::PgPool;
use tokio::sync::watch;

use metrics::{Cause, ForgetMetrics};

/// A replica takes its turn when the last run is at least this share of the interval old (ticks drift).
const TURN_SLACK: f64 = 0.8;

async fn my_turn(queue: &Queue, task: &str, every: Duration) -> bool {
    match queue.take_turn(task, every.mul_f64(TURN_SLACK)).await {
        Ok(mine) => mine,
        Err(e) => {
            tracing::warn!(error = %e, task, "taking a maintenance turn failed");
            false
        }
    }
}

/// Runs the layer sweep every `services.catalog.layer_sweep_interval` and the retention rules every
/// `services.catalog.retention.interval` (when a rule is on) until `shutdown` turns true, counting what
/// each pass deleted and how long it took in `metrics`. Errors are logged, counted and the task tried
/// again next interval.
pub async fn run(
    pool: PgPool,
    queue: Queue,
    config: CatalogConfig,
    inventory_ttl: Duration,
    metrics: ForgetMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let sweep_every =
        (!config.layer_sweep_interval.is_zero()).then_some(config.layer_sweep_interval);
    let retain_every = config
        .retention
        .enabled()
        .then_some(config.retention.interval);
    let Some(tick) = [sweep_every, retain_every].into_iter().flatten().min() else {
        return;
    };
    let (mut since_sweep, mut since_retain) = (Duration::ZERO, Duration::ZERO);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        since_sweep += tick;
        since_retain += tick;
        if let Some(every) = retain_every.filter(|e| since_retain >= *e) {
            since_retain = Duration::ZERO;
            if my_turn(&queue, "core-retention", every).await {
                let started = Instant::now();
                let pass = retention::prune(&pool, &config.retention, inventory_ttl, false).await;
                metrics.pass("retention", started.elapsed(), pass.is_err());
                match pass {
                    Ok(report) => {
                        for d in &report.deleted {
                            metrics.deleted(Cause::of_rule(d.rule));
                            tracing::info!(digest = %d.digest, rule = d.rule, "retention deleted the image: {}", d.why);
                        }
                        if !report.kept.is_empty() {
                            tracing::info!(
                                count = report.kept.len(),
                                "retention kept images a job, a watched tag or a running workload still uses"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "applying the retention rules failed"),
                }
            }
        }
        if let Some(every) = sweep_every.filter(|e| since_sweep >= *e) {
            since_sweep = Duration::ZERO;
            if my_turn(&queue, "core-layer-sweep", every).await {
                let started = Instant::now();
                let pass = sweep::sweep(&pool, config.layer_sweep_grace, sweep::BATCH).await;
                metrics.pass("layer_sweep", started.elapsed(), pass.is_err());
                match pass {
                    Ok(report) if !report.deleted.is_empty() || report.parts_deleted > 0 => {
                        metrics.swept(report.deleted.len());
                        tracing::info!(
                            examined = report.examined,
                            deleted = report.deleted.len(),
                            package_parts_deleted = report.parts_deleted,
                            "swept layers and package parts no image uses"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "sweeping unused layers failed"),
                }
            }
        }
    }
}
