//! What runs where (the inventory the admission webhook records): the workloads running an image, every
//! workload page by page, and the workloads carrying a vulnerability.

use std::sync::Arc;

use axum::extract::State;
use fathom_catalog::inventory::{self, After, Workload};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Path, Query};
use super::images::{check_digest, Page};
use super::ApiState;

/// Workloads answered at most by the image and vulnerability routes.
const MOST: i64 = 1000;

/// The workloads of one image or vulnerability.
#[derive(Debug, Serialize)]
pub struct Workloads {
    items: Vec<Workload>,
}

pub(super) async fn by_image(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<axum::Json<Workloads>, ApiError> {
    check_digest(&digest)?;
    let items = inventory::by_digests(state.store.pool(), &[digest], MOST).await?;
    Ok(axum::Json(Workloads { items }))
}

/// `GET /v1/workloads` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    namespace: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn cursor_of(raw: &str) -> Result<After, ApiError> {
    let bad = || ApiError::invalid("cursor: not a cursor of this list");
    let bytes = hex::decode(raw).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Page<Workload>>, ApiError> {
    let limit = state.page_size(query.limit)?;
    let after = query.cursor.as_deref().map(cursor_of).transpose()?;
    let mut items = inventory::list(
        state.store.pool(),
        query.namespace.as_deref(),
        after.as_ref(),
        i64::from(limit) + 1,
    )
    .await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        match items.last() {
            Some(w) => Some(hex::encode(
                serde_json::to_vec(&After::of(w)).map_err(|e| ApiError::internal(e.to_string()))?,
            )),
            None => None,
        }
    } else {
        None
    };
    Ok(axum::Json(Page::new(items, next)))
}

pub(super) async fn by_vulnerability(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Workloads>, ApiError> {
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(ApiError::invalid("id: 1 to 200 printable characters"));
    }
    // The images carrying it (the vulnerability query the image route answers), then who runs them.
    let images = fathom_vulns::queries::images_by_vuln(state.store.pool(), &id, "", MOST).await?;
    let digests: Vec<String> = images.into_iter().map(|h| h.manifest_digest).collect();
    let items = if digests.is_empty() {
        Vec::new()
    } else {
        inventory::by_digests(state.store.pool(), &digests, MOST).await?
    };
    Ok(axum::Json(Workloads { items }))
}
