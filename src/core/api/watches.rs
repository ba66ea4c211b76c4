//! `/v1/watches`: watch a tag (re-resolved every `services.catalog.watch_interval`, each new digest
//! recorded and analyzed) or a repository (its new tags watched), list, show with history, remove.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fathom_catalog::store::ListFilter;
use fathom_catalog::{Catalog, RepositoryRequest, Watch};
use serde::Deserialize;

use super::error::ApiError;
use super::extract::{Json, Path, Query};
use super::images::Page;
use super::ApiState;

/// `POST /v1/watches`: a tag, or a repository with optional filters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchBody {
    reference: Option<String>,
    repository: Option<String>,
    include: Option<String>,
    exclude: Option<String>,
}

/// `POST /v1/watches` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQuery {
    #[serde(default)]
    dry_run: bool,
}

impl From<fathom_catalog::Error> for ApiError {
    fn from(e: fathom_catalog::Error) -> Self {
        use fathom_catalog::Error as E;
        match e {
            E::InvalidReference(m) => ApiError::invalid_reference(m),
            E::InvalidField { .. } => ApiError::invalid(e.to_string()),
            E::NotFound(m) => ApiError::not_found(m),
            E::Registry(m) => ApiError::registry(m),
            E::Store(s) => ApiError::from(s),
            other if other.is_connection() => {
                tracing::warn!(error = %other, "database unreachable");
                ApiError::unavailable("the database cannot be reached; retry shortly")
            }
            other => {
                tracing::error!(error = %other, "catalog error");
                ApiError::internal("internal error; the server log has the details")
            }
        }
    }
}

fn catalog(state: &ApiState) -> Result<&Catalog, ApiError> {
    state
        .catalog
        .as_deref()
        .ok_or_else(|| ApiError::not_found("the catalog is served by the core, not here"))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Result<Response, ApiError> {
    let body = serde_json::to_value(value).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((status, axum::Json(body)).into_response())
}

pub(super) async fn create(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<CreateQuery>,
    Json(body): Json<WatchBody>,
) -> Result<Response, ApiError> {
    let catalog = catalog(&state)?;
    match (body.reference, body.repository) {
        (Some(reference), None) => {
            if body.include.is_some() || body.exclude.is_some() || query.dry_run {
                return Err(ApiError::invalid(
                    "include, exclude and dry_run apply to a repository watch, not a tag",
                ));
            }
            let (detail, created) = catalog.add_tag(&reference).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            json(status, &detail)
        }
        (None, Some(repository)) => {
            let request = RepositoryRequest {
                repository,
                include: body.include,
                exclude: body.exclude,
            };
            if query.dry_run {
                let look = catalog.look(&request).await?;
                let mut body =
                    serde_json::to_value(&look).map_err(|e| ApiError::internal(e.to_string()))?;
                body["dry_run"] = serde_json::Value::Bool(true);
                return Ok((StatusCode::OK, axum::Json(body)).into_response());
            }
            let (watch, look, created) = catalog.add_repository(&request).await?;
            let mut answer =
                serde_json::to_value(&watch).map_err(|e| ApiError::internal(e.to_string()))?;
            answer["added"] = serde_json::json!(look.tags);
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, axum::Json(answer)).into_response())
        }
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "body: give either reference (a tag) or repository, not both",
        )),
        (None, None) => Err(ApiError::invalid(
            "body: missing field `reference` (a tag) or `repository`",
        )),
    }
}

/// `GET /v1/watches` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    kind: Option<String>,
    repository_watch: Option<i64>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) async fn list(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Page<Watch>>, ApiError> {
    let catalog = catalog(&state)?;
    if let Some(kind) = &query.kind {
        if kind != "tag" && kind != "repository" {
            return Err(ApiError::invalid(format!(
                "kind: {kind:?} is not tag or repository"
            )));
        }
    }
    let limit = state.page_size(query.limit)?;
    let after = query
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::invalid(format!("cursor: {c:?} is not a cursor")))
        })
        .transpose()?;
    let mut items = catalog
        .list(&ListFilter {
            kind: query.kind,
            repository_watch: query.repository_watch,
            after,
            limit: i64::from(limit) + 1,
        })
        .await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|w| w.id.to_string())
    } else {
        None
    };
    Ok(axum::Json(Page::new(items, next)))
}

pub(super) async fn get(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let detail = catalog(&state)?.get(id).await?;
    json(StatusCode::OK, &detail)
}

pub(super) async fn delete(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    catalog(&state)?.remove(id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
