//! Read-side queries: stats for the autoscaler and dashboards, who holds what, single-job lookup, cancel.

use std::collections::BTreeMap;

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::error::Result;
use crate::model::{JobRecord, JobState, QueueStats, RecentWork, Work};
use crate::queue::Queue;

/// Each count is a separate subquery so each can use its partial index; finished-state counts are
/// bounded by the pruning retention. The work columns ride on the same scans of the ready and running
/// jobs; the recent window reads the newest finished jobs backwards along the finished index.
pub const STATS_SQL: &str = r#"
SELECT
    r.ready,
    (SELECT count(*) FROM fathom_jobs WHERE state = 'queued' AND run_at > now()) AS scheduled,
    w.running,
    r.oldest_ready_age_s,
    r.ready_estimated_bytes, r.ready_cached, r.ready_unestimated,
    w.running_estimated_bytes, w.running_cached, w.running_unestimated,
    h.cold_jobs, h.cold_bytes, h.cold_seconds, h.cached_jobs, h.cached_seconds, h.median_fetched_bytes,
    h.estimated_bytes, h.estimated_fetched_bytes, h.sum_kb, h.sum_kb2, h.sum_kb_ms,
    f.succeeded, f.failed, f.dead, f.cancelled
FROM (
    SELECT count(*) AS ready,
           coalesce(extract(epoch FROM now() - min(enqueued_at))::float8, 0) AS oldest_ready_age_s,
           coalesce(sum(work_bytes), 0)::int8 AS ready_estimated_bytes,
           count(*) FILTER (WHERE work_bytes = 0) AS ready_cached,
           count(*) FILTER (WHERE work_bytes IS NULL) AS ready_unestimated
    FROM fathom_jobs WHERE state = 'queued' AND run_at <= now()
) r, (
    SELECT count(*) AS running,
           coalesce(sum(work_bytes), 0)::int8 AS running_estimated_bytes,
           count(*) FILTER (WHERE work_bytes = 0) AS running_cached,
           count(*) FILTER (WHERE work_bytes IS NULL) AS running_unestimated
    FROM fathom_jobs WHERE state = 'running'
) w, (
    SELECT count(*) FILTER (WHERE fetched_bytes > 0) AS cold_jobs,
           coalesce(sum(fetched_bytes) FILTER (WHERE fetched_bytes > 0), 0)::int8 AS cold_bytes,
           coalesce(sum(secs) FILTER (WHERE fetched_bytes > 0), 0)::float8 AS cold_seconds,
           count(*) FILTER (WHERE fetched_bytes = 0) AS cached_jobs,
           coalesce(sum(secs) FILTER (WHERE fetched_bytes = 0), 0)::float8 AS cached_seconds,
           (percentile_disc(0.5) WITHIN GROUP (ORDER BY fetched_bytes))::int8 AS median_fetched_bytes,
           coalesce(sum(work_bytes), 0)::int8 AS estimated_bytes,
           coalesce(sum(fetched_bytes) FILTER (WHERE work_bytes IS NOT NULL), 0)::int8
               AS estimated_fetched_bytes,
           coalesce(sum(fetched_bytes / 1000), 0)::float8 AS sum_kb,
           coalesce(sum((fetched_bytes / 1000)::float8 ^ 2), 0)::float8 AS sum_kb2,
           coalesce(sum((fetched_bytes / 1000) * secs * 1000), 0)::float8 AS sum_kb_ms
    FROM (
        SELECT fetched_bytes, work_bytes,
               greatest(extract(epoch FROM finished_at - claimed_at)::float8, 0) AS secs
        FROM fathom_jobs
        WHERE state = 'succeeded' AND fetched_bytes IS NOT NULL AND claimed_at IS NOT NULL
        ORDER BY finished_at DESC
        LIMIT 200
    ) recent
) h, (
    SELECT count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE state = 'failed') AS failed,
           count(*) FILTER (WHERE state = 'dead') AS dead,
           count(*) FILTER (WHERE state = 'cancelled') AS cancelled
    FROM fathom_jobs WHERE state IN ('succeeded', 'failed', 'dead', 'cancelled')
) f
"#;

