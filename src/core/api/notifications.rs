//! The event log and what is owed to whom: `GET /v1/events`, `GET /v1/notifications/deliveries`,
//! `POST /v1/notifications/deliveries/retry` (dead deliveries back to pending with a fresh retry window).

use std::sync::Arc;

use axum::extract::State;
use fathom_notify::log::{DeliveryRow, EventFilter, LoggedEvent};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Json, Query};
use super::images::Page;
use super::ApiState;

/// A database error of these routes, as the client sees it (details go to the log).
fn db_error(e: sqlx::Error) -> ApiError {
    if matches!(
        e,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    ) {
        tracing::warn!(error = %e, "database unreachable");
        ApiError::unavailable("the database cannot be reached; retry shortly")
    } else {
        tracing::error!(error = %e, "notifications query failed");
        ApiError::internal("internal error; the server log has the details")
    }
}

/// An RFC 3339 time given as `field`, normalized for the database; a clear 400 otherwise.
fn rfc3339(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    value
        .map(|t| {
            humantime::parse_rfc3339_weak(t)
                .map(|ts| humantime::format_rfc3339_micros(ts).to_string())
                .map_err(|e| {
                    ApiError::invalid(format!(
                        "{field}: {t:?} is not an RFC 3339 time like 2026-12-15T10:00:00Z ({e})"
                    ))
                })
        })
        .transpose()
}

fn cursor(value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("cursor: {c:?} is not a cursor")))
        })
        .transpose()
}

/// `GET /v1/events` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Exact type, or a prefix ending in `.`.
    #[serde(rename = "type")]
    kind: Option<String>,
    subject: Option<String>,
    since: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) async fn events(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<EventsQuery>,
) -> Result<axum::Json<Page<LoggedEvent>>, ApiError> {
    let limit = state.page_size(query.limit)?;
    let filter = EventFilter {
        kind: query.kind.filter(|k| !k.is_empty()),
        subject: query.subject.filter(|s| !s.is_empty()),
        since: rfc3339("since", query.since.as_deref())?,
        cursor: cursor(query.cursor.as_deref())?,
        limit: i64::from(limit),
    };
    let (items, next) = fathom_notify::log::events(state.store.pool(), &filter)
        .await
        .map_err(db_error)?;
    Ok(axum::Json(Page::new(items, next.map(|n| n.to_string()))))
}

/// `GET /v1/notifications/deliveries` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    state: Option<String>,
    endpoint: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) async fn deliveries(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<axum::Json<Page<DeliveryRow>>, ApiError> {
    if let Some(s) = query.state.as_deref() {
        if !matches!(s, "pending" | "delivered" | "dead") {
            return Err(ApiError::invalid(format!(
                "state: {s:?} is not pending, delivered or dead"
            )));
        }
    }
    let limit = state.page_size(query.limit)?;
    let (items, next) = fathom_notify::log::deliveries(
        state.store.pool(),
        query.state.as_deref(),
        query.endpoint.as_deref(),
        cursor(query.cursor.as_deref())?,
        i64::from(limit),
    )
    .await
    .map_err(db_error)?;
    Ok(axum::Json(Page::new(items, next.map(|n| n.to_string()))))
}

/// `POST /v1/notifications/deliveries/retry` body; filters combine with AND.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Only deliveries to this endpoint.
    endpoint: Option<String>,
    /// Only deliveries of events written at or after this RFC 3339 time.
    since: Option<String>,
}

/// How many dead deliveries went back to pending.
#[derive(Debug, Serialize)]
pub struct Retried {
    retried: u64,
}

pub(super) async fn retry(
    State(state): State<Arc<ApiState>>,
    Json(body): Json<RetryBody>,
) -> Result<axum::Json<Retried>, ApiError> {
    let since = rfc3339("since", body.since.as_deref())?;
    let retried = fathom_notify::deliveries::retry(
        state.store.pool(),
        body.endpoint.as_deref(),
        since.as_deref(),
    )
    .await
    .map_err(db_error)?;
    Ok(axum::Json(Retried { retried }))
}
