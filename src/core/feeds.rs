//! The core's feed cycle (`services.feeds.enabled`): syncs the OSV feeds when the last check is older than
//! `services.feeds.interval`, matches newly analyzed images every `services.feeds.rematch_interval`, and
//! exports feed age, records, sync outcomes and match counts. One runner at a time across every core.

use std::time::Instant;

use anyhow::Context;
use fathom_vulns::store::sync::FeedOutcome;
use fathom_vulns::{Feeds, Matcher, VulnsConfig};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

pub use fathom_vulns::store::FEED_LOCK;

/// Sync outcomes, each a value of the `outcome` label.
const OUTCOMES: [&str; 4] = ["updated", "unchanged", "failed", "not_offered"];

/// The feed cycle's metrics, registered beside the API's.
#[derive(Clone)]
pub struct FeedMetrics {
    syncs: IntCounterVec,
    sync_duration: HistogramVec,
    age: GaugeVec,
    records: IntGaugeVec,
    matches: IntGauge,
    rematched_keys: IntCounter,
    indexed_images: IntCounter,
}

impl FeedMetrics {
    /// Registers the metrics and creates the series of `feeds` up front (age `+Inf` until read from
    /// the database: a feed never synced is as stale as can be), so alerts see them from the start.
    pub fn register(registry: &Registry, feeds: &[String]) -> prometheus::Result<FeedMetrics> {
        let syncs = IntCounterVec::new(
            Opts::new(
                "fathom_feed_sync_total",
                "Feed syncs by the core, by feed and outcome (updated, unchanged, failed, not_offered)",
            ),
            &["feed", "outcome"],
        )?;
        let sync_duration = HistogramVec::new(
            HistogramOpts::new(
                "fathom_feed_sync_duration_seconds",
                "Time to check, download and store one feed",
            )
            .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 180.0, 600.0, 1800.0]),
            &["feed"],
        )?;
        let age = GaugeVec::new(
            Opts::new(
                "fathom_feed_age_seconds",
                "Seconds since the feed's last successful sync (+Inf: never synced; absent: not offered by the source)",
            ),
            &["feed"],
        )?;
        let records = IntGaugeVec::new(
            Opts::new(
                "fathom_feed_records",
                "Records in the feed's current generation",
            ),
            &["feed"],
        )?;
        let matches = IntGauge::new(
            "fathom_vuln_matches",
            "Stored matches: distinct (ecosystem, package, version) and vulnerability pairs of the fleet",
        )?;
        let rematched_keys = IntCounter::new(
            "fathom_vuln_rematched_keys_total",
            "Distinct (ecosystem, package, version) keys matched against the feeds by the core",
        )?;
        let indexed_images = IntCounter::new(
            "fathom_vuln_indexed_images_total",
            "Analyzed images indexed for matching by the core",
        )?;
        registry.register(Box::new(syncs.clone()))?;
        registry.register(Box::new(sync_duration.clone()))?;
        registry.register(Box::new(age.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(matches.clone()))?;
        registry.register(Box::new(rematched_keys.clone()))?;
        registry.register(Box::new(indexed_images.clone()))?;
        for feed in feeds {
            for outcome in OUTCOMES {
                syncs.with_label_values(&[feed, outcome]);
            }
            sync_duration.with_label_values(&[feed]);
            age.with_label_values(&[feed]).set(f64::INFINITY);
            records.with_label_values(&[feed]);
        }
        Ok(FeedMetrics {
            syncs,
            sync_duration,
            age,
            records,
            matches,
            rematched_keys,
            indexed_images,
        })
    }
}

/// Per configured feed: seconds since its last success and since its last check (None: never), records,
/// whether the source offers it.
const STATE_SQL: &str = r#"
SELECT f.feed,
       extract(epoch FROM now() - s.last_success_at)::float8,
       extract(epoch FROM now() - s.last_checked_at)::float8,
       coalesce(s.records, 0),
       coalesce(s.offered, true)
FROM unnest($1::text[]) AS f(feed) LEFT JOIN fathom_vuln_feeds s ON s.feed = f.feed
"#;
/// A row of [`STATE_SQL`].
type StateRow = (String, Option<f64>, Option<f64>, i64, bool);

const MATCHES_SQL: &str = "SELECT count(*) FROM fathom_vuln_matches";

/// Takes the feed lock on `conn` without waiting; true when this session now holds it.
pub async fn try_lock(conn: &mut PgConnection) -> sqlx::Result<bool> {
    crate::core::election::try_lock(conn, FEED_LOCK).await
}

/// Takes the feed lock on `conn`, waiting for the holder (a core's cycle) to finish its round.
pub async fn lock(conn: &mut PgConnection) -> sqlx::Result<()> {
    crate::core::election::lock(conn, FEED_LOCK).await
}

/// Releases the feed lock held by `conn`'s session.
pub async fn unlock(conn: &mut PgConnection) -> sqlx::Result<()> {
    crate::core::election::unlock(conn, FEED_LOCK).await
}

