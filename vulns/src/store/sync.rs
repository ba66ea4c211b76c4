//! Syncing feeds into Postgres: fetch (conditional), read the zip on a blocking thread, stream records
//! through a bounded channel into one transaction that writes a new generation and moves the feed's
//! pointer to it. A failure rolls back: the previous generation stays current.

use std::collections::HashSet;
use std::time::Instant;

use fathom_notify::data::FeedSynced;
use fathom_notify::Event as _;
use serde::Serialize;
use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};

use crate::config::VulnsConfig;
use crate::core::ecosystem::{normalize_ecosystem, normalize_name_for};
use crate::core::osv::{Event, Record};
use crate::core::severity::rate;
use crate::error::{Error, Result};
use crate::feed::{read_zip, Fetched, Source, Validators};

/// Records per insert statement.
const BATCH: usize = 500;

/// What happened to one feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum FeedOutcome {
    /// The source said nothing changed (one request).
    Unchanged,
    /// A new generation is current.
    Updated {
        /// Its id.
        generation: i64,
        /// Records stored.
        records: u64,
        /// Entries skipped as malformed or oversized.
        malformed: u64,
        /// The first skipped entries, named.
        malformed_examples: Vec<String>,
        /// Bytes downloaded.
        bytes: u64,
    },
    /// The source's `ecosystems.txt` does not list the feed (a partial mirror): nothing was fetched,
    /// which is not a failure; the previous generation (if any) stays current.
    #[serde(rename = "not_offered")]
    NotOffered,
    /// The sync failed; the previous generation (if any) stays current.
    Failed {
        /// Why, naming the feed.
        error: String,
    },
}

/// One feed's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedReport {
    /// Feed (OSV directory name).
    pub feed: String,
    /// Outcome.
    #[serde(flatten)]
    pub outcome: FeedOutcome,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
}

/// Every feed's result.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    /// Per feed, in configured order.
    pub feeds: Vec<FeedReport>,
}

impl SyncReport {
    /// Whether any feed failed.
    pub fn failed(&self) -> bool {
        self.feeds
            .iter()
            .any(|f| matches!(f.outcome, FeedOutcome::Failed { .. }))
    }
}

