//! `GET /v1/images/{digest}/checks`: the image's policy evaluation history, newest first, paged.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiState};
use fathom_policy::history::HistoryEntry;

/// The route's query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A page of the history.
#[derive(Debug, Serialize)]
pub struct HistoryPage {
    items: Vec<HistoryEntry>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    next: Option<String>,
}

pub(super) async fn history(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<axum::Json<HistoryPage>, ApiError> {
    super::images::check_digest(&digest)?;
    let limit = state.page_size(query.limit)?;
    let before = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                ApiError::invalid(format!("cursor: {c:?} is not a cursor this route gave"))
            })
        })
        .transpose()?;
    // One more than asked tells whether a next page exists.
    let mut items = state.policy.history(&digest, before, limit + 1).await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(axum::Json(HistoryPage { items, next }))
}
