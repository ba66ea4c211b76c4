//! `/v1/images...`: submit analyses, list and read what was submitted, and serve an analyzed image's
//! packages, layers and SBOMs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use fathom_analyzer::sbom::{self, Format};
use fathom_analyzer::source::registry::canonical_reference;
use fathom_analyzer::ImageAnalysis;
use fathom_worker::store::{
    unsubmitted_entry, Cursor, StatusEntry, SubmissionFilter, SubmitOptions, Submitted, STATUSES,
};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::ApiState;

/// `POST /v1/images`: one reference or a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    reference: Option<String>,
    references: Option<Vec<String>>,
    #[serde(default)]
    priority: i16,
    #[serde(default)]
    force: bool,
}

/// One submitted reference in a `POST /v1/images` answer.
#[derive(Debug, Serialize)]
pub struct SubmittedImage {
    #[serde(flatten)]
    entry: StatusEntry,
    /// Whether this request created the job (false: an existing job or analysis answers it).
    created: bool,
}

/// A page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next: Option<String>,
}

impl<T> Page<T> {
    /// A page of `items`, `next` naming the following one.
    pub(super) fn new(items: Vec<T>, next: Option<String>) -> Self {
        Page { items, next }
    }
}

/// Checks a submitted reference and returns its canonical form.
fn reference_of(raw: &str) -> Result<String, ApiError> {
    let text = raw.trim();
    if text.starts_with("oci-dir:") || text.starts_with("docker-archive:") {
        return Err(ApiError::invalid_reference(format!(
            "{raw:?}: local sources are not accepted over the API; push the image to a registry"
        )));
    }
    let text = text.strip_prefix("registry:").unwrap_or(text);
    canonical_reference(text)
        .map_err(|e| ApiError::invalid_reference(format!("{raw:?} is not an image reference: {e}")))
}

pub(super) async fn submit(
    State(state): State<Arc<ApiState>>,
    Json(body): Json<SubmitBody>,
) -> Result<Response, ApiError> {
    let (raw, batch) = match (body.reference, body.references) {
        (Some(r), None) => (vec![r], false),
        (None, Some(rs)) => (rs, true),
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "body: give either reference or references, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "body: missing field `reference` (or `references` for a batch)",
            ))
        }
    };
    if raw.is_empty() {
        return Err(ApiError::invalid("references: must not be empty"));
    }
    let max = state.config.max_batch;
    if raw.len() > max {
        return Err(ApiError::invalid(format!(
            "references: {} given, at most {max} per request",
            raw.len()
        )));
    }
    let references: Vec<String> = raw
        .iter()
        .map(|r| reference_of(r))
        .collect::<Result<_, _>>()?;
    let options = SubmitOptions {
        priority: body.priority,
        max_attempts: state.config.max_attempts,
        force: body.force,
        cache_key: Some(state.cache_key.clone()),
    };
    let outcomes = match &state.estimator {
        Some(estimator) => {
            let layers = estimator.layers(&references).await;
            state
                .store
                .submit_estimated(&references, &layers, &state.cache_key, &options)
                .await?
        }
        None => state.store.submit_with(&references, &options).await?,
    };
    let mut unique = references.clone();
    unique.sort();
    unique.dedup();
    let entries = state
        .store
        .submissions(&SubmissionFilter {
            references: Some(unique),
            limit: references.len() as i64,
            ..SubmissionFilter::default()
        })
        .await?;
    let mut items = Vec::with_capacity(references.len());
    for (reference, outcome) in references.iter().zip(outcomes) {
        // The submissions query answers every reference (from its stored image when it has no head).
        let head = entries
            .iter()
            .find(|e| &e.reference == reference)
            .ok_or_else(|| {
                tracing::error!(%reference, "submitted but no status");
                ApiError::internal("the submission was recorded but cannot be read back")
            })?;
        let entry = match outcome {
            // Answered by the stored image: say so, whatever an older submission's job did.
            Submitted::AlreadyAnalyzed if head.status != "analyzed" => {
                match state.store.image_by_reference(reference).await? {
                    Some(image) => unsubmitted_entry(reference.clone(), &image),
                    None => head.clone(),
                }
            }
            _ => head.clone(),
        };
        let created = matches!(outcome, Submitted::Job(e) if e.created);
        items.push(SubmittedImage { entry, created });
    }
    let body = if batch {
        serde_json::json!({ "images": items })
    } else {
        serde_json::to_value(&items[0]).map_err(|e| ApiError::internal(e.to_string()))?
    };
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// `GET /v1/images` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    reference: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Page<StatusEntry>>, ApiError> {
    if let Some(status) = &query.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::invalid(format!(
                "status: {status:?} is not one of {}",
                STATUSES.join(", ")
            )));
        }
    }
    let limit = state.page_size(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<Cursor>()
                .map_err(|e| ApiError::invalid(format!("cursor: {e}")))
        })
        .transpose()?;
    let references = query
        .reference
        .as_deref()
        .map(reference_of)
        .transpose()?
        .map(|r| vec![r]);
    let mut items = state
        .store
        .submissions(&SubmissionFilter {
            references,
            status: query.status.clone(),
            after,
            // One more than asked tells whether a next page exists.
            limit: i64::from(limit) + 1,
            ..SubmissionFilter::default()
        })
        .await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().and_then(|e| e.cursor).map(|c| c.to_string())
    } else {
        None
    };
    Ok(axum::Json(Page { items, next }))
}

