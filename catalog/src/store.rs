//! The catalog's tables (`catalog/migrations/`): every statement, as a named constant with a small
//! function around it. Writes that must commit together take the caller's connection.

use sqlx::{PgConnection, PgPool};

use crate::error::Result;
use crate::model::{rfc3339, HistoryEntry, Watch};
use crate::PassKind;

const WATCH_COLUMNS: &str = r#"
SELECT w.id, w.kind, w.reference, w.status, w.error, w.digest, w.include_re, w.exclude_re, w.parent_id,
       w.tags_listed::int8,
       CASE WHEN w.kind = 'repository'
            THEN (SELECT count(*) FROM fathom_catalog_watches c WHERE c.parent_id = w.id) END,
       w.tags_capped::int8,
       (extract(epoch FROM w.created_at) * 1e6)::int8,
       (extract(epoch FROM w.checked_at) * 1e6)::int8
FROM fathom_catalog_watches w
"#;

type WatchRow = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
);

fn watch(row: WatchRow) -> Watch {
    Watch {
        id: row.0,
        kind: row.1,
        reference: row.2,
        status: row.3,
        error: row.4,
        digest: row.5,
        include: row.6,
        exclude: row.7,
        repository_watch: row.8,
        tags_listed: row.9,
        tags_watched: row.10,
        tags_capped: row.11,
        created_at: rfc3339(row.12),
        checked_at: row.13.map(rfc3339),
    }
}

/// A watch by id.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<Watch>> {
    let sql = format!("{WATCH_COLUMNS} WHERE w.id = $1");
    let row: Option<WatchRow> = sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?;
    Ok(row.map(watch))
}

/// A watch by kind and canonical reference.
pub async fn find(pool: &PgPool, kind: &str, reference: &str) -> Result<Option<Watch>> {
    let sql = format!("{WATCH_COLUMNS} WHERE w.kind = $1 AND w.reference = $2");
    let row: Option<WatchRow> = sqlx::query_as(&sql)
        .bind(kind)
        .bind(reference)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(watch))
}

/// Which watches a list shows.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// `tag` or `repository` only.
    pub kind: Option<String>,
    /// Only tag watches made by this repository watch.
    pub repository_watch: Option<i64>,
    /// Ids above this one (the previous page's last).
    pub after: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// Watches in id order.
pub async fn list(pool: &PgPool, filter: &ListFilter) -> Result<Vec<Watch>> {
    let sql = format!(
        "{WATCH_COLUMNS} WHERE ($1::text IS NULL OR w.kind = $1) \
         AND ($2::int8 IS NULL OR w.parent_id = $2) AND w.id > coalesce($3::int8, 0) \
         ORDER BY w.id LIMIT $4"
    );
    let rows: Vec<WatchRow> = sqlx::query_as(&sql)
        .bind(&filter.kind)
        .bind(filter.repository_watch)
        .bind(filter.after)
        .bind(filter.limit.max(1))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(watch).collect())
}

const HISTORY_SQL: &str = r#"
SELECT digest, (extract(epoch FROM first_seen) * 1e6)::int8, (extract(epoch FROM last_seen) * 1e6)::int8,
       job_id
FROM fathom_catalog_history WHERE watch_id = $1 ORDER BY id DESC LIMIT $2
"#;

/// A tag watch's digests, newest first.
pub async fn history(pool: &PgPool, id: i64, limit: i64) -> Result<Vec<HistoryEntry>> {
    let rows: Vec<(String, i64, i64, Option<i64>)> = sqlx::query_as(HISTORY_SQL)
        .bind(id)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(digest, first, last, job_id)| HistoryEntry {
            digest,
            first_seen: rfc3339(first),
            last_seen: rfc3339(last),
            job_id,
        })
        .collect())
}

