//! The core's Pod lister (`services.webhook.inventory_sync`): every `inventory_sync_interval` it lists
//! the cluster's Pods ([`KubePods`]) and records each running container's digest in the inventory, so
//! that workloads admitted before fathom was installed (or while its webhook was down, or admitted by
//! `failurePolicy: Ignore`) show up too, and so that what still runs stays seen past
//! `services.webhook.inventory_ttl` even when nothing re-admits it.
//!
//! One core per interval lists, fleet-wide: core replicas take turns through the queue's maintenance
//! turns ([`Queue::take_turn`], as the rescue and prune do), because a cluster-wide Pod list is one of
//! the API server's more expensive requests and N replicas listing would only write the same rows N
//! times. Should two replicas ever list at once (a turn's slack, a slow list overlapping the next
//! turn), nothing breaks: every write is an upsert keyed by (namespace, workload, container, digest)
//! that only moves `last_seen`, so a second writer changes nothing but the time.

use std::time::{Duration, Instant};

use fathom_catalog::inventory::{self, WorkloadUse};
use fathom_queue::Queue;
use fathom_webhook::inventory::Sighting;
use fathom_webhook::KubePods;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sqlx::PgPool;
use tokio::sync::watch;

/// The queue's maintenance-turn name of the Pod listing.
pub const TURN: &str = "inventory-sync";

/// A replica takes its turn when the last sync is at least this share of the interval old: replicas'
/// ticks drift, and one that ticks a little early should not skip a whole interval (the queue
/// maintenance's slack).
const TURN_SLACK: f64 = 0.8;

/// The Pod lister's metrics, on the core's `/metrics`.
#[derive(Clone)]
pub struct SyncMetrics {
    syncs: IntCounterVec,
    containers: IntGauge,
}

impl SyncMetrics {
    /// Registers `fathom_inventory_syncs_total{outcome}` (`ok`, `failed`, both from 0) and
    /// `fathom_inventory_synced_containers`.
    pub fn register(registry: &Registry) -> prometheus::Result<SyncMetrics> {
        let syncs = IntCounterVec::new(
            Opts::new(
                "fathom_inventory_syncs_total",
                "Pod listings into the inventory run by this core, by outcome (ok, failed)",
            ),
            &["outcome"],
        )?;
        for outcome in ["ok", "failed"] {
            syncs.with_label_values(&[outcome]);
        }
        let containers = IntGauge::new(
            "fathom_inventory_synced_containers",
            "Running containers with a digest that this core's last complete Pod listing recorded",
        )?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(containers.clone()))?;
        Ok(SyncMetrics { syncs, containers })
    }
}

/// What one listing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Pages the API server answered.
    pub pages: usize,
    /// Container uses recorded (each at most once per page).
    pub containers: usize,
    /// Inventory entries expired after the listing.
    pub expired: u64,
}

/// A sighting as an inventory row.
pub fn workload_use(s: Sighting) -> WorkloadUse {
    WorkloadUse {
        namespace: s.namespace,
        kind: s.owner_kind,
        name: s.owner_name,
        container: s.container,
        image: s.image,
        digest: s.digest,
    }
}

/// Lists every page of Pods and records each page's uses in one statement as it arrives (a large
/// cluster is never held whole), then expires entries not seen for `ttl` — the lister does it itself
/// because it may run while the webhook, whose writer expires otherwise, is off. A failed page stops
/// the listing; the pages before it stay recorded.
pub async fn sync_once(
    pods: &KubePods,
    pool: &PgPool,
    ttl: Duration,
) -> anyhow::Result<SyncReport> {
    let mut report = SyncReport {
        pages: 0,
        containers: 0,
        expired: 0,
    };
    let mut token: Option<String> = None;
    loop {
        let page = pods.page(token.as_deref()).await?;
        report.pages += 1;
        let uses: Vec<WorkloadUse> = page.sightings.into_iter().map(workload_use).collect();
        report.containers += uses.len();
        inventory::record(pool, &uses)
            .await
            .map_err(|e| anyhow::anyhow!("recording listed pods in the inventory: {e}"))?;
        match page.next {
            Some(next) => token = Some(next),
            None => break,
        }
    }
    report.expired = inventory::expire(pool, ttl)
        .await
        .map_err(|e| anyhow::anyhow!("expiring the inventory: {e}"))?;
    Ok(report)
}

/// Whether this replica lists this tick; a failed check skips the tick (the next one asks again).
async fn my_turn(queue: &Queue, every: Duration) -> bool {
    match queue.take_turn(TURN, every.mul_f64(TURN_SLACK)).await {
        Ok(mine) => mine,
        Err(e) => {
            tracing::warn!(error = %e, "inventory sync: taking a turn failed");
            false
        }
    }
}

/// Runs until `shutdown` turns true: at start and then every `interval`, lists Pods when it is this
/// replica's turn. Errors are logged, counted and retried at the next turn; they never stop the core.
pub async fn run(
    pods: KubePods,
    pool: PgPool,
    queue: Queue,
    interval: Duration,
    ttl: Duration,
    metrics: SyncMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if my_turn(&queue, interval).await {
            let started = Instant::now();
            match sync_once(&pods, &pool, ttl).await {
                Ok(report) => {
                    metrics.syncs.with_label_values(&["ok"]).inc();
                    metrics.containers.set(report.containers as i64);
                    tracing::info!(
                        pages = report.pages,
                        containers = report.containers,
                        expired = report.expired,
                        secs = started.elapsed().as_secs_f64(),
                        "inventory sync: listed pods"
                    );
                }
                Err(e) => {
                    metrics.syncs.with_label_values(&["failed"]).inc();
                    tracing::warn!("inventory sync: {e:#}");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
