//! The Prometheus text exposition of a registry, as every `/metrics` endpoint of the binary serves it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Renders `registry`; an encoding failure becomes a comment line rather than a failed scrape.
pub fn metrics_response(registry: &prometheus::Registry) -> Response {
    let mut text = String::new();
    if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut text) {
        text = format!("# encoding failed: {err}\n");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