/// Progress events for a CLI or a log.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress<'a> {
    /// Checking a feed.
    Checking(&'a str),
    /// Records stored so far for a feed.
    Records(&'a str, u64),
    /// A feed is done.
    Done(&'a FeedReport),
}

/// Feed syncing.
pub struct Feeds;

impl Feeds {
    /// Syncs every configured feed. A feed's failure is reported (and recorded in `fathom_vuln_feeds`)
    /// without stopping the others; a feed the source's `ecosystems.txt` does not list is reported
    /// [`FeedOutcome::NotOffered`] without a request; only an invalid configuration is an error.
    pub async fn sync(
        pool: &PgPool,
        config: &VulnsConfig,
        progress: &(dyn Fn(Progress<'_>) + Sync),
    ) -> Result<SyncReport> {
        config.validate("services.feeds")?;
        let source = Source::new(&config.base_url, config.timeout)?;
        // Without a listing (a hand-made directory, or the source unreachable) every feed is tried and
        // fails or succeeds on its own, as before listings were read.
        let listed: Option<HashSet<String>> = match source.ecosystems().await {
            Ok(listed) => Some(listed.into_iter().collect()),
            Err(e) => {
                tracing::warn!("{e}; trying every configured feed");
                None
            }
        };
        let mut report = SyncReport::default();
        for feed in &config.ecosystems {
            progress(Progress::Checking(feed));
            let started = Instant::now();
            let offered = listed.as_ref().is_none_or(|l| l.contains(feed));
            let result = if offered {
                sync_one(pool, &source, config, feed, progress).await
            } else {
                record_not_offered(pool, feed).await
            };
            let outcome = match result {
                Ok(o) => o,
                Err(e) => {
                    let error = e.to_string();
                    tracing::warn!(feed, "feed sync failed: {error}");
                    record_failure(pool, feed, &error).await;
                    FeedOutcome::Failed { error }
                }
            };
            let r = FeedReport {
                feed: feed.clone(),
                outcome,
                wall_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            };
            progress(Progress::Done(&r));
            report.feeds.push(r);
        }
        Ok(report)
    }
}

const VALIDATORS_SQL: &str =
    "SELECT etag, last_modified FROM fathom_vuln_feeds WHERE feed = $1 AND generation IS NOT NULL";
const CHECKED_SQL: &str =
    "UPDATE fathom_vuln_feeds SET last_checked_at = now(), last_error = NULL, \
     offered = true WHERE feed = $1";
const FAILURE_SQL: &str = r#"
INSERT INTO fathom_vuln_feeds (feed, last_checked_at, last_error) VALUES ($1, now(), $2)
ON CONFLICT (feed) DO UPDATE SET last_checked_at = now(), last_error = EXCLUDED.last_error, offered = true
"#;
const NOT_OFFERED_SQL: &str = r#"
INSERT INTO fathom_vuln_feeds (feed, last_checked_at, offered) VALUES ($1, now(), false)
ON CONFLICT (feed) DO UPDATE SET last_checked_at = now(), last_error = NULL, offered = false
"#;
const OLD_GENERATION_SQL: &str =
    "SELECT generation FROM fathom_vuln_feeds WHERE feed = $1 FOR UPDATE";
const SUCCESS_SQL: &str = r#"
INSERT INTO fathom_vuln_feeds (feed, generation, etag, last_modified, records, malformed, last_checked_at,
    last_success_at, last_error)
VALUES ($1, $2, $3, $4, $5, $6, now(), now(), NULL)
ON CONFLICT (feed) DO UPDATE SET generation = EXCLUDED.generation, etag = EXCLUDED.etag,
    last_modified = EXCLUDED.last_modified, records = EXCLUDED.records, malformed = EXCLUDED.malformed,
    last_checked_at = now(), last_success_at = now(), last_error = NULL, offered = true
"#;
/// The (ecosystem, name) pairs whose matches may change when the feed moves from generation `$2` (NULL:
/// none) to `$1`: every pair named by an affected entry of a record added, changed, removed or withdrawn
/// (withdrawn records keep no affected rows, so their names come from the old generation).
const DIRTY_SQL: &str = r#"
INSERT INTO fathom_vuln_dirty (ecosystem, name)
SELECT DISTINCT a.ecosystem, a.name
FROM fathom_vuln_affected a
WHERE (a.generation = $1 OR a.generation = $2) AND a.vuln_id IN (
    SELECT coalesce(n.id, o.id)
    FROM (SELECT id, record FROM fathom_vuln_records WHERE generation = $1) n
    FULL JOIN (SELECT id, record FROM fathom_vuln_records WHERE generation = $2) o ON o.id = n.id
    WHERE n.id IS NULL OR o.id IS NULL OR n.record <> o.record)
RETURNING ecosystem || '/' || name
"#;
const INSERT_RECORDS_SQL: &str = r#"
INSERT INTO fathom_vuln_records (generation, id, modified, withdrawn, aliases, summary, record)
SELECT $1, x->>'id', coalesce(x->>'modified', ''), x->>'withdrawn' IS NOT NULL,
       ARRAY(SELECT jsonb_array_elements_text(coalesce(x->'aliases', '[]'))), x->>'summary', x
FROM jsonb_array_elements($2::jsonb) AS x
ON CONFLICT (generation, id) DO NOTHING
"#;
const INSERT_AFFECTED_SQL: &str = r#"
INSERT INTO fathom_vuln_affected (generation, ecosystem, name, vuln_id, aliases, severity, cvss_score, urls, entry)
SELECT $1, x->>'ecosystem', x->>'name', x->>'vuln_id', ARRAY(SELECT jsonb_array_elements_text(x->'aliases')),
       x->>'severity', (x->>'cvss_score')::float8, ARRAY(SELECT jsonb_array_elements_text(x->'urls')), x->'entry'
FROM jsonb_array_elements($2::jsonb) AS x
"#;
const INSERT_FIXES_SQL: &str = r#"
INSERT INTO fathom_vuln_fix_seen (vuln_id, ecosystem, name, fixed_version)
SELECT x->>0, x->>1, x->>2, x->>3 FROM jsonb_array_elements($1::jsonb) AS x
ON CONFLICT DO NOTHING
"#;

async fn record_failure(pool: &PgPool, feed: &str, error: &str) {
    if let Err(e) = sqlx::query(FAILURE_SQL)
        .bind(feed)
        .bind(error)
        .execute(pool)
        .await
    {
        tracing::warn!(feed, "could not record the failure: {e}");
    }
}

/// Records that the source does not list `feed`; a generation it had stays current.
async fn record_not_offered(pool: &PgPool, feed: &str) -> Result<FeedOutcome> {
    sqlx::query(NOT_OFFERED_SQL)
        .bind(feed)
        .execute(pool)
        .await?;
    tracing::info!(
        feed,
        "the feed source does not list this ecosystem (not offered)"
    );
    Ok(FeedOutcome::NotOffered)
}

async fn sync_one(
    pool: &PgPool,
    source: &Source,
    config: &VulnsConfig,
    feed: &str,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<FeedOutcome> {
    let previous: Option<(Option<String>, Option<String>)> = sqlx::query_as(VALIDATORS_SQL)
        .bind(feed)
        .fetch_optional(pool)
        .await?;
    let previous = previous
        .map(|(etag, last_modified)| Validators {
            etag,
            last_modified,
        })
        .unwrap_or_default();
    let (file, bytes, validators) = match source
        .fetch(feed, &previous, config.max_download_bytes)
        .await?
    {
        Fetched::NotModified => {
            sqlx::query(CHECKED_SQL).bind(feed).execute(pool).await?;
            return Ok(FeedOutcome::Unchanged);
        }
        Fetched::Fresh {
            file,
            bytes,
            validators,
        } => (file, bytes, validators),
    };

    // The reader runs on a blocking thread; the channel bounds how many parsed records wait in memory.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Record>(256);
    let max_entry = config.max_entry_bytes;
    let feed_name = feed.to_string();
    let reader = tokio::task::spawn_blocking(move || {
        read_zip(&file, &feed_name, max_entry, |r| {
            tx.blocking_send(r).is_ok()
        })
    });

    let mut db = pool.begin().await?;
    let generation: i64 = sqlx::query_scalar("SELECT nextval('fathom_vuln_generation_seq')")
        .fetch_one(&mut *db)
        .await?;
    let mut batch = Vec::with_capacity(BATCH);
    let mut stored = 0u64;
    while let Some(record) = rx.recv().await {
        batch.push(record);
        if batch.len() == BATCH {
            stored += write_batch(&mut db, generation, &batch).await?;
            batch.clear();
            progress(Progress::Records(feed, stored));
        }
    }
    stored += write_batch(&mut db, generation, &batch).await?;
    let stats = reader
        .await
        .map_err(|e| Error::feed(feed, format!("reader: {e}")))??;

    let old: Option<Option<i64>> = sqlx::query_scalar(OLD_GENERATION_SQL)
        .bind(feed)
        .fetch_optional(&mut *db)
        .await?;
    let old = old.flatten();
    // In this transaction, so the names to re-match become visible together with the generation. The
    // new rows have no statistics yet; a nested loop chosen on guessed row counts would compare every
    // record with every other (minutes at 70k records), hash joins take one pass.
    sqlx::query("SET LOCAL enable_nestloop = off")
        .execute(&mut *db)
        .await?;
    let mut changed: Vec<String> = sqlx::query_scalar(DIRTY_SQL)
        .bind(generation)
        .bind(old)
        .fetch_all(&mut *db)
        .await?;
    sqlx::query("SET LOCAL enable_nestloop = on")
        .execute(&mut *db)
        .await?;
    if let Some(old) = old {
        sqlx::query("DELETE FROM fathom_vuln_affected WHERE generation = $1")
            .bind(old)
            .execute(&mut *db)
            .await?;
        sqlx::query("DELETE FROM fathom_vuln_records WHERE generation = $1")
            .bind(old)
            .execute(&mut *db)
            .await?;
    }
    sqlx::query(SUCCESS_SQL)
        .bind(feed)
        .bind(generation)
        .bind(&validators.etag)
        .bind(&validators.last_modified)
        .bind(i64::try_from(stored).unwrap_or(i64::MAX))
        .bind(i64::try_from(stats.malformed).unwrap_or(i64::MAX))
        .execute(&mut *db)
        .await?;
    // Only a sync that changed some record is news; written with the generation it announces, by
    // whichever process syncs (the core's feed cycle or `fathom vulns sync` from anywhere).
    if !changed.is_empty() {
        changed.sort();
        let event = FeedSynced {
            feed: feed.to_string(),
            generation,
            previous_generation: old,
            records: stored,
            changed_names: changed.len() as u64,
            names: changed.into_iter().take(FeedSynced::NAMES_LISTED).collect(),
        };
        fathom_notify::write(&mut db, &event.event()).await?;
    }
    db.commit().await?;
    Ok(FeedOutcome::Updated {
        generation,
        records: stored,
        malformed: stats.malformed,
        malformed_examples: stats.malformed_examples,
        bytes,
    })
}

/// Writes records, their affected entries (unless withdrawn) and newly seen fixes. Returns the count.
async fn write_batch(
    db: &mut Transaction<'_, Postgres>,
    generation: i64,
    batch: &[Record],
) -> Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let mut records = Vec::with_capacity(batch.len());
    let mut affected = vec![];
    let mut fixes = vec![];
    for r in batch {
        records.push(serde_json::to_value(r).map_err(|e| Error::feed(&r.id, e))?);
        if r.withdrawn.is_some() {
            continue;
        }
        let urls: Vec<&str> = r
            .references
            .iter()
            .map(|x| x.url.as_str())
            .take(20)
            .collect();
        for a in &r.affected {
            let Some(p) = &a.package else { continue };
            let ecosystem = normalize_ecosystem(&p.ecosystem);
            let name = normalize_name_for(&ecosystem, &p.name);
            let rated = rate(r, a);
            for range in &a.ranges {
                for e in &range.events {
                    if let Event::Fixed(v) = e {
                        fixes.push(json!([r.id, ecosystem, name, v]));
                    }
                }
            }
            affected.push(json!({
                "ecosystem": ecosystem, "name": name, "vuln_id": r.id, "aliases": r.aliases,
                "severity": rated.level.as_str(), "cvss_score": rated.cvss_score, "urls": urls, "entry": a,
            }));
        }
    }
    sqlx::query(INSERT_RECORDS_SQL)
        .bind(generation)
        .bind(serde_json::Value::Array(records))
        .execute(&mut **db)
        .await?;
    if !affected.is_empty() {
        sqlx::query(INSERT_AFFECTED_SQL)
            .bind(generation)
            .bind(serde_json::Value::Array(affected))
            .execute(&mut **db)
            .await?;
    }
    if !fixes.is_empty() {
        sqlx::query(INSERT_FIXES_SQL)
            .bind(serde_json::Value::Array(fixes))
            .execute(&mut **db)
            .await?;
    }
    Ok(batch.len() as u64)
}
