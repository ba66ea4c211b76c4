//! Outage handling: park a job for an unavailable resource without charging an attempt, release every job
//! parked for it at once when it is back, and requeue finished (`dead`/`failed`) jobs with their history.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio_postgres::types::Type;

use crate::error::{Error, Result};
use crate::lease::outcome;
use crate::model::{FailOutcome, JobState, Lease};
use crate::queue::{secs, Queue};

/// Back to `queued` after `$3` seconds with the claim's attempt given back, parked for resource `$4`; `dead`
/// instead when the job's time budget (`$5` seconds since its first attempt or last requeue) is spent.
pub(crate) const DEFER_SQL: &str = r#"
UPDATE fathom_jobs SET
    state = CASE WHEN now() >= coalesce(requeued_at, first_claimed_at, now()) + make_interval(secs => $5)
                 THEN 'dead' ELSE 'queued' END,
    finished_at = CASE WHEN now() >= coalesce(requeued_at, first_claimed_at, now()) + make_interval(secs => $5)
                 THEN now() END,
    attempt = greatest(attempt - 1, 0),
    run_at = now() + make_interval(secs => $3),
    deferred_for = $4,
    last_error = $6, last_error_kind = $7,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, claimed_at = NULL
WHERE id = $1 AND lease_token = $2 AND state = 'running'
RETURNING state, run_at
"#;

/// Every job parked for `$1` becomes claimable now; workers are woken for them.
pub(crate) const RESUME_SQL: &str = r#"
WITH resumed AS (
    UPDATE fathom_jobs SET run_at = now(), deferred_for = NULL
    WHERE state = 'queued' AND deferred_for = $1
    RETURNING id
),
woken AS (
    SELECT pg_notify('fathom_jobs', count(*)::text || ' ' || floor(random() * 2147483647)::bigint::text)
    FROM resumed HAVING count(*) > 0
)
SELECT count(*) FROM resumed, (SELECT count(*) FROM woken) AS w
"#;

/// Finished jobs in the states `$1`, optionally only job `$2`, reference `$3`, finished since `$4`, go back
/// to `queued` with a fresh attempt and time budget; their attempts, last error and enqueue time stay.
/// A job whose dedup key has a live sibling (or a newer finished one picked too) is skipped: the unique
/// dedup index allows one live job per key.
pub(crate) const REQUEUE_SQL: &str = r#"
WITH picked AS MATERIALIZED (
    SELECT DISTINCT ON (kind, coalesce(dedup_key, id::text)) id
    FROM fathom_jobs j
    WHERE j.state = ANY($1::text[])
      AND ($2::int8 IS NULL OR j.id = $2)
      AND ($3::text IS NULL OR j.payload->>'reference' = $3)
      AND ($4::timestamptz IS NULL OR j.finished_at >= $4)
      AND (j.dedup_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM fathom_jobs l
          WHERE l.kind = j.kind AND l.dedup_key = j.dedup_key AND l.state IN ('queued', 'running')))
    ORDER BY kind, coalesce(dedup_key, id::text), id DESC
),
requeued AS (
    UPDATE fathom_jobs j SET
        state = 'queued', run_at = now(), finished_at = NULL, deferred_for = NULL,
        max_attempts = j.attempt + j.max_attempts,
        requeues = j.requeues + 1, requeued_at = now()
    FROM picked
    WHERE j.id = picked.id AND j.state = ANY($1::text[])
    RETURNING j.id
),
woken AS (
    SELECT pg_notify('fathom_jobs', count(*)::text || ' ' || floor(random() * 2147483647)::bigint::text)
    FROM requeued HAVING count(*) > 0
)
SELECT requeued.id FROM requeued, (SELECT count(*) FROM woken) AS w ORDER BY requeued.id
"#;

/// Dead jobs per last error kind (`unknown` for jobs failed before kinds were recorded).
pub(crate) const DEAD_BY_KIND_SQL: &str = r#"
SELECT coalesce(last_error_kind, 'unknown'), count(*) FROM fathom_jobs
WHERE state = 'dead' GROUP BY 1
"#;

/// Which finished jobs [`Queue::requeue`] brings back. Filters combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requeue {
    /// States to requeue from: `dead`, `failed` (both when empty).
    pub states: Vec<JobState>,
    /// Only this job.
    pub id: Option<i64>,
    /// Only jobs whose payload `reference` is exactly this.
    pub reference: Option<String>,
    /// Only jobs finished at or after this time.
    pub since: Option<SystemTime>,
}

impl Queue {
    /// Gives a running job back without charging the attempt: claimable again in `delay`, parked for
    /// `resource` (so [`Queue::resume`] can release it early). Goes `dead` instead once the job's time
    /// budget is spent, so an outage longer than the budget still ends. [`Error::LeaseLost`] if the lease
    /// is no longer ours.
    pub async fn defer(
        &self,
        lease: Lease,
        delay: Duration,
        resource: &str,
        kind: &str,
        error: &str,
    ) -> Result<FailOutcome> {
        let delay = secs(delay);
        let deadline = secs(self.config.deadline);
        let rows = self
            .query(
                DEFER_SQL,
                &[
                    (&lease.job_id, Type::INT8),
                    (&lease.token, Type::INT8),
                    (&delay, Type::FLOAT8),
                    (&resource, Type::TEXT),
                    (&deadline, Type::FLOAT8),
                    (&error, Type::TEXT),
                    (&kind, Type::TEXT),
                ],
            )
            .await?;
        outcome(rows.first(), lease.job_id)
    }

    /// Makes every job parked for `resource` claimable now and wakes workers; returns how many.
    pub async fn resume(&self, resource: &str) -> Result<i64> {
        let rows = self.query(RESUME_SQL, &[(&resource, Type::TEXT)]).await?;
        Ok(rows.first().map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
    }

    /// Requeues finished jobs matching `filter`; returns their ids. Only `dead` and `failed` jobs can be
    /// requeued ([`Error::Config`] for other states).
    pub async fn requeue(&self, filter: &Requeue) -> Result<Vec<i64>> {
        let states: Vec<String> = if filter.states.is_empty() {
            vec!["dead".into(), "failed".into()]
        } else {
            filter
                .states
                .iter()
                .map(|s| s.as_str().to_string())
                .collect()
        };
        if let Some(bad) = states
            .iter()
            .find(|s| !matches!(s.as_str(), "dead" | "failed"))
        {
            return Err(Error::Config(format!(
                "only dead or failed jobs can be requeued, not {bad}"
            )));
        }
        let rows = self
            .query(
                REQUEUE_SQL,
                &[
                    (&states, Type::TEXT_ARRAY),
                    (&filter.id, Type::INT8),
                    (&filter.reference, Type::TEXT),
                    (&filter.since, Type::TIMESTAMPTZ),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map_err(Error::from))
            .collect()
    }

    /// Dead jobs per last error kind (the reason label of their last failure).
    pub async fn dead_by_kind(&self) -> Result<BTreeMap<String, i64>> {
        let rows = self.query(DEAD_BY_KIND_SQL, &[]).await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }
}
