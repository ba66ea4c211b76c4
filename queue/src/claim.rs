//! Claim: a batch of ready jobs in one statement, `FOR UPDATE SKIP LOCKED` behind a materialized CTE.

use std::time::Duration;

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::error::Result;
use crate::model::{ClaimedJob, Lease};
use crate::queue::{secs, Queue};

/// The CTE is `MATERIALIZED` so the LIMIT subquery runs exactly once: inlined into a nested loop the
/// planner may re-run it and lock more rows than asked (Oban's lesson). The ready partial index is walked in
/// (priority, run_at, id) order, so the cost is O(batch) however many finished rows the table holds.
pub const CLAIM_SQL: &str = r#"
WITH ready AS MATERIALIZED (
    SELECT id FROM fathom_jobs
    WHERE state = 'queued' AND kind = $1 AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE fathom_jobs j SET
    state = 'running',
    attempt = j.attempt + 1,
    lease_owner = $3,
    lease_expires_at = now() + make_interval(secs => $4),
    lease_token = nextval('fathom_lease_token_seq'),
    claimed_at = now(),
    first_claimed_at = coalesce(j.first_claimed_at, now())
FROM ready
WHERE j.id = ready.id
RETURNING j.id, j.lease_token, j.kind, j.payload, j.platform, j.priority, j.attempt, j.max_attempts,
          j.lease_expires_at, j.enqueued_at, j.claimed_at
"#;

impl Queue {
    /// Claims up to `n` ready jobs of `kind` for `worker_id`, each leased for `lease_ttl`. Returns at once
    /// with what is there (possibly nothing); waiting for work is [`crate::Waker`]'s job. Runs on the
    /// waker's listening connection when this queue is bound to one ([`Queue::with_listener`]).
    pub async fn claim(
        &self,
        kind: &str,
        n: usize,
        worker_id: &str,
        lease_ttl: Duration,
    ) -> Result<Vec<ClaimedJob>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(n).unwrap_or(i64::MAX);
        let ttl = secs(lease_ttl);
        let rows = self
            .query_on_listener(
                CLAIM_SQL,
                &[
                    (&kind, Type::TEXT),
                    (&limit, Type::INT8),
                    (&worker_id, Type::TEXT),
                    (&ttl, Type::FLOAT8),
                ],
            )
            .await?;
        rows.iter().map(claimed_from_row).collect()
    }
}

pub(crate) fn claimed_from_row(row: &Row) -> Result<ClaimedJob> {
    Ok(ClaimedJob {
        lease: Lease {
            job_id: row.try_get("id")?,
            token: row.try_get("lease_token")?,
        },
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        platform: row.try_get("platform")?,
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        enqueued_at: row.try_get("enqueued_at")?,
        claimed_at: row.try_get("claimed_at")?,
    })
}
