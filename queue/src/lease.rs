//! Everything a lease holder can do: heartbeat, complete, fail, release. Each statement matches on the
//! lease token, so a worker that lost its lease can never overwrite the work of the one that took over.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tokio_postgres::types::Type;

use crate::error::{Error, Result};
use crate::model::{FailOutcome, Failure, HeartbeatOutcome, JobState, Lease};
use crate::queue::{secs, Queue};

/// Extends every listed lease still held; absent ids in the result were lost.
pub const HEARTBEAT_SQL: &str = r#"
UPDATE fathom_jobs j SET lease_expires_at = now() + make_interval(secs => $3)
FROM unnest($1::int8[], $2::int8[]) AS h(id, token)
WHERE j.id = h.id AND j.lease_token = h.token AND j.state = 'running'
RETURNING j.id
"#;

/// Marks leased jobs succeeded; returns the ids actually completed.
pub const COMPLETE_SQL: &str = r#"
UPDATE fathom_jobs j SET
    state = 'succeeded', finished_at = now(), last_error = NULL,
    lease_token = NULL, lease_expires_at = NULL
FROM unnest($1::int8[], $2::int8[]) AS c(id, token)
WHERE j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
RETURNING j.id
"#;

/// [`COMPLETE_SQL`] for one job that also records the bytes its worker fetched (`$3`, NULL: unknown), kept
/// next to the submitter's estimate so the estimate's error can be measured and throughput learned.
pub(crate) const COMPLETE_FETCHED_SQL: &str = r#"
UPDATE fathom_jobs SET
    state = 'succeeded', finished_at = now(), last_error = NULL,
    lease_token = NULL, lease_expires_at = NULL, fetched_bytes = greatest($3::int8, 0)
WHERE id = $1 AND lease_token = $2 AND state = 'running'
RETURNING id
"#;

/// Permanent → `failed`; out of attempts, or past the time budget (`$8` seconds since the first attempt or
/// the last requeue) → `dead`; otherwise back to `queued` after a capped exponential backoff with jitter
/// (half to full delay), never sooner than the remote side's Retry-After.
pub(crate) const FAIL_SQL: &str = r#"
WITH cur AS (
    SELECT id, CASE
        WHEN $3 THEN 'failed'
        WHEN attempt >= max_attempts
          OR now() >= coalesce(requeued_at, first_claimed_at, now()) + make_interval(secs => $8) THEN 'dead'
        ELSE 'queued' END AS next
    FROM fathom_jobs
    WHERE id = $1 AND lease_token = $2 AND state = 'running'
    FOR UPDATE
)
UPDATE fathom_jobs j SET
    state = cur.next,
    run_at = CASE WHEN cur.next <> 'queued' THEN j.run_at
             ELSE now() + make_interval(secs => greatest(
                 coalesce($6::float8, 0),
                 least($5::float8, $4::float8 * power(2, least(j.attempt - 1, 60))) * (0.5 + random() * 0.5)))
             END,
    finished_at = CASE WHEN cur.next <> 'queued' THEN now() END,
    last_error = $7, last_error_kind = $9, deferred_for = NULL,
    lease_token = NULL, lease_expires_at = NULL
FROM cur
WHERE j.id = cur.id
RETURNING j.state, j.run_at
"#;

/// Puts running jobs straight back (graceful shutdown): not counted as an attempt, claimable at once,
/// and workers are woken for them.
pub(crate) const RELEASE_SQL: &str = r#"
WITH released AS (
    UPDATE fathom_jobs j SET
        state = 'queued', attempt = greatest(j.attempt - 1, 0), run_at = now(),
        lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL, claimed_at = NULL
    FROM unnest($1::int8[], $2::int8[]) AS r(id, token)
    WHERE j.id = r.id AND j.lease_token = r.token AND j.state = 'running'
    RETURNING j.id
),
woken AS (
    SELECT pg_notify('fathom_jobs', count(*)::text || ' ' || floor(random() * 2147483647)::bigint::text) FROM released HAVING count(*) > 0
)
SELECT released.id FROM released, (SELECT count(*) FROM woken) AS w
"#;

/// The (state, run_at) a fail or defer statement returned, or [`Error::LeaseLost`] when it matched nothing.
pub(crate) fn outcome(row: Option<&tokio_postgres::Row>, job_id: i64) -> Result<FailOutcome> {
    let row = row.ok_or(Error::LeaseLost { job_id })?;
    let state: String = row.try_get("state")?;
    let run_at: SystemTime = row.try_get("run_at")?;
    Ok(FailOutcome {
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        run_at,
    })
}

