//! The policy engine's own HTTP service (the split deployment): the check route evaluated here, health,
//! readiness and metrics, behind the same bearer tokens as the API (`services.api.tokens`).

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::routing::get;
use axum::Router;

use super::{auth, metrics, policies, ApiMetrics, ApiState, Tokens};

/// The route the engine serves; the API forwards exactly this one.
pub const ENGINE_ROUTES: &[(&str, &str)] = &[("GET", "/v1/images/{digest}/check")];

/// The engine's application.
pub fn router(state: Arc<ApiState>, tokens: Tokens, metrics: ApiMetrics) -> Router {
    let config = state.config.clone();
    let v1 = Router::new()
        .route("/v1/images/{digest}/check", get(policies::check_local))
        .with_state(Arc::clone(&state));
    let v1 = if config.auth {
        v1.layer(middleware::from_fn_with_state(tokens, auth::require_token))
    } else {
        v1
    };
    let m = metrics.clone();
    metrics.prime(ENGINE_ROUTES);
    let timeout = config.request_timeout;
    Router::new()
        .merge(v1)
        .route("/metrics", get(move || async move { m.render() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(super::readyz).with_state(state))
        .fallback(super::not_found)
        .method_not_allowed_fallback(super::method_not_allowed)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            super::within(timeout, req, next)
        }))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
}
