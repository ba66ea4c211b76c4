//! The deliveries' SQL: fan-out from the outbox, the due head of each (endpoint, subject), outcomes,
//! the retry window, retries by hand, retention and the gauges' counts.
//!
//! Ordering: per endpoint, a delivery goes out only when it is the lowest-seq pending delivery of its
//! subject, so one subject's events arrive in seq order, each after the one before was delivered (or
//! died). Fan-out takes every committed event not yet fanned out, whatever its seq, so an event whose
//! transaction commits after a later seq was already fanned out is never skipped; it is then delivered
//! after the later one if that one already went out (order is seq order among the events of a subject
//! visible together, and commit order otherwise — two transactions writing one subject's events at the
//! same moment are the only way to see it).

use std::time::Duration;

use sqlx::{PgPool, Row};

use crate::config::EndpointConfig;

/// The channel the outbox's insert trigger notifies at commit; the dispatcher LISTENs on it.
pub const CHANNEL: &str = "fathom_notify_events";

/// `timestamptz` → RFC 3339 UTC text with microseconds (CloudEvents `time`, the API's timestamps).
macro_rules! rfc3339 {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}
pub(crate) use rfc3339;

/// Fans out up to `limit` events not yet fanned out into a pending delivery per endpoint that wants
/// them, in one transaction; returns the types of the events fanned out (the events-written counter).
pub async fn fan_out(
    pool: &PgPool,
    endpoints: &[EndpointConfig],
    limit: i64,
) -> sqlx::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut prefixes = Vec::new();
    for e in endpoints {
        if e.events.is_empty() {
            names.push(e.name.as_str());
            prefixes.push("");
        }
        for p in &e.events {
            names.push(e.name.as_str());
            prefixes.push(p.as_str());
        }
    }
    sqlx::query_scalar(
        "WITH ev AS ( \
             SELECT seq, type, subject FROM notify_events WHERE NOT fanned_out \
             ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED), \
         ins AS ( \
             INSERT INTO notify_deliveries (event_seq, endpoint, subject) \
             SELECT DISTINCT ev.seq, r.endpoint, ev.subject \
             FROM ev JOIN unnest($1::text[], $2::text[]) AS r(endpoint, prefix) \
               ON starts_with(ev.type, r.prefix) \
             ORDER BY ev.seq \
             ON CONFLICT (event_seq, endpoint) DO NOTHING) \
         UPDATE notify_events e SET fanned_out = true FROM ev WHERE e.seq = ev.seq RETURNING ev.type",
    )
    .bind(&names)
    .bind(&prefixes)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A delivery due now, with its event.
#[derive(Debug, Clone)]
pub struct Due {
    /// The delivery's id.
    pub delivery: i64,
    /// Attempts made so far.
    pub attempts: i32,
    /// The event's UUID (CloudEvents `id`).
    pub id: String,
    /// The event's type.
    pub kind: String,
    /// The event's subject.
    pub subject: String,
    /// The event's time, RFC 3339.
    pub time: String,
    /// The event's data.
    pub data: serde_json::Value,
}

/// Up to `limit` deliveries to `endpoint` that may go out now: the head (lowest seq) of each subject,
/// if its next attempt is due, oldest first.
pub async fn due_heads(pool: &PgPool, endpoint: &str, limit: i64) -> sqlx::Result<Vec<Due>> {
    let rows = sqlx::query(concat!(
        "SELECT d.id, d.attempts, e.id::text AS eid, e.type, e.subject, ",
        rfc3339!("e.time"),
        " AS time, e.data \
         FROM (SELECT DISTINCT ON (subject) id, event_seq, attempts, next_attempt_at \
               FROM notify_deliveries WHERE endpoint = $1 AND state = 'pending' \
               ORDER BY subject, event_seq) d \
         JOIN notify_events e ON e.seq = d.event_seq \
         WHERE d.next_attempt_at <= now() ORDER BY d.event_seq LIMIT $2"
    ))
    .bind(endpoint)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Due {
                delivery: r.try_get("id")?,
                attempts: r.try_get("attempts")?,
                id: r.try_get("eid")?,
                kind: r.try_get("type")?,
                subject: r.try_get("subject")?,
                time: r.try_get("time")?,
                data: r.try_get("data")?,
            })
        })
        .collect()
}