fn split(leases: &[Lease]) -> (Vec<i64>, Vec<i64>) {
    leases.iter().map(|l| (l.job_id, l.token)).unzip()
}

impl Queue {
    /// Extends the leases of many jobs in one statement and reports which were lost.
    pub async fn heartbeat(
        &self,
        leases: &[Lease],
        lease_ttl: Duration,
    ) -> Result<HeartbeatOutcome> {
        if leases.is_empty() {
            return Ok(HeartbeatOutcome::default());
        }
        let (ids, tokens) = split(leases);
        let ttl = secs(lease_ttl);
        let rows = self
            .query(
                HEARTBEAT_SQL,
                &[
                    (&ids, Type::INT8_ARRAY),
                    (&tokens, Type::INT8_ARRAY),
                    (&ttl, Type::FLOAT8),
                ],
            )
            .await?;
        let extended: HashSet<i64> = rows
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<std::result::Result<_, _>>()?;
        let mut out = HeartbeatOutcome::default();
        for id in ids {
            if extended.contains(&id) {
                out.extended.push(id);
            } else {
                out.lost.push(id);
            }
        }
        Ok(out)
    }

    /// Marks a job succeeded. [`Error::LeaseLost`] if the lease is no longer ours.
    pub async fn complete(&self, lease: Lease) -> Result<()> {
        let lost = self.complete_many(&[lease]).await?;
        match lost.first() {
            Some(&job_id) => Err(Error::LeaseLost { job_id }),
            None => Ok(()),
        }
    }

    /// Marks many jobs succeeded in one statement (batched completion); returns the ids whose lease was
    /// lost (not completed).
    pub async fn complete_many(&self, leases: &[Lease]) -> Result<Vec<i64>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens) = split(leases);
        let rows = self
            .query(
                COMPLETE_SQL,
                &[(&ids, Type::INT8_ARRAY), (&tokens, Type::INT8_ARRAY)],
            )
            .await?;
        let done: HashSet<i64> = rows
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<std::result::Result<_, _>>()?;
        Ok(ids.into_iter().filter(|id| !done.contains(id)).collect())
    }

    /// Records a failed attempt. [`Error::LeaseLost`] if the lease is no longer ours.
    pub async fn fail(&self, lease: Lease, failure: Failure, error: &str) -> Result<FailOutcome> {
        self.fail_as(lease, failure, None, error).await
    }

    /// [`Queue::fail`] recording the failure's kind (a stable reason label, e.g. `manifest_unknown`) too,
    /// so dead jobs can be counted by kind ([`Queue::dead_by_kind`]).
    pub async fn fail_as(
        &self,
        lease: Lease,
        failure: Failure,
        kind: Option<&str>,
        error: &str,
    ) -> Result<FailOutcome> {
        let permanent = matches!(failure, Failure::Permanent);
        let retry_after = match failure {
            Failure::Retryable { retry_after } => retry_after.map(secs),
            Failure::Permanent => None,
        };
        let base = secs(self.config.backoff_base);
        let cap = secs(self.config.backoff_cap);
        let deadline = secs(self.config.deadline);
        let rows = self
            .query(
                FAIL_SQL,
                &[
                    (&lease.job_id, Type::INT8),
                    (&lease.token, Type::INT8),
                    (&permanent, Type::BOOL),
                    (&base, Type::FLOAT8),
                    (&cap, Type::FLOAT8),
                    (&retry_after, Type::FLOAT8),
                    (&error, Type::TEXT),
                    (&deadline, Type::FLOAT8),
                    (&kind, Type::TEXT),
                ],
            )
            .await?;
        outcome(rows.first(), lease.job_id)
    }

    /// Puts running jobs back in the queue at once (graceful shutdown); returns the ids released.
    pub async fn release(&self, leases: &[Lease]) -> Result<Vec<i64>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens) = split(leases);
        let rows = self
            .query(
                RELEASE_SQL,
                &[(&ids, Type::INT8_ARRAY), (&tokens, Type::INT8_ARRAY)],
            )
            .await?;
        rows.iter()
            .map(|r| r.try_get::<_, i64>(0).map_err(Error::from))
            .collect()
    }
}
