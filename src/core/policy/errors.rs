//! How the policy engine's database and vulnerability-data failures are answered over the API.

use crate::core::api::ApiError;

pub(super) fn db_error(e: sqlx::Error) -> ApiError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            tracing::warn!(error = %e, "database unreachable");
            ApiError::unavailable("the database cannot be reached; retry shortly")
        }
        // The one-active index refused a second active bundle: two activations raced.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            ApiError::conflict("another bundle was activated concurrently; retry the request")
        }
        e => {
            tracing::error!(error = %e, "policy store error");
            ApiError::internal("internal error; the server log has the details")
        }
    }
}

pub(super) fn vulns_error(e: fathom_vulns::Error) -> ApiError {
    match e {
        fathom_vulns::Error::Database(e) => db_error(e),
        e => {
            tracing::error!(error = %e, "vulnerability data error");
            ApiError::internal("internal error; the server log has the details")
        }
    }
}
