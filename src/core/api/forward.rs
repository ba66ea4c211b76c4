//! Policy checks forwarded to a policy engine running on its own (`services.api.policy_engine_url`).
//!
//! The engine answers the same route from the same database, so its response (status, body, cache
//! header) passes through unchanged; an engine that cannot be reached or does not answer in time is a
//! `503 policy_engine_unavailable` naming the URL, never a hang.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::core::config::ApiServiceConfig;

/// Headers of the engine's answer worth passing on.
const PASSED_ON: [&str; 2] = ["content-type", "fathom-cache"];

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default()
    })
}

/// `GET {url}/v1/images/{digest}/check?{query}` with the caller's credentials.
pub(super) async fn check(
    config: &ApiServiceConfig,
    url: &str,
    digest: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let mut target = format!("{}/v1/images/{digest}/check", url.trim_end_matches('/'));
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        target.push('?');
        target.push_str(q);
    }
    let mut request = client().get(&target).timeout(config.policy_engine_timeout);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth);
    }
    let unavailable = |what: String| {
        tracing::warn!(url, "policy engine unavailable: {what}");
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "policy_engine_unavailable",
            message: format!(
                "the policy engine at {url} (services.api.policy_engine_url) {what}; retry shortly"
            ),
        }
    };
    let answer = request.send().await.map_err(|e| {
        if e.is_timeout() {
            unavailable(format!(
                "did not answer within services.api.policy_engine_timeout ({})",
                humantime::format_duration(config.policy_engine_timeout)
            ))
        } else {
            unavailable(format!("cannot be reached ({})", root_cause(&e)))
        }
    })?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut passed = HeaderMap::new();
    for name in PASSED_ON {
        if let Some(v) = answer.headers().get(name) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                passed.insert(name, v);
            }
        }
    }
    let body = answer
        .bytes()
        .await
        .map_err(|e| unavailable(format!("broke off its answer ({})", root_cause(&e))))?;
    Ok((status, passed, body).into_response())
}

/// The innermost error: reqwest's own message is only "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
