//! Every API error is a JSON body `{"error": {"code", "message"}}` with a stable `code` clients can
//! branch on; the message is for people and may change.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, naming the field or value at fault.
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: a body, query or path value is malformed or out of range.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 422: an image reference that does not parse.
    pub fn invalid_reference(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reference",
            message,
        )
    }

    /// 422: a path digest that is not `sha256:<64 lowercase hex digits>`.
    pub fn invalid_digest(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_digest", message)
    }

    /// 401: no or a wrong bearer token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404: the thing asked for does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            message,
        )
    }

    /// 409: the request conflicts with the current state (e.g. cancelling a running job).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 413: the body is larger than `services.api.max_body_bytes`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 415: a body that is not JSON.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 503: the request outlived `services.api.request_timeout`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "timeout", message)
    }

    /// 503: the database cannot be reached.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 502: a registry fathom had to ask could not be reached or refused (its answer in the message).
    pub fn registry(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "registry_error", message)
    }

    /// 500: a fault on our side (logged in full; the client gets the gist).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// What clients are told of a fault on our side: the details (SQL, hosts) go to the log, not to them.
const INTERNAL: &str = "internal error; the server log has the details";

impl From<fathom_worker::store::StoreError> for ApiError {
    fn from(e: fathom_worker::store::StoreError) -> Self {
        if e.is_connection() {
            tracing::warn!(error = %e, "database unreachable");
            ApiError::unavailable("the database cannot be reached; retry shortly")
        } else if e.is_conflict() {
            tracing::warn!(error = %e, "transaction conflict");
            ApiError::unavailable("a concurrent request conflicted with this one; retry it")
        } else {
            tracing::error!(error = %e, "store error");
            ApiError::internal(INTERNAL)
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::from(fathom_worker::store::StoreError::Sqlx(e))
    }
}

impl From<fathom_queue::Error> for ApiError {
    fn from(e: fathom_queue::Error) -> Self {
        if e.is_connection() {
            tracing::warn!(error = %e, "database unreachable");
            ApiError::unavailable("the database cannot be reached; retry shortly")
        } else {
            tracing::error!(error = %e, "queue error");
            ApiError::internal(INTERNAL)
        }
    }
}
