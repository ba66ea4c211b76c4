//! The autoscaler's `/metrics`, `/healthz`, `/readyz` and `/status` (the last round as JSON).
//!
//! `/readyz` answers 200 once a round has completed without error, so a probe notices an autoscaler that
//! cannot reach Postgres or the API server; `/healthz` only says the process serves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::server::spawn_server;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use fathom_autoscaler::Status;
use tokio::sync::watch;

struct Shared {
    registry: prometheus::Registry,
    status: watch::Receiver<Status>,
    ready: Arc<AtomicBool>,
}

/// Binds `addr` (failing at once if it cannot) and serves until `stop` turns true; returns the bound
/// address and the server task.
pub async fn serve(
    addr: SocketAddr,
    registry: prometheus::Registry,
    status: watch::Receiver<Status>,
    ready: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .with_state(Arc::new(Shared {
            registry,
            status,
            ready,
        }));
    let task = spawn_server(listener, app, stop, "autoscaler metrics server");
    Ok((bound, task))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    crate::server::metrics_response(&shared.registry)
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if shared.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn status_json(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let status = shared.status.borrow().clone();
    match serde_json::to_string_pretty(&status) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}