/// Seconds until the earliest pending head of `endpoint` is due (None: nothing pending).
pub async fn next_due_in(pool: &PgPool, endpoint: &str) -> sqlx::Result<Option<f64>> {
    sqlx::query_scalar(
        "SELECT greatest(0, extract(epoch FROM min(next_attempt_at) - now()))::float8 \
         FROM notify_deliveries WHERE endpoint = $1 AND state = 'pending'",
    )
    .bind(endpoint)
    .fetch_one(pool)
    .await
}

/// Marks deliveries delivered with their HTTP statuses; returns the seconds from each event's time to now
/// (the commit → 2xx latency).
pub async fn delivered(pool: &PgPool, done: &[(i64, i32)]) -> sqlx::Result<Vec<f64>> {
    if done.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = done.iter().map(|d| d.0).collect();
    let statuses: Vec<i32> = done.iter().map(|d| d.1).collect();
    sqlx::query_scalar(
        "UPDATE notify_deliveries d SET state = 'delivered', attempts = d.attempts + 1, \
             last_status = u.status, last_error = NULL, finished_at = now() \
         FROM unnest($1::bigint[], $2::int[]) AS u(id, status), notify_events e \
         WHERE d.id = u.id AND d.state = 'pending' AND e.seq = d.event_seq \
         RETURNING greatest(0, extract(epoch FROM now() - e.time))::float8",
    )
    .bind(&ids)
    .bind(&statuses)
    .fetch_all(pool)
    .await
}

/// Records a failed attempt: the next one after `retry_in`, or `dead` when the delivery has been owed
/// longer than `window`. Returns true when it died.
pub async fn failed(
    pool: &PgPool,
    delivery: i64,
    status: Option<i32>,
    error: &str,
    retry_in: Duration,
    window: Duration,
) -> sqlx::Result<bool> {
    let state: Option<String> = sqlx::query_scalar(
        "UPDATE notify_deliveries SET attempts = attempts + 1, last_status = $2, \
             last_error = CASE WHEN owed_since + make_interval(secs => $5) < now() \
                 THEN 'retry window passed; last: ' || $3 ELSE $3 END, \
             next_attempt_at = now() + make_interval(secs => $4), \
             state = CASE WHEN owed_since + make_interval(secs => $5) < now() THEN 'dead' ELSE 'pending' END, \
             finished_at = CASE WHEN owed_since + make_interval(secs => $5) < now() THEN now() END \
         WHERE id = $1 AND state = 'pending' RETURNING state",
    )
    .bind(delivery)
    .bind(status)
    .bind(error)
    .bind(retry_in.as_secs_f64())
    .bind(window.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(state.as_deref() == Some("dead"))
}

/// Deliveries owed longer than `window` become `dead` whether or not they were attempted (while an
/// endpoint is down only one delivery probes it); returns the endpoint of each.
pub async fn expire(pool: &PgPool, window: Duration) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "UPDATE notify_deliveries SET state = 'dead', finished_at = now(), \
             last_error = 'retry window passed; last: ' || coalesce(last_error, 'not attempted (endpoint down)') \
         WHERE state = 'pending' AND owed_since + make_interval(secs => $1) < now() RETURNING endpoint",
    )
    .bind(window.as_secs_f64())
    .fetch_all(pool)
    .await
}

/// Makes every pending delivery to `endpoint` due now (the endpoint answered again).
pub async fn release(pool: &PgPool, endpoint: &str) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE notify_deliveries SET next_attempt_at = now() \
         WHERE endpoint = $1 AND state = 'pending' AND next_attempt_at > now()",
    )
    .bind(endpoint)
    .execute(pool)
    .await?
    .rows_affected())
}

