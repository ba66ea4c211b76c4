//! `/v1/images/{digest}/vulnerabilities`, `/v1/vulnerabilities/{id}/images` and `/v1/feeds`: the stored
//! fleet matches (as of the last re-match) and the feeds they came from.

use std::sync::Arc;

use axum::extract::State;
use fathom_vulns::core::severity::Level;
use fathom_vulns::queries::{self, FeedStatus, ImageFilter, ImageHit, PackageScope, VulnMatch};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Path, Query};
use super::images::check_digest;
use super::ApiState;

impl From<fathom_vulns::Error> for ApiError {
    fn from(e: fathom_vulns::Error) -> Self {
        match &e {
            fathom_vulns::Error::Database(
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed,
            ) => {
                tracing::warn!(error = %e, "database unreachable");
                ApiError::unavailable("the database cannot be reached; retry shortly")
            }
            _ => {
                tracing::error!(error = %e, "vulnerability store error");
                ApiError::internal("internal error; the server log has the details")
            }
        }
    }
}

/// Query of `GET /v1/images/{digest}/vulnerabilities`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageVulnsQuery {
    #[serde(rename = "type")]
    scope: Option<String>,
    min_severity: Option<String>,
    #[serde(default)]
    fixed_only: bool,
}

/// An image's vulnerabilities.
#[derive(Debug, Serialize)]
pub struct ImageVulns {
    digest: String,
    /// Whether every package of the image has been matched against the current feed generations (false
    /// right after its analysis or a feed update, until the core's next round or `fathom vulns sync`).
    matched: bool,
    vulnerabilities: Vec<VulnMatch>,
}

pub(super) async fn for_image(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(q): Query<ImageVulnsQuery>,
) -> Result<axum::Json<ImageVulns>, ApiError> {
    check_digest(&digest)?;
    let scope: PackageScope = q
        .scope
        .as_deref()
        .unwrap_or("all")
        .parse()
        .map_err(|e| ApiError::invalid(format!("type: {e}")))?;
    let min_severity = q.min_severity.as_deref().map(level).transpose()?;
    if state.store.image(&digest).await?.is_none() {
        return Err(ApiError::not_found(format!("no image {digest} is stored")));
    }
    let pool = state.store.pool();
    let matched = queries::image_matched(pool, &digest).await?;
    let filter = ImageFilter {
        scope,
        min_severity,
        fixed_only: q.fixed_only,
    };
    let vulnerabilities = queries::vulns_for_image(pool, &digest, &filter).await?;
    Ok(axum::Json(ImageVulns {
        digest,
        matched,
        vulnerabilities,
    }))
}

fn level(word: &str) -> Result<Level, ApiError> {
    const LEVELS: [Level; 5] = [
        Level::Negligible,
        Level::Low,
        Level::Medium,
        Level::High,
        Level::Critical,
    ];
    LEVELS
        .into_iter()
        .find(|l| l.as_str() == word)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "min_severity: {word:?} is not negligible, low, medium, high or critical"
            ))
        })
}

/// Query of `GET /v1/vulnerabilities/{id}/images`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByVulnQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

/// A page of images carrying a vulnerability.
#[derive(Debug, Serialize)]
pub struct ByVulnPage {
    id: String,
    items: Vec<ImageHit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next: Option<String>,
}

pub(super) async fn images_by_vuln(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(q): Query<ByVulnQuery>,
) -> Result<axum::Json<ByVulnPage>, ApiError> {
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(ApiError::invalid("id: 1 to 200 printable characters"));
    }
    let limit = state.page_size(q.limit)?;
    let after = q.cursor.unwrap_or_default();
    if !after.is_empty() {
        check_digest(&after).map_err(|_| ApiError::invalid("cursor: not a cursor of this list"))?;
    }
    // One more than asked tells whether there is a next page.
    let mut items =
        queries::images_by_vuln(state.store.pool(), &id, &after, i64::from(limit) + 1).await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|h| h.manifest_digest.clone())
    } else {
        None
    };
    Ok(axum::Json(ByVulnPage { id, items, next }))
}

/// Every feed's state.
#[derive(Debug, Serialize)]
pub struct FeedList {
    feeds: Vec<FeedStatus>,
}

pub(super) async fn feeds(
    State(state): State<Arc<ApiState>>,
) -> Result<axum::Json<FeedList>, ApiError> {
    Ok(axum::Json(FeedList {
        feeds: queries::feeds(state.store.pool()).await?,
    }))
}
