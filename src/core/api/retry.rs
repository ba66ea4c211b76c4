//! `POST /v1/jobs/{id}/retry` and `POST /v1/jobs/retry`: requeue finished (`dead`, `failed`) jobs, one or
//! a batch, keeping their history (attempts, last error, enqueue time).

use std::sync::Arc;

use axum::extract::State;
use fathom_queue::{JobState, Requeue};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Json, Path};
use super::ApiState;

/// Both retry answers.
#[derive(Debug, Serialize)]
pub struct RetryAnswer {
    /// Ids of the jobs put back in the queue.
    requeued: Vec<i64>,
}

/// `POST /v1/jobs/retry` body; filters combine with AND.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBatch {
    /// `dead`, `failed` (both when absent or empty).
    #[serde(default)]
    states: Vec<String>,
    /// Only jobs of this image reference.
    reference: Option<String>,
    /// Only jobs finished at or after this RFC 3339 time.
    since: Option<String>,
}

pub(super) async fn retry_one(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<i64>,
) -> Result<axum::Json<RetryAnswer>, ApiError> {
    let requeued = state
        .queue
        .requeue(&Requeue {
            id: Some(id),
            ..Default::default()
        })
        .await?;
    if !requeued.is_empty() {
        return Ok(axum::Json(RetryAnswer { requeued }));
    }
    // Nothing was requeued: say why.
    match state.queue.job(id).await? {
        None => Err(ApiError::not_found(format!("no job {id}"))),
        Some(job) if matches!(job.state, JobState::Dead | JobState::Failed) => {
            Err(ApiError::conflict(format!(
                "job {id} has a live job with the same key; that one runs instead"
            )))
        }
        Some(job) => Err(ApiError::conflict(format!(
            "job {id} is {}; only dead or failed jobs can be retried",
            job.state.as_str()
        ))),
    }
}

pub(super) async fn retry_batch(
    State(state): State<Arc<ApiState>>,
    Json(batch): Json<RetryBatch>,
) -> Result<axum::Json<RetryAnswer>, ApiError> {
    let states = batch
        .states
        .iter()
        .map(|s| match JobState::parse(s) {
            Some(state @ (JobState::Dead | JobState::Failed)) => Ok(state),
            _ => Err(ApiError::invalid(format!(
                "states: {s:?} is not dead or failed"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let since = batch
        .since
        .as_deref()
        .map(|t| {
            humantime::parse_rfc3339_weak(t).map_err(|e| {
                ApiError::invalid(format!("since: {t:?} is not an RFC 3339 time: {e}"))
            })
        })
        .transpose()?;
    let requeued = state
        .queue
        .requeue(&Requeue {
            states,
            id: None,
            reference: batch.reference,
            since,
        })
        .await?;
    Ok(axum::Json(RetryAnswer { requeued }))
}