/// Puts dead deliveries (to `endpoint`, of events since `since` — RFC 3339 — when given) back to pending
/// with a fresh retry window, and wakes the dispatcher; returns how many.
pub async fn retry(
    pool: &PgPool,
    endpoint: Option<&str>,
    since: Option<&str>,
) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE notify_deliveries d SET state = 'pending', next_attempt_at = now(), owed_since = now(), \
             finished_at = NULL \
         FROM notify_events e \
         WHERE e.seq = d.event_seq AND d.state = 'dead' \
           AND ($1::text IS NULL OR d.endpoint = $1) AND ($2::timestamptz IS NULL OR e.time >= $2::timestamptz)",
    )
    .bind(endpoint)
    .bind(since)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// Deletes finished deliveries and events older than `retention`, `batch` rows per statement (short
/// locks, small WAL bursts) until none are left; an event with a pending delivery is kept. Returns
/// (deliveries, events) deleted.
pub async fn prune(pool: &PgPool, retention: Duration, batch: i64) -> sqlx::Result<(u64, u64)> {
    let secs = retention.as_secs_f64();
    let mut deliveries = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM notify_deliveries WHERE id IN ( \
                 SELECT id FROM notify_deliveries WHERE state <> 'pending' \
                 AND finished_at < now() - make_interval(secs => $1) LIMIT $2)",
        )
        .bind(secs)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        deliveries += n;
        if n < batch as u64 {
            break;
        }
    }
    let mut events = 0;
    loop {
        let n = sqlx::query(
            "DELETE FROM notify_events WHERE seq IN ( \
                 SELECT seq FROM notify_events e WHERE time < now() - make_interval(secs => $1) \
                 AND fanned_out AND NOT EXISTS ( \
                     SELECT 1 FROM notify_deliveries d WHERE d.event_seq = e.seq AND d.state = 'pending') \
                 ORDER BY seq LIMIT $2)",
        )
        .bind(secs)
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        events += n;
        if n < batch as u64 {
            break;
        }
    }
    Ok((deliveries, events))
}

/// What is owed to one endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owed {
    /// Pending deliveries.
    pub pending: i64,
    /// Dead deliveries (kept until retention).
    pub dead: i64,
    /// Seconds since the oldest pending delivery's event was written (0 when none).
    pub oldest_pending_secs: f64,
}

/// Pending and dead counts per endpoint, and the events not yet fanned out (count, oldest age). Every
/// core asks every few seconds, so the filter names only pending and dead rows (each state has a partial
/// index), not the delivered history kept for `retention`.
pub async fn owed(pool: &PgPool) -> sqlx::Result<(Vec<(String, Owed)>, i64, f64)> {
    let rows = sqlx::query(
        "SELECT d.endpoint, count(*) FILTER (WHERE d.state = 'pending') AS pending, \
             count(*) FILTER (WHERE d.state = 'dead') AS dead, \
             coalesce(extract(epoch FROM now() - min(e.time) FILTER (WHERE d.state = 'pending')), 0)::float8 AS oldest \
         FROM notify_deliveries d JOIN notify_events e ON e.seq = d.event_seq \
         WHERE (d.state = 'pending' OR d.state = 'dead') GROUP BY d.endpoint",
    )
    .fetch_all(pool)
    .await?;
    let per_endpoint = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get("endpoint")?,
                Owed {
                    pending: r.try_get("pending")?,
                    dead: r.try_get("dead")?,
                    oldest_pending_secs: r.try_get("oldest")?,
                },
            ))
        })
        .collect::<sqlx::Result<_>>()?;
    let row = sqlx::query(
        "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(time)), 0)::float8 AS oldest \
         FROM notify_events WHERE NOT fanned_out",
    )
    .fetch_one(pool)
    .await?;
    Ok((per_endpoint, row.try_get("n")?, row.try_get("oldest")?))
}
