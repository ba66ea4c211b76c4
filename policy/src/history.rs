//! Evaluation history (feature `store`): a summary of every evaluation, the newest N kept per image.

use serde::Serialize;
use sqlx::PgPool;

use crate::result::Evaluation;

/// One evaluation's summary as stored.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct HistoryEntry {
    /// Row id: increases with every evaluation, the paging cursor.
    pub id: i64,
    /// Image digest.
    pub image_digest: String,
    /// The reference the image was evaluated under, if any.
    pub tag: Option<String>,
    /// Bundle id.
    pub bundle_id: String,
    /// Digest of the canonical bundle.
    pub bundle_digest: String,
    /// STOP, WARN or GO.
    pub final_action: String,
    /// policy_evaluation, whitelisted or blacklisted.
    pub reason: String,
    /// The feed generations and syncs the evaluation saw (the cache key's feed part).
    pub feed_state: String,
    /// The evaluation's clock (RFC 3339, UTC).
    pub evaluated_at: String,
}

/// Inserts the new row and, in the same statement, deletes the image's rows beyond the newest `keep`
/// (the delete sees the table before the insert, so it keeps `keep - 1` old rows).
const RECORD_SQL: &str = r#"
WITH added AS (
    INSERT INTO fathom_policy_evaluations
        (image_digest, tag, bundle_id, bundle_digest, final_action, reason, feed_state, evaluated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz)
    RETURNING id
)
DELETE FROM fathom_policy_evaluations
WHERE image_digest = $1 AND id < ALL (SELECT id FROM added) AND id NOT IN (
    SELECT id FROM fathom_policy_evaluations WHERE image_digest = $1 ORDER BY id DESC LIMIT $9
)"#;

const PAGE_SQL: &str = r#"
SELECT id, image_digest, tag, bundle_id, bundle_digest, final_action, reason, feed_state,
    to_char(evaluated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS evaluated_at
FROM fathom_policy_evaluations
WHERE image_digest = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3"#;

/// Records `evaluation` (seen under `tag`, with `feed_state`) and keeps the image's newest `keep` rows.
/// `keep` 0 records nothing.
pub async fn record(
    pool: &PgPool,
    evaluation: &Evaluation,
    tag: Option<&str>,
    feed_state: &str,
    keep: u32,
) -> sqlx::Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let reason = serde_json::to_value(evaluation.final_action_reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    sqlx::query(RECORD_SQL)
        .bind(&evaluation.image_digest)
        .bind(tag)
        .bind(&evaluation.bundle_id)
        .bind(&evaluation.bundle_digest)
        .bind(evaluation.final_action.as_str())
        .bind(reason)
        .bind(feed_state)
        .bind(evaluation.evaluated_at.to_string())
        .bind(i64::from(keep) - 1)
        .execute(pool)
        .await?;
    Ok(())
}

/// The image's evaluations, newest first: at most `limit`, older than the row id `before` when given.
pub async fn page(
    pool: &PgPool,
    digest: &str,
    before: Option<i64>,
    limit: u32,
) -> sqlx::Result<Vec<HistoryEntry>> {
    sqlx::query_as(PAGE_SQL)
        .bind(digest)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
}
