//! The same statements on the caller's sqlx connection or transaction, for work that must commit together
//! with a queue change: the API enqueues in the transaction that records an image; a worker stores its result
//! and completes the job in one transaction, so a result exists exactly when its job succeeded.

use sqlx::PgConnection;

use crate::enqueue::{Rounds, ENQUEUE_SQL};
use crate::error::{Error, Result};
use crate::lease::{COMPLETE_FETCHED_SQL, COMPLETE_SQL};
use crate::model::{Enqueued, Lease, NewJob};

/// [`crate::Queue::enqueue_many`] on the caller's connection (inside its transaction, if it has one).
pub async fn enqueue_many_in(conn: &mut PgConnection, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
    let mut rounds = Rounds::new(jobs);
    while let Some(c) = rounds.next_batch() {
        let rows: Vec<(i64, Option<i64>, bool)> = sqlx::query_as(ENQUEUE_SQL)
            .bind(&c.kinds)
            .bind(&c.payloads)
            .bind(&c.dedup_keys)
            .bind(&c.priorities)
            .bind(&c.delays)
            .bind(&c.max_attempts)
            .bind(&c.platforms)
            .bind(&c.work_bytes)
            .fetch_all(&mut *conn)
            .await?;
        rounds.record(rows.into_iter().map(|(_, id, created)| (id, created)));
    }
    rounds.finish()
}

/// [`crate::Queue::complete`] on the caller's connection: commit it with the job's result, and roll the
/// result back on [`Error::LeaseLost`].
pub async fn complete_in(conn: &mut PgConnection, lease: Lease) -> Result<()> {
    let done: Vec<(i64,)> = sqlx::query_as(COMPLETE_SQL)
        .bind(vec![lease.job_id])
        .bind(vec![lease.token])
        .fetch_all(&mut *conn)
        .await?;
    if done.is_empty() {
        Err(Error::LeaseLost {
            job_id: lease.job_id,
        })
    } else {
        Ok(())
    }
}

/// [`complete_in`] that also records the compressed bytes the worker fetched for the job (0 when every
/// layer came from the cache), next to the submitter's estimate.
pub async fn complete_fetched_in(
    conn: &mut PgConnection,
    lease: Lease,
    fetched_bytes: u64,
) -> Result<()> {
    let fetched = i64::try_from(fetched_bytes).unwrap_or(i64::MAX);
    let done: Vec<(i64,)> = sqlx::query_as(COMPLETE_FETCHED_SQL)
        .bind(lease.job_id)
        .bind(lease.token)
        .bind(fetched)
        .fetch_all(&mut *conn)
        .await?;
    if done.is_empty() {
        Err(Error::LeaseLost {
            job_id: lease.job_id,
        })
    } else {
        Ok(())
    }
}
