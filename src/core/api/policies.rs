//! `/v1/policies...` (anchore-compatible policy bundles, one active) and `/v1/images/{digest}/check`
//! (an image evaluated against a bundle: anchore's result with `status` pass or fail).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fathom_analyzer::source::registry::canonical_reference;
use fathom_policy::store::StoredBundle;
use fathom_policy::{ValidatedBundle, ValidationError};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::extract::{Path, Query};
use super::ApiState;
use crate::core::policy::PolicyEngine;

/// A bundle that failed validation: 400 with every problem and its JSON path.
pub(super) struct InvalidBundle(Vec<ValidationError>);

impl IntoResponse for InvalidBundle {
    fn into_response(self) -> Response {
        let message = match self.0.as_slice() {
            [one] => format!("invalid policy bundle: {one}"),
            [first, ..] => format!(
                "invalid policy bundle: {first} (and {} more problems)",
                self.0.len() - 1
            ),
            [] => "invalid policy bundle".to_string(),
        };
        let body =
            json!({"error": {"code": "invalid_bundle", "message": message, "problems": self.0}});
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response()
    }
}

/// Either answer of a bundle upload.
pub(super) enum UploadError {
    Bundle(InvalidBundle),
    Api(ApiError),
}

impl IntoResponse for UploadError {
    fn into_response(self) -> Response {
        match self {
            UploadError::Bundle(b) => b.into_response(),
            UploadError::Api(e) => e.into_response(),
        }
    }
}

impl From<ApiError> for UploadError {
    fn from(e: ApiError) -> Self {
        UploadError::Api(e)
    }
}

fn engine(state: &ApiState) -> Result<&PolicyEngine, ApiError> {
    if state.policy.enabled() {
        Ok(&state.policy)
    } else {
        Err(ApiError::unavailable(
            "the policy engine is off (services.policy_engine.enabled: false)",
        ))
    }
}

/// A JSON body (or YAML, when sent as such), validated.
fn bundle_of(headers: &HeaderMap, body: &[u8]) -> Result<ValidatedBundle, UploadError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::invalid("body: the bundle is not UTF-8 text"))?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let yaml = content_type.contains("yaml");
    if !yaml && !content_type.starts_with("application/json") {
        return Err(ApiError::unsupported_media_type(
            "send the bundle as Content-Type: application/json (or application/yaml)",
        )
        .into());
    }
    let parsed = if yaml {
        fathom_policy::Bundle::from_yaml(text)
    } else {
        fathom_policy::Bundle::from_json(text)
    };
    parsed.map_err(|p| UploadError::Bundle(InvalidBundle(p)))
}

/// `?active=true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveQuery {
    #[serde(default)]
    active: bool,
}

/// A record without its document, for lists.
fn summary(b: &StoredBundle) -> serde_json::Value {
    json!({
        "id": b.id, "name": b.name, "digest": b.digest, "active": b.active,
        "created_at": b.created_at, "updated_at": b.updated_at,
    })
}

pub(super) async fn list(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let engine = engine(&state)?;
    let items = engine.list().await?;
    let active = items.iter().find(|b| b.active).map(|b| b.id.clone());
    Ok(axum::Json(json!({
        "items": items.iter().map(summary).collect::<Vec<_>>(),
        // Checks without policy_id use this bundle: the active one, else the built-in default.
        "active": active.unwrap_or_else(|| fathom_policy::default_bundle().id().to_string()),
    }))
    .into_response())
}

pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ActiveQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UploadError> {
    let engine = engine(&state)?;
    let bundle = bundle_of(&headers, &body)?;
    let (stored, created) = engine.put(&bundle, query.active).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(stored)).into_response())
}

pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let engine = engine(&state)?;
    Ok(axum::Json(engine.get(&id).await?).into_response())
}

/// Replaces the bundle `id` with the body (whose `id` must match), or with an empty body and
/// `?active=true` only activates it.
pub(super) async fn replace(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    Query(query): Query<ActiveQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UploadError> {
    let engine = engine(&state)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        if !query.active {
            return Err(ApiError::invalid(
                "body: empty; send the bundle, or ?active=true to activate the stored one",
            )
            .into());
        }
        engine.activate(&id).await?;
        return Ok(axum::Json(engine.get(&id).await?).into_response());
    }
    let bundle = bundle_of(&headers, &body)?;
    if bundle.id() != id {
        return Err(UploadError::Bundle(InvalidBundle(vec![ValidationError {
            path: "$.id".into(),
            message: format!("{:?} differs from the id in the path, {id:?}", bundle.id()),
        }])));
    }
    let (stored, _) = engine.put(&bundle, query.active).await?;
    Ok(axum::Json(stored).into_response())
}

pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let engine = engine(&state)?;
    engine.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/images/{digest}/check` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    tag: Option<String>,
    policy_id: Option<String>,
}

/// The check route of the core: forwarded to the policy engine when it runs on its own.
pub(super) async fn check(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(query): Query<CheckQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(url) = state.config.policy_engine_url.as_deref() {
        super::images::check_digest(&digest)?;
        return super::forward::check(&state.config, url, &digest, uri.query(), &headers).await;
    }
    check_local(State(state), Path(digest), Query(query)).await
}

/// The check evaluated here (the core's engine, or the policy engine's own service).
pub(super) async fn check_local(
    State(state): State<Arc<ApiState>>,
    Path(digest): Path<String>,
    Query(query): Query<CheckQuery>,
) -> Result<Response, ApiError> {
    let engine = engine(&state)?;
    super::images::check_digest(&digest)?;
    let tag = query
        .tag
        .as_deref()
        .map(|t| {
            canonical_reference(t.trim().strip_prefix("registry:").unwrap_or(t.trim())).map_err(
                |e| ApiError::invalid(format!("tag: {t:?} is not an image reference: {e}")),
            )
        })
        .transpose()?;
    let bundle = engine.bundle(query.policy_id.as_deref()).await?;
    // Decoding the stored document is the expensive part: a few at a time, like the package routes.
    let _permit = state
        .documents
        .acquire()
        .await
        .map_err(|_| ApiError::internal("document loading is shut down"))?;
    let started = std::time::Instant::now();
    let checked = engine.check(&digest, tag.as_deref(), &bundle).await?;
    // The engine's own time (facts, evaluation or cache lookup), without HTTP and serialization: what
    // `cargo bench --bench policy` reports as eval_ms.
    let timing = format!("check;dur={:.3}", started.elapsed().as_secs_f64() * 1000.0);
    let body = engine.json(&checked)?;
    let mut response = (
        [(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    if let Ok(timing) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert("server-timing", timing);
    }
    response.headers_mut().insert(
        "fathom-cache",
        HeaderValue::from_static(if checked.cached { "hit" } else { "miss" }),
    );
    Ok(response)
}
