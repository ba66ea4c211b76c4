//! `/metrics`, `/healthz` and `/readyz` over axum.
//!
//! `/healthz` answers 200 while the process runs (its loop never exits on errors, so liveness means
//! "not wedged"); `/readyz` answers 200 only while Postgres answered the last round trip and the worker is
//! not draining, so Kubernetes takes a draining or cut-off pod out of rotation without killing it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Shared health state.
#[derive(Debug, Default)]
pub struct Health {
    database_up: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    /// Records whether the last round trip to Postgres succeeded.
    pub fn set_database_up(&self, up: bool) {
        self.database_up.store(up, Ordering::Relaxed);
        Metrics::get().database_up.set(if up { 1.0 } else { 0.0 });
    }

    /// Marks the worker as shutting down.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether the worker should receive traffic / count as ready.
    pub fn ready(&self) -> bool {
        self.database_up.load(Ordering::Relaxed) && !self.draining.load(Ordering::Relaxed)
    }
}

/// Binds `addr` (failing at once if it cannot) and serves until `shutdown` turns true. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    let task = spawn_server(listener, app, shutdown, "metrics server");
    Ok((bound, task))
}

async fn metrics() -> Response {
    exposition(Metrics::get().render())
}

/// A Prometheus text exposition as an HTTP answer: every `/metrics` endpoint of the fleet answers so.
pub fn exposition(text: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Serves `app` on `listener` in a task until `stop` turns true; a server failure is logged as `what`
/// (the process keeps working: its endpoint is not its job).
pub fn spawn_server(
    listener: tokio::net::TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    what: &'static str,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(err) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%err, "{what} failed");
        }
    })
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    if health.ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
