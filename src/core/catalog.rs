//! The core's catalog loop (`services.catalog.enabled`): every core refreshes the catalog's gauges from
//! the database; one core at a time leads (the catalog's advisory lock, held on a connection of its own
//! while it leads) and starts each pass kind when it is due. Due is decided in the database
//! ([`fathom_catalog::store::begin_pass`]), so a core taking over from a dead leader never repeats the
//! pass the leader ran.

use std::time::Duration;

use anyhow::Context;
use fathom_catalog::{Catalog, CatalogConfig, CatalogMetrics, PassKind};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::FathomConfig;
use crate::core::election;
use fathom_analyzer::source::watch::TagWatcher;
use fathom_catalog::{Submission, Watcher};

/// Advisory lock key of the catalog's leader ("fathomCt" as bytes).
pub const CATALOG_LOCK: i64 = 0x6661_7468_6f6d_4374;

/// Longest time between two looks at the lock and the due passes.
const MAX_TICK: Duration = Duration::from_secs(5);

/// The tick of a catalog with these intervals: a tenth of the shorter one, between 100 ms and
/// [`MAX_TICK`] (a pass starts at most a tick late).
pub fn tick(config: &CatalogConfig) -> Duration {
    (config.watch_interval.min(config.repository_interval) / 10)
        .clamp(Duration::from_millis(100), MAX_TICK)
}

/// The catalog of this process on `pool`: the analyzer's registry options (insecure hosts, credentials,
/// timeout) behind the per-host rate; analyses it queues skip images analyzed under `cache_key` and get
/// `services.api.max_attempts` attempts.
pub fn build(
    config: &FathomConfig,
    pool: PgPool,
    cache_key: String,
    metrics: CatalogMetrics,
) -> anyhow::Result<Catalog> {
    let options =
        fathom_worker::config::analyzer_options(&config.services.analyzer, &config.registry)?;
    let section = config.services.catalog.clone();
    let watcher = Watcher::new(
        TagWatcher::new(options.registry),
        section.requests_per_second_per_host,
        metrics,
    );
    Ok(Catalog::new(
        pool,
        std::sync::Arc::new(watcher),
        section,
        Submission {
            cache_key,
            max_attempts: config.services.api.max_attempts,
        },
    ))
}

/// Runs the loop until `shutdown` turns true.
pub async fn run(
    catalog: Catalog,
    pool: PgPool,
    database_url: String,
    config: CatalogConfig,
    metrics: CatalogMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut leader = Leader::default();
    let mut running: Vec<(PassKind, JoinHandle<()>)> = Vec::new();
    let tick = tick(&config);
    loop {
        match fathom_catalog::store::state(&pool).await {
            Ok(state) => metrics.refresh(&state),
            Err(e) => tracing::warn!("catalog: reading its state (has `fathom migrate` run?): {e}"),
        }
        if let Err(e) = leader.tick(&database_url).await {
            tracing::warn!("catalog: {e:#}");
        }
        running.retain(|(_, task)| !task.is_finished());
        if leader.leading {
            for kind in [PassKind::Tags, PassKind::Repositories] {
                if running.iter().any(|(k, _)| *k == kind) {
                    continue;
                }
                let interval = config.interval(kind).as_secs_f64();
                match fathom_catalog::store::begin_pass(&pool, kind, interval).await {
                    Ok(true) => running.push((kind, tokio::spawn(pass(catalog.clone(), kind)))),
                    Ok(false) => {}
                    Err(e) => tracing::warn!("catalog: starting a {} pass: {e}", kind.as_str()),
                }
            }
        } else {
            // Not (or no longer) leading: a pass of ours must not overlap the new leader's.
            for (_, task) in running.drain(..) {
                task.abort();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    for (_, task) in running {
        task.abort();
    }
}

/// The lock's connection, kept between ticks (a follower does not reconnect to ask again), and whether
/// this core holds the lock on it.
#[derive(Default)]
struct Leader {
    conn: Option<PgConnection>,
    leading: bool,
}

impl Leader {
    /// Keeps leading, or takes the lock when it is free.
    async fn tick(&mut self, database_url: &str) -> anyhow::Result<()> {
        if let (true, Some(conn)) = (self.leading, self.conn.as_mut()) {
            if election::holds(conn, CATALOG_LOCK).await {
                return Ok(());
            }
            tracing::warn!(
                "catalog: lost the leader's session; passes stop until the lock is retaken"
            );
            self.leading = false;
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(
                PgConnection::connect(database_url)
                    .await
                    .context("connecting for the catalog lock")?,
            ),
        };
        match election::try_lock(conn, CATALOG_LOCK).await {
            Ok(true) => {
                tracing::info!("catalog: this core leads the passes");
                self.leading = true;
            }
            Ok(false) => {}
            Err(e) => {
                self.conn = None;
                return Err(e).context("taking the catalog lock");
            }
        }
        Ok(())
    }
}

async fn pass(catalog: Catalog, kind: PassKind) {
    let report = match catalog.pass(kind).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!("catalog: {} pass: {e}", kind.as_str());
            return;
        }
    };
    tracing::info!(
        kind = kind.as_str(),
        watches = report.watches,
        changed = report.changed,
        problems = report.problems,
        requests = report.requests(),
        secs = report.wall_ms as f64 / 1000.0,
        "catalog pass done"
    );
    if let Err(e) = fathom_catalog::store::end_pass(catalog.pool(), kind, &report).await {
        tracing::warn!("catalog: recording the {} pass: {e}", kind.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_follows_the_shorter_interval_within_bounds() {
        let c = |w: u64, r: u64| CatalogConfig {
            watch_interval: Duration::from_secs(w),
            repository_interval: Duration::from_secs(r),
            ..CatalogConfig::default()
        };
        assert_eq!(tick(&CatalogConfig::default()), MAX_TICK);
        assert_eq!(tick(&c(2, 900)), Duration::from_millis(200));
        assert_eq!(tick(&c(1, 1)), Duration::from_millis(100));
    }
}
