//! `DELETE /v1/images/{digest}`: forget a stored image (see [`crate::core::forget::delete`]);
//! `POST /v1/images/prune`: apply the core's retention rules once (see
//! [`crate::core::forget::retention`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Path, Query};
use super::images::check_digest;
use super::ApiState;
use crate::core::forget::delete::{delete_image, Blocker, Outcome, Rules};
use crate::core::forget::metrics::Cause;
use crate::core::forget::retention::{self, PruneReport};

/// `DELETE /v1/images/{digest}` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

/// The 409 message: every reason, and how to delete anyway.
pub fn blocked_message(digest: &str, blockers: &[Blocker]) -> String {
    let reasons: Vec<&str> = blockers.iter().map(|b| b.detail.as_str()).collect();
    format!(
        "{digest} is still in use: {}; delete it anyway with force=true",
        reasons.join("; ")
    )
}

pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    // A malformed digest can never name an image: 422, unlike the read routes' 400 (kept for them).
    check_digest(&digest).map_err(|e| ApiError::invalid_digest(e.message))?;
    let rules = Rules {
        force: query.force,
        inventory_ttl: state.inventory_ttl,
    };
    // Waits for its turn (the semaphore is never closed: without a permit it would still delete).
    let _turn = state.deletions.acquire().await.ok();
    match delete_image(state.store.pool(), &digest, rules).await? {
        Outcome::Deleted(deleted) => {
            state.forget.deleted(if deleted.overridden.is_empty() {
                Cause::Api
            } else {
                Cause::ApiForced
            });
            tracing::info!(
                digest = %deleted.digest,
                references = deleted.references.len(),
                forced = query.force,
                overridden = deleted.overridden.len(),
                "image deleted"
            );
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Outcome::NotFound => Err(ApiError::not_found(format!("no image {digest} is stored"))),
        Outcome::Blocked(blockers) => Err(ApiError::conflict(blocked_message(&digest, &blockers))),
    }
}

/// `POST /v1/images/prune` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Applies `services.catalog.retention` once (as `fathom images prune` does on the database): what the
/// rules deleted (or, with `dry_run`, would delete) and what they kept, and why. With no rule on, an
/// empty report.
pub(super) async fn prune(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<PruneQuery>,
) -> Result<axum::Json<PruneReport>, ApiError> {
    if !state.retention.enabled() {
        return Ok(axum::Json(PruneReport::default()));
    }
    let report = retention::prune(
        state.store.pool(),
        &state.retention,
        state.inventory_ttl,
        query.dry_run,
    )
    .await?;
    if !query.dry_run {
        for d in &report.deleted {
            state.forget.deleted(Cause::of_rule(d.rule));
        }
    }
    Ok(axum::Json(report))
}
