//! Writing events into the outbox, inside the caller's transaction.

use sqlx::PgConnection;

/// One event to record: its CloudEvents `type` (one of [`crate::types`]), `subject` and `data`.
/// `id` and `time` are given by the database when the row is written; `source` when it is delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// CloudEvents `type`, e.g. [`crate::types::IMAGE_ANALYZED`].
    pub kind: &'static str,
    /// CloudEvents `subject`: an image digest, a tag reference, a vulnerability id or a feed name.
    pub subject: String,
    /// CloudEvents `data` (JSON).
    pub data: serde_json::Value,
}

impl NewEvent {
    /// An event of `kind` about `subject` carrying `data`.
    pub fn new(kind: &'static str, subject: impl Into<String>, data: serde_json::Value) -> Self {
        NewEvent {
            kind,
            subject: subject.into(),
            data,
        }
    }
}

/// Writes `event` on `conn` — call it on the connection of the transaction that makes the change, so
/// both commit or neither does. Returns the event's id (a UUID, its CloudEvents `id`).
pub async fn write(conn: &mut PgConnection, event: &NewEvent) -> sqlx::Result<String> {
    sqlx::query_scalar(
        "INSERT INTO notify_events (type, subject, data) VALUES ($1, $2, $3) RETURNING id::text",
    )
    .bind(event.kind)
    .bind(&event.subject)
    .bind(&event.data)
    .fetch_one(conn)
    .await
}

/// Writes every event of `events` in one statement (a fleet re-match may write thousands), in order.
pub async fn write_many(conn: &mut PgConnection, events: &[NewEvent]) -> sqlx::Result<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    let data: Vec<&serde_json::Value> = events.iter().map(|e| &e.data).collect();
    let done = sqlx::query(
        "INSERT INTO notify_events (type, subject, data) \
         SELECT t, s, d FROM unnest($1::text[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS e(t, s, d, n) \
         ORDER BY n",
    )
    .bind(&kinds)
    .bind(&subjects)
    .bind(&data)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
