//! Maintenance any worker may run, without a leader: rescue expired leases, prune finished jobs, and
//! turns for periodic tasks that several processes share.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::error::Result;
use crate::model::JobState;
use crate::queue::{secs, Queue};

/// Expired leases go back to `queued` (the attempt they used counts) or `dead` when out of attempts. The
/// lease token is cleared, so the worker that stopped heartbeating can no longer complete the job. Many
/// workers run this concurrently: SKIP LOCKED splits the work, the partial index keeps it cheap.
pub(crate) const RESCUE_SQL: &str = r#"
WITH expired AS MATERIALIZED (
    SELECT id FROM fathom_jobs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE fathom_jobs j SET
        state = CASE WHEN j.attempt >= j.max_attempts THEN 'dead' ELSE 'queued' END,
        finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
        run_at = now(),
        last_error = format('lease expired: worker %s stopped heartbeating during attempt %s',
                            coalesce(j.lease_owner, '?'), j.attempt),
        last_error_kind = 'lease_expired',
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.state
),
woken AS (
    SELECT pg_notify('fathom_jobs', count(*)::text || ' ' || floor(random() * 2147483647)::bigint::text) FROM rescued
    WHERE state = 'queued' HAVING count(*) > 0
)
SELECT rescued.id, rescued.state FROM rescued, (SELECT count(*) FROM woken) AS w
"#;

/// Deletes one batch of finished jobs older than the retention period.
pub(crate) const PRUNE_SQL: &str = r#"
WITH doomed AS MATERIALIZED (
    SELECT id FROM fathom_jobs
    WHERE state IN ('succeeded', 'failed', 'dead', 'cancelled')
      AND finished_at < now() - make_interval(secs => $1)
    ORDER BY finished_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM fathom_jobs j USING doomed WHERE j.id = doomed.id
"#;

/// Takes the task's turn when its last run is at least `$2` seconds old (or it never ran). Concurrent
/// callers serialize on the row: the one that moved `last_run` gets a row back, the others none.
const TAKE_TURN_SQL: &str = r#"
INSERT INTO fathom_maintenance_turns AS t (task, last_run) VALUES ($1, now())
ON CONFLICT (task) DO UPDATE SET last_run = now()
WHERE t.last_run <= now() - make_interval(secs => $2)
RETURNING 1
"#;

/// Rows deleted per prune statement: small enough to keep locks and WAL bursts short.
const PRUNE_BATCH: i64 = 5_000;

impl Queue {
    /// Rescues up to `limit` jobs whose lease expired; returns (id, new state) of each. Runs on the
    /// waker's listening connection when this queue is bound to one ([`Queue::with_listener`]).
    pub async fn rescue_expired(&self, limit: usize) -> Result<Vec<(i64, JobState)>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query_on_listener(RESCUE_SQL, &[(&limit, Type::INT8)])
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(1)?;
                Ok((
                    row.try_get(0)?,
                    JobState::parse(&state).unwrap_or(JobState::Queued),
                ))
            })
            .collect()
    }

    /// Whether this process should run the periodic `task` now: true for exactly one of the callers
    /// within each `every` (fleet-wide, through Postgres), so N replicas ticking on their own clocks run
    /// it about once per `every` together. Callers tick at `every` and pass a little less (jitter).
    pub async fn take_turn(&self, task: &str, every: Duration) -> Result<bool> {
        let every = secs(every);
        let rows = self
            .query(
                TAKE_TURN_SQL,
                &[(&task, Type::TEXT), (&every, Type::FLOAT8)],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// Deletes finished jobs that finished more than `retention` ago, in batches; returns how many.
    pub async fn prune(&self, retention: Duration) -> Result<u64> {
        let retention = secs(retention);
        let mut total = 0;
        loop {
            let client = self.pool.get().await?;
            let statement = client
                .prepare_typed_cached(PRUNE_SQL, &[Type::FLOAT8, Type::INT8])
                .await?;
            let deleted = client
                .execute(&statement, &[&retention, &PRUNE_BATCH])
                .await?;
            total += deleted;
            if deleted < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }
}
