//! `/v1/queue`, `/v1/jobs/{id}` and `/v1/packages`: the queue's state, cancelling queued work, and
//! which analyzed images hold a package.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fathom_queue::{JobState, QueueStats};
use fathom_worker::store::{PackageHit, PackageQuery};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Path, Query};
use super::ApiState;

/// `GET /v1/queue` answer: the counts, and dead jobs by their last error's kind (what `fathom queue
/// stats` shows), so an operator sees from the API why work died.
#[derive(Debug, Serialize)]
pub struct StatsAnswer {
    #[serde(flatten)]
    stats: QueueStats,
    dead_by_kind: BTreeMap<String, i64>,
}

pub(super) async fn stats(
    State(state): State<Arc<ApiState>>,
) -> Result<axum::Json<StatsAnswer>, ApiError> {
    Ok(axum::Json(StatsAnswer {
        stats: state.queue.stats().await?,
        dead_by_kind: state.queue.dead_by_kind().await?,
    }))
}

pub(super) async fn cancel(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    if state.queue.cancel(id).await? {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // Nothing was cancelled: say why.
    match state.queue.job(id).await? {
        None => Err(ApiError::not_found(format!("no job {id}"))),
        Some(job) if job.state == JobState::Running => Err(ApiError::conflict(format!(
            "job {id} is running on {}; only queued jobs can be cancelled",
            job.lease_owner.unwrap_or_default()
        ))),
        Some(job) => Err(ApiError::conflict(format!(
            "job {id} already finished ({})",
            job.state.as_str()
        ))),
    }
}

/// `GET /v1/packages` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindQuery {
    name: Option<String>,
    version: Option<String>,
    #[serde(rename = "type")]
    package_type: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/packages` answer.
#[derive(Debug, Serialize)]
pub struct FindAnswer {
    items: Vec<PackageHit>,
    /// Whether more rows matched than `limit`.
    truncated: bool,
}

pub(super) async fn find(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<FindQuery>,
) -> Result<axum::Json<FindAnswer>, ApiError> {
    let name = query
        .name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("name: required (the package name to look for)"))?;
    let limit = state.page_size(query.limit)?;
    let mut items = state
        .store
        .find_packages(&PackageQuery {
            name,
            package_type: query.package_type,
            version: query.version,
            limit: i64::from(limit) + 1,
        })
        .await?;
    let truncated = items.len() > limit as usize;
    items.truncate(limit as usize);
    Ok(axum::Json(FindAnswer { items, truncated }))
}