/// Deletes a watch (a repository's tag watches and every history row go with it); false when absent.
pub async fn delete(pool: &PgPool, id: i64) -> Result<bool> {
    let done = sqlx::query("DELETE FROM fathom_catalog_watches WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

const INSERT_SQL: &str = r#"
INSERT INTO fathom_catalog_watches (kind, reference, host, include_re, exclude_re, parent_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (kind, reference) DO NOTHING
RETURNING id
"#;

/// A new watch to insert.
#[derive(Debug, Clone, Default)]
pub struct NewWatch<'a> {
    /// `tag` or `repository`.
    pub kind: &'a str,
    /// Canonical reference.
    pub reference: &'a str,
    /// Registry host[:port].
    pub host: &'a str,
    /// Repository include pattern.
    pub include: Option<&'a str>,
    /// Repository exclude pattern.
    pub exclude: Option<&'a str>,
    /// The repository watch making this tag watch.
    pub parent: Option<i64>,
}

/// Inserts a watch; `None` when one with the same kind and reference exists.
pub async fn insert(conn: &mut PgConnection, new: &NewWatch<'_>) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(INSERT_SQL)
        .bind(new.kind)
        .bind(new.reference)
        .bind(new.host)
        .bind(new.include)
        .bind(new.exclude)
        .bind(new.parent)
        .fetch_optional(conn)
        .await?)
}

/// A tag watch as a pass sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TagTarget {
    /// Watch id.
    pub id: i64,
    /// `registry/repository:tag`.
    pub reference: String,
    /// Registry host.
    pub host: String,
    /// Last digest seen.
    pub digest: Option<String>,
}

/// Every tag watch, by host then id.
pub async fn tag_targets(pool: &PgPool) -> Result<Vec<TagTarget>> {
    Ok(sqlx::query_as(
        "SELECT id, reference, host, digest FROM fathom_catalog_watches WHERE kind = 'tag' \
         ORDER BY host, id",
    )
    .fetch_all(pool)
    .await?)
}

/// A repository watch as a pass sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RepositoryTarget {
    /// Watch id.
    pub id: i64,
    /// `registry/repository`.
    pub reference: String,
    /// Registry host.
    pub host: String,
    /// Include pattern.
    pub include_re: Option<String>,
    /// Exclude pattern.
    pub exclude_re: Option<String>,
}

/// Every repository watch, by host then id.
pub async fn repository_targets(pool: &PgPool) -> Result<Vec<RepositoryTarget>> {
    Ok(sqlx::query_as(
        "SELECT id, reference, host, include_re, exclude_re FROM fathom_catalog_watches \
         WHERE kind = 'repository' ORDER BY host, id",
    )
    .fetch_all(pool)
    .await?)
}

/// Tags of `repository` already watched (by anyone), and how many of them `parent` made.
pub async fn watched_tags(
    conn: &mut PgConnection,
    repository: &str,
    parent: i64,
) -> Result<(Vec<String>, i64)> {
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT reference, parent_id FROM fathom_catalog_watches \
         WHERE kind = 'tag' AND starts_with(reference, $1)",
    )
    .bind(format!("{repository}:"))
    .fetch_all(conn)
    .await?;
    let children = rows.iter().filter(|(_, p)| *p == Some(parent)).count();
    let prefix = repository.len() + 1;
    let tags = rows
        .into_iter()
        .filter_map(|(r, _)| r.get(prefix..).map(str::to_string))
        .collect();
    Ok((tags, i64::try_from(children).unwrap_or(i64::MAX)))
}

const NEW_DIGEST_SQL: &str = r#"
WITH h AS (
    INSERT INTO fathom_catalog_history (watch_id, digest, job_id) VALUES ($1, $2, $3)
)
UPDATE fathom_catalog_watches SET digest = $2, status = 'active', error = NULL, checked_at = now()
WHERE id = $1
"#;

/// Records a digest new to the watch (a history row and the watch's current digest).
pub async fn record_digest(
    conn: &mut PgConnection,
    id: i64,
    digest: &str,
    job: Option<i64>,
) -> Result<()> {
    sqlx::query(NEW_DIGEST_SQL)
        .bind(id)
        .bind(digest)
        .bind(job)
        .execute(conn)
        .await?;
    Ok(())
}

