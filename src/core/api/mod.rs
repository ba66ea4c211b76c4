//! The core's external HTTP API (`/v1`, JSON): submit images for analysis, read their status, packages,
//! layers and SBOMs, query images by package, inspect the queue and cancel queued jobs. It never waits
//! for an analysis: submitting enqueues and answers `202` at once; analyzers do the work.
//!
//! Auth is bearer tokens (`services.api.tokens`); `/healthz` and `/readyz` are always open, `/metrics`
//! when `services.api.metrics_auth` is off. Every error is `{"error": {"code", "message"}}`.

mod auth;
mod checks;
mod content;
pub(crate) mod engine;
mod error;
pub mod estimate;
mod extract;
mod forget;
mod forward;
mod images;
pub(crate) mod maintenance;
mod metrics;
mod notifications;
mod policies;
mod queue;
mod retry;
mod vulns;
mod watches;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use crate::core::config::ApiServiceConfig;
use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use fathom_queue::Queue;
use fathom_worker::store::Store;

pub use auth::Tokens;
pub use error::ApiError;
pub use forget::blocked_message;
pub use metrics::ApiMetrics;

/// What every handler shares.
pub struct ApiState {
    /// The results store (submissions, images, packages).
    pub store: Store,
    /// The job queue (stats, cancel).
    pub queue: Queue,
    /// Limits and switches.
    pub config: ApiServiceConfig,
    /// The current catalogers key: a reference analyzed under it is not analyzed again unless forced.
    pub cache_key: String,
    /// Stored documents decoded at once (each can be large): bounds the memory and CPU of SBOM,
    /// package and layer requests.
    pub documents: tokio::sync::Semaphore,
    /// Image deletions run at once ([`DELETIONS_AT_ONCE`]).
    pub deletions: tokio::sync::Semaphore,
    /// Policy bundles and checks (`services.policy_engine`).
    pub policy: Arc<crate::core::policy::PolicyEngine>,
    /// Tag and repository watches (`services.catalog`); none where the core does not serve them.
    pub catalog: Option<Arc<fathom_catalog::Catalog>>,
    /// A use seen this recently keeps an image from an unforced delete (`services.webhook.inventory_ttl`).
    pub inventory_ttl: Duration,
    /// Deletions counted by cause (`fathom_core_deleted_images_total`).
    pub forget: crate::core::forget::metrics::ForgetMetrics,
    /// The retention rules `POST /v1/images/prune` applies (`services.catalog.retention`).
    pub retention: fathom_catalog::RetentionConfig,
    /// Reads the manifests of submissions by digest for their work estimate; none: jobs without one.
    pub estimator: Option<estimate::Estimator>,
}

impl ApiState {
    /// The page size a list request gets: its `limit`, else the default, never above the maximum.
    fn page_size(&self, asked: Option<u32>) -> Result<u32, ApiError> {
        match asked {
            None => Ok(self.config.default_page_size),
            Some(0) => Err(ApiError::invalid("limit: must be at least 1")),
            Some(n) if n > self.config.max_page_size => Err(ApiError::invalid(format!(
                "limit: {n} is above the maximum page size {}",
                self.config.max_page_size
            ))),
            Some(n) => Ok(n),
        }
    }
}

/// Stored analysis documents decoded at once.
pub(crate) const DOCUMENTS_AT_ONCE: usize = 4;
/// Image deletions a core runs at once (`DELETE /v1/images/{digest}`; more wait their turn): a burst of
/// deletions takes longer rather than taking the cores the readers need (deleting 10,000 images through
/// the API with 8 clients measured readers' p99 past 50 ms without it, `cargo bench --bench store`;
/// 2 at once made deleting 10,000 take about 50 s).
pub(crate) const DELETIONS_AT_ONCE: usize = 4;

