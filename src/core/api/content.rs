//! `GET /v1/images/{digest}/files` (the file inventory, merged from the stored layers, paged by path),
//! `GET /v1/images/{digest}/secrets` (secret findings: file, line, rule — never the value) and
//! `GET /v1/images/{digest}/content-search` (content search matches: file, line, rule, and the matched
//! text only for rules with `store_match`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use fathom_worker::store::FileQuery;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Path, Query};
use super::images::analysis;
use super::ApiState;

/// `GET /v1/images/{digest}/files` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesQuery {
    path_prefix: Option<String>,
    #[serde(default)]
    suid: bool,
    #[serde(default)]
    sgid: bool,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) async fn files(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(query): Query<FilesQuery>,
) -> Result<Response, ApiError> {
    let limit = state.page_size(query.limit)?;
    // Merging every layer's inventory is CPU work on big results: share the document permits.
    let page = {
        let _permit = state
            .documents
            .acquire()
            .await
            .map_err(|_| ApiError::internal("document loading is shut down"))?;
        state
            .store
            .image_files(
                &digest,
                &FileQuery {
                    path_prefix: query.path_prefix,
                    suid: query.suid,
                    sgid: query.sgid,
                    after: query.cursor,
                    limit: limit as usize,
                },
            )
            .await?
    };
    match page {
        Some(page) => Ok(axum::Json(serde_json::json!({
            "digest": digest,
            "items": page.files,
            "next": page.next,
            "truncated": page.truncated,
        }))
        .into_response()),
        // No stored inventory: say why (bad digest, unknown, failed) the way the other image routes do.
        None => {
            analysis(&state, &digest).await?;
            Err(ApiError::conflict(format!(
                "{digest}: its layer results are not stored under the current analyzer; resubmit with force"
            )))
        }
    }
}

pub(super) async fn secrets(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let doc = analysis(&state, &digest).await?;
    Ok(axum::Json(serde_json::json!({ "digest": digest, "secrets": doc.secrets })).into_response())
}

pub(super) async fn content_search(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let doc = analysis(&state, &digest).await?;
    match &doc.content_search {
        Some(report) => Ok(axum::Json(serde_json::json!({
            "digest": digest,
            "rules": report.rules,
            "matches": report.matches,
        }))
        .into_response()),
        // "Not searched" must not read as "nothing found".
        None => Err(ApiError::conflict(format!(
            "{digest}: content search did not run for this image (it was analyzed with no \
             services.analyzer.content_search rules, or before content search existed); resubmit it \
             once rules are configured"
        ))),
    }
}
