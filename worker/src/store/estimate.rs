//! Work estimates of submissions: a submitter with the manifest at hand queues its job with the bytes
//! of its layers not in the layer cache (see [`super::submit_estimated_in`]).

use sqlx::PgConnection;

use super::{submit_estimated_in, Result, Store, SubmitOptions, Submitted};

/// Gives an estimate to live jobs that were queued without one (a job deduplicated with a submission
/// that had the manifest at hand: a repository watch's tag queued at creation, then resolved by the
/// first pass; an API job the webhook then admits), so the autoscaler counts what the later submitter
/// knew. A job that already has an estimate keeps it, and a running job is left alone (what it fetches
/// is being measured).
const FILL_ESTIMATES_SQL: &str = r#"
UPDATE fathom_jobs j SET work_bytes = u.bytes
FROM unnest($1::int8[], $2::int8[]) AS u(id, bytes)
WHERE j.id = u.id AND j.work_bytes IS NULL AND j.state = 'queued'
"#;

/// Fills the estimate of existing jobs (`ids[i]` gets `bytes[i]`) that have none; see
/// [`FILL_ESTIMATES_SQL`].
pub(super) async fn fill_missing(
    conn: &mut PgConnection,
    ids: &[i64],
    bytes: &[i64],
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(FILL_ESTIMATES_SQL)
        .bind(ids)
        .bind(bytes)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// [`Store::submit_with`] for a submitter that has the manifests at hand: `layers[i]` (when given)
    /// lists `references[i]`'s layers as `(digest, compressed size)`, and its job carries the bytes of
    /// those not in the layer cache under `cache_key` (see [`submit_estimated_in`]).
    pub async fn submit_estimated(
        &self,
        references: &[String],
        layers: &[Option<Vec<(String, u64)>>],
        cache_key: &str,
        options: &SubmitOptions,
    ) -> Result<Vec<Submitted>> {
        let mut tx = self.pool.begin().await?;
        let submitted =
            submit_estimated_in(&mut tx, references, layers, cache_key, options).await?;
        tx.commit().await?;
        Ok(submitted)
    }
}