const UNCHANGED_SQL: &str = r#"
WITH latest AS (
    SELECT DISTINCT ON (watch_id) id FROM fathom_catalog_history
    WHERE watch_id = ANY($1) ORDER BY watch_id, id DESC
),
seen AS (
    UPDATE fathom_catalog_history h SET last_seen = now() FROM latest WHERE h.id = latest.id
)
UPDATE fathom_catalog_watches SET status = 'active', error = NULL, checked_at = now()
WHERE id = ANY($1)
"#;

/// Marks watches seen unchanged (one statement for a batch: a pass over an idle fleet writes little).
pub async fn record_unchanged(pool: &PgPool, ids: &[i64]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(UNCHANGED_SQL).bind(ids).execute(pool).await?;
    Ok(())
}

/// Marks a watch `missing` or `failing` with the registry's answer (digest and history kept).
pub async fn record_problem(
    conn: &mut PgConnection,
    id: i64,
    status: &str,
    error: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE fathom_catalog_watches SET status = $2, error = $3, checked_at = now() WHERE id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a repository's listing: how many tags, how many the cap left out.
pub async fn record_listing(
    conn: &mut PgConnection,
    id: i64,
    listed: usize,
    capped: usize,
) -> Result<()> {
    sqlx::query(
        "UPDATE fathom_catalog_watches SET status = 'active', error = NULL, checked_at = now(), \
         tags_listed = $2, tags_capped = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(i32::try_from(listed).unwrap_or(i32::MAX))
    .bind(i32::try_from(capped).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

/// Starts a pass of `kind` when the last one started at least `interval_s` ago (or never): concurrent
/// callers serialize on the row, and only the one that moved `started_at` gets `true`.
const BEGIN_PASS_SQL: &str = r#"
INSERT INTO fathom_catalog_passes AS p (kind, started_at) VALUES ($1, now())
ON CONFLICT (kind) DO UPDATE SET started_at = now()
WHERE p.started_at IS NULL OR p.started_at <= now() - make_interval(secs => $2)
RETURNING 1
"#;

/// Takes the pass of `kind` if it is due; true when this caller runs it.
pub async fn begin_pass(pool: &PgPool, kind: PassKind, interval_s: f64) -> Result<bool> {
    let row: Option<i32> = sqlx::query_scalar(BEGIN_PASS_SQL)
        .bind(kind.as_str())
        .bind(interval_s)
        .fetch_optional(pool)
        .await?;
    Ok(row.is_some())
}

/// Records a completed pass.
pub async fn end_pass(pool: &PgPool, kind: PassKind, report: &crate::PassReport) -> Result<()> {
    let int = |n: u64| i32::try_from(n).unwrap_or(i32::MAX);
    sqlx::query(
        "UPDATE fathom_catalog_passes SET completed_at = now(), duration_s = $2, watches = $3, \
         changed = $4, requests = $5, passes = passes + 1 WHERE kind = $1",
    )
    .bind(kind.as_str())
    .bind(report.wall_ms as f64 / 1000.0)
    .bind(int(report.watches as u64))
    .bind(int(report.changed as u64))
    .bind(int(report.requests()))
    .execute(pool)
    .await?;
    Ok(())
}

/// The catalog's state for its gauges: watches by kind, and per pass kind the completion time (Unix
/// seconds), duration and count of its last pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Tag watches.
    pub tags: i64,
    /// Repository watches.
    pub repositories: i64,
    /// `(kind, completed at, duration in seconds, passes run)` of each pass kind that ever completed.
    pub passes: Vec<(String, f64, f64, i64)>,
}

/// Reads [`State`].
pub async fn state(pool: &PgPool) -> Result<State> {
    let (tags, repositories): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE kind = 'tag'), count(*) FILTER (WHERE kind = 'repository') \
         FROM fathom_catalog_watches",
    )
    .fetch_one(pool)
    .await?;
    let passes = sqlx::query_as(
        "SELECT kind, extract(epoch FROM completed_at)::float8, coalesce(duration_s, 0), passes \
         FROM fathom_catalog_passes WHERE completed_at IS NOT NULL ORDER BY kind",
    )
    .fetch_all(pool)
    .await?;
    Ok(State {
        tags,
        repositories,
        passes,
    })
}