/// Jobs held per lease owner: the autoscaler's busy map (idle workers hold none).
pub(crate) const LEASE_OWNERS_SQL: &str = r#"
SELECT lease_owner, count(*) FROM fathom_jobs
WHERE state = 'running' AND lease_owner IS NOT NULL
GROUP BY lease_owner
"#;

pub(crate) const JOB_SQL: &str = r#"
SELECT id, kind, payload, dedup_key, platform, work_bytes, fetched_bytes, state, priority, attempt, max_attempts, lease_owner, last_error,
       enqueued_at, run_at, first_claimed_at, finished_at
FROM fathom_jobs WHERE id = $1
"#;

pub(crate) const CANCEL_SQL: &str = r#"
UPDATE fathom_jobs SET state = 'cancelled', finished_at = now()
WHERE id = $1 AND state = 'queued'
RETURNING id
"#;

impl Queue {
    /// Counts by state and the age of the oldest claimable job, in one query.
    pub async fn stats(&self) -> Result<QueueStats> {
        let rows = self.query(STATS_SQL, &[]).await?;
        let Some(row) = rows.first() else {
            return Ok(QueueStats::default());
        };
        let median: Option<i64> = row.try_get("median_fetched_bytes")?;
        let work = |bytes: &str, cached: &str, unestimated: &str| -> Result<Work> {
            Ok(Work::of(
                row.try_get(bytes)?,
                row.try_get(cached)?,
                row.try_get(unestimated)?,
                median,
            ))
        };
        Ok(QueueStats {
            ready_work: work("ready_estimated_bytes", "ready_cached", "ready_unestimated")?,
            running_work: work(
                "running_estimated_bytes",
                "running_cached",
                "running_unestimated",
            )?,
            recent: RecentWork {
                cold_jobs: row.try_get("cold_jobs")?,
                cold_bytes: row.try_get("cold_bytes")?,
                cold_seconds: row.try_get("cold_seconds")?,
                cached_jobs: row.try_get("cached_jobs")?,
                cached_seconds: row.try_get("cached_seconds")?,
                median_fetched_bytes: median,
                estimated_bytes: row.try_get("estimated_bytes")?,
                estimated_fetched_bytes: row.try_get("estimated_fetched_bytes")?,
                sum_kb: row.try_get("sum_kb")?,
                sum_kb2: row.try_get("sum_kb2")?,
                sum_kb_ms: row.try_get("sum_kb_ms")?,
            },
            ready: row.try_get("ready")?,
            scheduled: row.try_get("scheduled")?,
            running: row.try_get("running")?,
            succeeded: row.try_get("succeeded")?,
            failed: row.try_get("failed")?,
            dead: row.try_get("dead")?,
            cancelled: row.try_get("cancelled")?,
            oldest_ready_age_s: row.try_get("oldest_ready_age_s")?,
        })
    }

    /// Running jobs per lease owner (worker id).
    pub async fn lease_owners(&self) -> Result<BTreeMap<String, i64>> {
        let rows = self.query(LEASE_OWNERS_SQL, &[]).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// One job by id.
    pub async fn job(&self, id: i64) -> Result<Option<JobRecord>> {
        let rows = self.query(JOB_SQL, &[(&id, Type::INT8)]).await?;
        rows.first().map(record_from_row).transpose()
    }

    /// Cancels a queued job; false if it is not queued (running, finished or unknown).
    pub async fn cancel(&self, id: i64) -> Result<bool> {
        let rows = self.query(CANCEL_SQL, &[(&id, Type::INT8)]).await?;
        Ok(!rows.is_empty())
    }
}

fn record_from_row(row: &Row) -> Result<JobRecord> {
    let state: String = row.try_get("state")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        dedup_key: row.try_get("dedup_key")?,
        platform: row.try_get("platform")?,
        work_bytes: row.try_get("work_bytes")?,
        fetched_bytes: row.try_get("fetched_bytes")?,
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        lease_owner: row.try_get("lease_owner")?,
        last_error: row.try_get("last_error")?,
        enqueued_at: row.try_get("enqueued_at")?,
        run_at: row.try_get("run_at")?,
        first_claimed_at: row.try_get("first_claimed_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_recent_window_is_the_documented_one() {
        let limit = format!("LIMIT {}", crate::model::RECENT_WINDOW);
        assert!(super::STATS_SQL.contains(&limit), "{limit}");
    }
}