/// The `/v1` routes as (method, route template): the OpenAPI document must describe exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/images"),
    ("GET", "/v1/images"),
    ("GET", "/v1/images/{digest}"),
    ("DELETE", "/v1/images/{digest}"),
    ("POST", "/v1/images/prune"),
    ("GET", "/v1/images/by-job/{id}"),
    ("GET", "/v1/images/{digest}/packages"),
    ("GET", "/v1/images/{digest}/sbom"),
    ("GET", "/v1/images/{digest}/layers"),
    ("GET", "/v1/images/{digest}/files"),
    ("GET", "/v1/images/{digest}/secrets"),
    ("GET", "/v1/images/{digest}/content-search"),
    ("GET", "/v1/packages"),
    ("GET", "/v1/queue"),
    ("DELETE", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/retry"),
    ("POST", "/v1/jobs/retry"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/images/{digest}/vulnerabilities"),
    ("GET", "/v1/vulnerabilities/{id}/images"),
    ("GET", "/v1/feeds"),
    ("GET", "/v1/policies"),
    ("POST", "/v1/policies"),
    ("GET", "/v1/policies/{id}"),
    ("PUT", "/v1/policies/{id}"),
    ("DELETE", "/v1/policies/{id}"),
    ("GET", "/v1/images/{digest}/check"),
    ("GET", "/v1/images/{digest}/checks"),
    ("POST", "/v1/watches"),
    ("GET", "/v1/watches"),
    ("GET", "/v1/watches/{id}"),
    ("DELETE", "/v1/watches/{id}"),
    ("GET", "/v1/images/{digest}/workloads"),
    ("GET", "/v1/workloads"),
    ("GET", "/v1/vulnerabilities/{id}/workloads"),
    ("GET", "/v1/events"),
    ("GET", "/v1/notifications/deliveries"),
    ("POST", "/v1/notifications/deliveries/retry"),
];

/// The OpenAPI 3 document, written by hand next to the handlers and checked against [`ROUTES`] by tests.
const OPENAPI_YAML: &str = include_str!("openapi.yaml");

/// The OpenAPI document as JSON.
pub fn openapi() -> anyhow::Result<serde_json::Value> {
    serde_yaml::from_str(OPENAPI_YAML).context("parsing the embedded OpenAPI document")
}

/// Builds the whole application: `/v1` behind auth (when on), health and metrics beside it, JSON errors
/// for unknown routes and methods, a body limit and a per-request timeout.
pub fn router(state: Arc<ApiState>, tokens: Tokens, metrics: ApiMetrics) -> anyhow::Result<Router> {
    let config = state.config.clone();
    let document = Arc::new(openapi()?);
    let v1 = Router::new()
        .route("/v1/images", get(images::list).post(images::submit))
        .route("/v1/images/by-job/{id}", get(images::by_job))
        .route("/v1/images/prune", axum::routing::post(forget::prune))
        .route(
            "/v1/images/{digest}",
            get(images::get).delete(forget::delete),
        )
        .route("/v1/images/{digest}/packages", get(images::packages))
        .route("/v1/images/{digest}/sbom", get(images::sbom))
        .route("/v1/images/{digest}/layers", get(images::layers))
        .route("/v1/images/{digest}/files", get(content::files))
        .route("/v1/images/{digest}/secrets", get(content::secrets))
        .route(
            "/v1/images/{digest}/content-search",
            get(content::content_search),
        )
        .route("/v1/packages", get(queue::find))
        .route("/v1/queue", get(queue::stats))
        .route("/v1/jobs/{id}", delete(queue::cancel))
        .route("/v1/images/{digest}/vulnerabilities", get(vulns::for_image))
        .route(
            "/v1/vulnerabilities/{id}/images",
            get(vulns::images_by_vuln),
        )
        .route("/v1/feeds", get(vulns::feeds))
        .route("/v1/jobs/{id}/retry", post(retry::retry_one))
        .route("/v1/jobs/retry", post(retry::retry_batch))
        .route("/v1/policies", get(policies::list).post(policies::create))
        .route(
            "/v1/policies/{id}",
            get(policies::get)
                .put(policies::replace)
                .delete(policies::delete),
        )
        .route("/v1/images/{digest}/check", get(policies::check))
        .route("/v1/images/{digest}/checks", get(checks::history))
        .route("/v1/watches", get(watches::list).post(watches::create))
        .route("/v1/images/{digest}/workloads", get(workloads::by_image))
        .route("/v1/workloads", get(workloads::list))
        .route(
            "/v1/vulnerabilities/{id}/workloads",
            get(workloads::by_vulnerability),
        )
        .route(
            "/v1/watches/{id}",
            get(watches::get).delete(watches::delete),
        )
        .route("/v1/events", get(notifications::events))
        .route(
            "/v1/notifications/deliveries",
            get(notifications::deliveries),
        )
        .route(
            "/v1/notifications/deliveries/retry",
            post(notifications::retry),
        )
        .route(
            "/v1/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { axum::Json(document.as_ref().clone()) }
            }),
        )
        .with_state(Arc::clone(&state));
    let v1 = if config.auth {
        v1.layer(middleware::from_fn_with_state(
            tokens.clone(),
            auth::require_token,
        ))
    } else {
        v1
    };
    let metrics_route = {
        let m = metrics.clone();
        let route = Router::new().route("/metrics", get(move || async move { m.render() }));
        if config.metrics_auth {
            route.layer(middleware::from_fn_with_state(tokens, auth::require_token))
        } else {
            route
        }
    };
    metrics.prime(ROUTES);
    let timeout = config.request_timeout;
    Ok(Router::new()
        .merge(v1)
        .merge(metrics_route)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz).with_state(state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            within(timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(metrics, metrics::track)))
}

async fn within(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout(format!(
            "the request took longer than services.api.request_timeout ({})",
            humantime::format_duration(timeout)
        ))
        .into_response(),
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(format!("{method} is not allowed on {}", uri.path()))
}

/// Ready when the database answers within a second: a core that cannot reach it can serve nothing.
async fn readyz(State(state): State<Arc<ApiState>>) -> Response {
    match tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database did not answer within 1 s\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let doc = openapi().unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for method in ops.as_object().unwrap().keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