pub(super) fn check_digest(digest: &str) -> Result<(), ApiError> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "digest: {digest:?} is not sha256:<64 lowercase hex digits>"
        )))
    }
}

pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    match state.store.image(&digest).await? {
        Some(image) => Ok(axum::Json(image).into_response()),
        None => Err(ApiError::not_found(format!("no image {digest} is stored"))),
    }
}

pub(super) async fn by_job(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<i64>,
) -> Result<axum::Json<StatusEntry>, ApiError> {
    let mut entries = state
        .store
        .submissions(&SubmissionFilter {
            job_id: Some(id),
            limit: 1,
            ..SubmissionFilter::default()
        })
        .await?;
    entries
        .pop()
        .map(axum::Json)
        .ok_or_else(|| ApiError::not_found(format!("no submission is answered by job {id}")))
}

/// The stored analysis of an analyzed image, or why there is none.
pub(super) async fn analysis(state: &ApiState, digest: &str) -> Result<ImageAnalysis, ApiError> {
    check_digest(digest)?;
    // Decompressing and parsing a large document is CPU work: a few at a time, off the async threads.
    let _permit = state
        .documents
        .acquire()
        .await
        .map_err(|_| ApiError::internal("document loading is shut down"))?;
    if let Some(doc) = state.store.document(digest).await? {
        return Ok(doc);
    }
    match state.store.image(digest).await? {
        Some(image) => Err(ApiError::conflict(format!(
            "{digest} failed to analyze: {}",
            image.error.unwrap_or_default()
        ))),
        None => Err(ApiError::not_found(format!("no image {digest} is stored"))),
    }
}

/// `GET /v1/images/{digest}/packages` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackagesQuery {
    #[serde(rename = "type")]
    package_type: Option<String>,
    name: Option<String>,
}

pub(super) async fn packages(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(query): Query<PackagesQuery>,
) -> Result<Response, ApiError> {
    let doc = analysis(&state, &digest).await?;
    let items: Vec<_> = doc
        .packages
        .iter()
        .filter(|p| {
            query
                .package_type
                .as_deref()
                .is_none_or(|t| p.package.package_type.as_str() == t)
                && query.name.as_deref().is_none_or(|n| p.package.name == n)
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "digest": digest, "packages": items })).into_response())
}

pub(super) async fn layers(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    let doc = analysis(&state, &digest).await?;
    Ok(axum::Json(serde_json::json!({ "digest": digest, "layers": doc.layers })).into_response())
}

/// `GET /v1/images/{digest}/sbom` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbomQuery {
    format: Option<String>,
}

pub(super) async fn sbom(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(query): Query<SbomQuery>,
) -> Result<Response, ApiError> {
    let name = query.format.as_deref().unwrap_or("json");
    let format = match name {
        "json" => Format::Json,
        "cyclonedx-json" => Format::CycloneDxJson,
        "spdx-json" => Format::SpdxJson,
        other => {
            return Err(ApiError::invalid(format!(
                "format: {other:?} is not json, cyclonedx-json or spdx-json"
            )))
        }
    };
    let doc = analysis(&state, &digest).await?;
    // Large SBOMs are CPU work: keep it off the async workers.
    let bytes = tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(64 * 1024);
        sbom::write(&doc, format, &mut out).map(|()| out)
    })
    .await
    .map_err(|e| ApiError::internal(format!("sbom task: {e}")))?
    .map_err(|e| ApiError::internal(format!("writing the sbom: {e}")))?;
    let content_type = match format {
        Format::CycloneDxJson => "application/vnd.cyclonedx+json; version=1.5",
        Format::SpdxJson => "application/spdx+json",
        _ => "application/json",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], bytes).into_response())
}
