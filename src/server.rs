//! What every role's HTTP endpoint shares: one serve loop with graceful shutdown, one Prometheus
//! exposition, the `/metrics` + `/healthz` + `/readyz` router, and the signal handling that starts a drain.

use std::net::SocketAddr;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

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

/// Renders `registry`; an encoding failure becomes a comment line rather than a failed scrape.
pub fn metrics_response(registry: &prometheus::Registry) -> Response {
    let mut text = String::new();
    if let Err(err) = prometheus::TextEncoder::new().encode_utf8(&registry.gather(), &mut text) {
        text = format!("# encoding failed: {err}\n");
    }
    exposition(text)
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

/// A role's health endpoint: `/metrics` renders `metrics`, `/healthz` answers while the process runs
/// (its loops never exit on errors, so liveness means "not wedged"), `/readyz` answers 200 only while
/// `ready` says so (e.g. Postgres answered and the role is not draining).
pub fn health_router(
    metrics: impl Fn() -> String + Clone + Send + Sync + 'static,
    ready: impl Fn() -> bool + Clone + Send + Sync + 'static,
) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { exposition(metrics()) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

/// Binds `addr` (failing at once if it cannot) and serves `app` until `shutdown` turns true. Returns the
/// bound address (useful with port 0) and the server task.
pub async fn bind_and_serve(
    addr: SocketAddr,
    app: Router,
    shutdown: watch::Receiver<bool>,
    what: &'static str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, spawn_server(listener, app, shutdown, what)))
}

/// A receiver that turns true on the first SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> std::io::Result<watch::Receiver<bool>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested; draining");
        let _ = tx.send(true);
    });
    Ok(rx)
}
