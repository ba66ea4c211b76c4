//! Read-side queries: stats for the autoscaler and dashboards, who holds what, single-job lookup, cancel.

use std::collections::BTreeMap;

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::error::Result;
use crate::model::{JobRecord, JobState, QueueStats};
use crate::queue::Queue;

/// Each count is a separate subquery so each can use its partial index; finished-state counts are
/// bounded by the pruning retention.
pub const STATS_SQL: &str = r#"
SELECT
    (SELECT count(*) FROM fathom_jobs WHERE state = 'queued' AND run_at <= now()) AS ready,
    (SELECT count(*) FROM fathom_jobs WHERE state = 'queued' AND run_at > now()) AS scheduled,
    (SELECT count(*) FROM fathom_jobs WHERE state = 'running') AS running,
    (SELECT coalesce(extract(epoch FROM now() - min(enqueued_at))::float8, 0)
       FROM fathom_jobs WHERE state = 'queued' AND run_at <= now()) AS oldest_ready_age_s,
    f.succeeded, f.failed, f.dead, f.cancelled
FROM (
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
SELECT id, kind, payload, dedup_key, platform, state, priority, attempt, max_attempts, lease_owner, last_error,
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
        Ok(QueueStats {
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
