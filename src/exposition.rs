//! The Prometheus text exposition of a registry, as every `/metrics` endpoint of the binary serves it.

use axum::response::Response;

/// Renders `registry`; an encoding failure becomes a comment line rather than a failed scrape.
pub fn metrics_response(registry: &prometheus::Registry) -> Response {
    let mut text = String::new();
    if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut text) {
        text = format!("# encoding failed: {err}\n");
    }
    fathom_worker::job::health::exposition(text)
}