/// Runs the cycle until `shutdown` turns true. Each round (every `rematch_interval`): refresh the gauges
/// from the database (every core does, so any replica's scrape is right), then, if this core wins the
/// lock, sync when a configured feed's last check is older than `interval` (or it was never checked),
/// and re-match. Re-matching every round is what picks up newly analyzed images; after an unchanged
/// round it costs three indexed queries (the third: images waiting for their first notification).
pub async fn run(
    pool: PgPool,
    database_url: String,
    config: VulnsConfig,
    metrics: FeedMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    // A connection of its own for the session lock: were it a pooled one, a cancelled round could hand
    // a connection still holding the lock back to the pool.
    let mut lock_conn: Option<PgConnection> = None;
    loop {
        if let Err(e) = round(&pool, &database_url, &config, &metrics, &mut lock_conn).await {
            tracing::warn!("feed cycle: {e:#}");
            lock_conn = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(config.rematch_interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

async fn round(
    pool: &PgPool,
    database_url: &str,
    config: &VulnsConfig,
    metrics: &FeedMetrics,
    lock_conn: &mut Option<PgConnection>,
) -> anyhow::Result<()> {
    let due = refresh(pool, config, metrics).await?;
    let conn = match lock_conn {
        Some(c) => c,
        None => lock_conn.insert(
            PgConnection::connect(database_url)
                .await
                .context("connecting for the feed lock")?,
        ),
    };
    if !try_lock(conn).await.context("taking the feed lock")? {
        tracing::debug!("feed cycle: another core holds the feed lock");
        return Ok(());
    }
    let result = locked_round(pool, config, metrics, due).await;
    unlock(conn).await.context("releasing the feed lock")?;
    result
}

async fn locked_round(
    pool: &PgPool,
    config: &VulnsConfig,
    metrics: &FeedMetrics,
    due: bool,
) -> anyhow::Result<()> {
    // Re-read under the lock: another core may have synced since `refresh` looked.
    if due && refresh(pool, config, metrics).await? {
        let started = Instant::now();
        let report = Feeds::sync(pool, config, &|_| {}).await?;
        for f in &report.feeds {
            let outcome = match &f.outcome {
                FeedOutcome::Updated { .. } => "updated",
                FeedOutcome::Unchanged => "unchanged",
                FeedOutcome::Failed { .. } => "failed",
                FeedOutcome::NotOffered => "not_offered",
            };
            metrics.syncs.with_label_values(&[&f.feed, outcome]).inc();
            metrics
                .sync_duration
                .with_label_values(&[&f.feed])
                .observe(f.wall_ms as f64 / 1000.0);
        }
        tracing::info!(
            feeds = report.feeds.len(),
            failed = report.failed(),
            secs = started.elapsed().as_secs_f64(),
            "feeds synced"
        );
        refresh(pool, config, metrics).await?;
    }
    let r = Matcher::rematch(pool).await?;
    metrics.rematched_keys.inc_by(r.keys_matched);
    metrics.indexed_images.inc_by(r.images_indexed);
    if r.keys_matched > 0 || r.images_indexed > 0 || r.images_removed > 0 {
        tracing::info!(
            images = r.images_indexed,
            undecodable = r.images_undecodable,
            keys = r.keys_matched,
            changed = r.keys_changed,
            matches = r.matches,
            ms = r.wall_ms,
            "fleet re-matched"
        );
    }
    let matches: i64 = sqlx::query_scalar(MATCHES_SQL).fetch_one(pool).await?;
    metrics.matches.set(matches);
    Ok(())
}

/// Why the feed state could not be read, pointing the operator the right way: only a missing table means
/// the migrations have not run; anything else (Postgres down, a network cut, a timeout) is the database,
/// which the next round tries again.
pub fn state_error(e: sqlx::Error) -> anyhow::Error {
    const UNDEFINED_TABLE: &str = "42P01";
    let missing_table = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == UNDEFINED_TABLE);
    let what = if missing_table {
        "reading feed state: the feed tables are missing (has `fathom migrate` run?)"
    } else {
        "reading feed state: the database did not answer (retried next round)"
    };
    anyhow::Error::new(e).context(what)
}

/// Sets age and records of every configured feed; returns whether a sync is due.
async fn refresh(
    pool: &PgPool,
    config: &VulnsConfig,
    metrics: &FeedMetrics,
) -> anyhow::Result<bool> {
    let rows: Vec<StateRow> = sqlx::query_as(STATE_SQL)
        .bind(&config.ecosystems)
        .fetch_all(pool)
        .await
        .map_err(state_error)?;
    let interval = config.interval.as_secs_f64();
    let mut due = false;
    for (feed, age, checked, records, offered) in rows {
        if offered {
            metrics
                .age
                .with_label_values(&[&feed])
                .set(age.unwrap_or(f64::INFINITY));
        } else {
            // No age series, so the stale-feed alert does not page for what the mirror never had.
            let _absent = metrics.age.remove_label_values(&[&feed]);
        }
        metrics.records.with_label_values(&[&feed]).set(records);
        due |= checked.is_none_or(|c| c >= interval);
    }
    Ok(due)
}
