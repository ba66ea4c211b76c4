//! Reading the event log and the deliveries (the API's `GET /v1/events` and
//! `GET /v1/notifications/deliveries`, `fathom events list`).

use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::deliveries::rfc3339;

/// Filters of an event-log page. `since` is RFC 3339 (checked by the caller).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Exact CloudEvents type, or a prefix ending in `.` (`dev.fathom.image.`).
    pub kind: Option<String>,
    /// Exact subject.
    pub subject: Option<String>,
    /// Events written at or after this time.
    pub since: Option<String>,
    /// Events after this seq (the previous page's `next`).
    pub cursor: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// One logged event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedEvent {
    /// Position in the log (cursors count in it).
    pub seq: i64,
    /// CloudEvents `id`.
    pub id: String,
    /// CloudEvents `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// CloudEvents `subject`.
    pub subject: String,
    /// When it was written (RFC 3339).
    pub time: String,
    /// CloudEvents `data`.
    pub data: serde_json::Value,
}

/// A page of events in log order, and the cursor of the next page when this one is full.
pub async fn events(
    pool: &PgPool,
    f: &EventFilter,
) -> sqlx::Result<(Vec<LoggedEvent>, Option<i64>)> {
    let prefix = f.kind.as_deref().filter(|k| k.ends_with('.'));
    let exact = f.kind.as_deref().filter(|k| !k.ends_with('.'));
    let rows = sqlx::query(concat!(
        "SELECT seq, id::text AS id, type, subject, ",
        rfc3339!("time"),
        " AS time, data FROM notify_events \
         WHERE ($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR starts_with(type, $2)) \
           AND ($3::text IS NULL OR subject = $3) AND ($4::timestamptz IS NULL OR time >= $4::timestamptz) \
           AND seq > coalesce($5, 0) \
         ORDER BY seq LIMIT $6"
    ))
    .bind(exact)
    .bind(prefix)
    .bind(&f.subject)
    .bind(&f.since)
    .bind(f.cursor)
    .bind(f.limit)
    .fetch_all(pool)
    .await?;
    let events: Vec<LoggedEvent> = rows
        .iter()
        .map(|r| {
            Ok(LoggedEvent {
                seq: r.try_get("seq")?,
                id: r.try_get("id")?,
                kind: r.try_get("type")?,
                subject: r.try_get("subject")?,
                time: r.try_get("time")?,
                data: r.try_get("data")?,
            })
        })
        .collect::<sqlx::Result<_>>()?;
    let next = (events.len() as i64 == f.limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok((events, next))
}

/// One delivery, as the API shows it (never a secret: `last_error` holds statuses and transport errors).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    /// The delivery's id (cursors count in it).
    pub id: i64,
    /// The endpoint's name.
    pub endpoint: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    /// The event's CloudEvents `id`.
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's subject.
    pub subject: String,
    /// When the event was written.
    pub event_time: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due (pending only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// Last HTTP status, when there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<i32>,
    /// What went wrong last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was delivered or died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A page of deliveries in `state` (any when None) to `endpoint` (any when None), by id.
pub async fn deliveries(
    pool: &PgPool,
    state: Option<&str>,
    endpoint: Option<&str>,
    cursor: Option<i64>,
    limit: i64,
) -> sqlx::Result<(Vec<DeliveryRow>, Option<i64>)> {
    let rows = sqlx::query(concat!(
        "SELECT d.id, d.endpoint, d.state, e.id::text AS event_id, e.type, e.subject, ",
        rfc3339!("e.time"),
        " AS event_time, d.attempts, CASE WHEN d.state = 'pending' THEN ",
        rfc3339!("d.next_attempt_at"),
        " END AS next_attempt_at, d.last_status, d.last_error, ",
        rfc3339!("d.finished_at"),
        " AS finished_at FROM notify_deliveries d JOIN notify_events e ON e.seq = d.event_seq \
         WHERE ($1::text IS NULL OR d.state = $1) AND ($2::text IS NULL OR d.endpoint = $2) \
           AND d.id > coalesce($3, 0) ORDER BY d.id LIMIT $4"
    ))
    .bind(state)
    .bind(endpoint)
    .bind(cursor)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let out: Vec<DeliveryRow> = rows
        .iter()
        .map(|r| {
            Ok(DeliveryRow {
                id: r.try_get("id")?,
                endpoint: r.try_get("endpoint")?,
                state: r.try_get("state")?,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("type")?,
                subject: r.try_get("subject")?,
                event_time: r.try_get("event_time")?,
                attempts: r.try_get("attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                last_status: r.try_get("last_status")?,
                last_error: r.try_get("last_error")?,
                finished_at: r.try_get("finished_at")?,
            })
        })
        .collect::<sqlx::Result<_>>()?;
    let next = (out.len() as i64 == limit)
        .then(|| out.last().map(|d| d.id))
        .flatten();
    Ok((out, next))
}
