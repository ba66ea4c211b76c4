//! Wiring the analyzer service from a [`FathomConfig`]: pools, waker, analyzer, health server, signals.

use std::net::SocketAddr;
use std::sync::Arc;

use fathom_queue::{Queue, Waker};
use tokio::sync::watch;

use super::health::{self, Health};
use super::{worker_id, Worker, WorkerConfig};
use crate::config::{ConfigError, FathomConfig};
use crate::store::{Store, StoreError};
use crate::Analyzer;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The queue could not be set up.
    #[error(transparent)]
    Queue(#[from] fathom_queue::Error),
    /// The store could not be set up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The metrics address could not be bound.
    #[error("metrics.address {addr}: cannot listen: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The worker's settings from the configuration file (worker id from [`worker_id`]).
pub fn worker_config(config: &FathomConfig) -> WorkerConfig {
    let a = &config.services.analyzer;
    WorkerConfig {
        worker_id: worker_id(),
        concurrency: a.concurrency,
        lease_ttl: a.lease_ttl,
        drain_timeout: a.drain_timeout,
        poll_interval: a.poll_interval,
        rescue_interval: a.rescue_interval,
    }
}

/// Runs the analyzer service until `shutdown` turns true and in-flight work is drained or released.
/// Fails only at start (bad configuration, metrics address taken); Postgres being down is waited out.
pub async fn run_analyzer(
    config: &FathomConfig,
    database_url: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ServiceError> {
    let queue = Queue::connect(
        database_url,
        config.queue_config(config.database.pool_size as usize),
    )?;
    let store = Store::connect_lazy(database_url, config.database.pool_size)?;
    let waker = if config.database.poll_only {
        Waker::poll_only()
    } else {
        Waker::join(database_url)?
    };
    let analyzer = Analyzer::new(
        crate::catalog::default_catalogers(),
        config.analyzer_options()?,
    );
    let addr: SocketAddr = config.metrics.address.parse().map_err(|e| ConfigError {
        key: "metrics.address".into(),
        message: format!("not HOST:PORT ({e})"),
    })?;
    let health = Arc::new(Health::default());
    let (bound, server) = health::serve(addr, Arc::clone(&health), shutdown.clone())
        .await
        .map_err(|source| ServiceError::Bind { addr, source })?;
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    let worker = Worker::new(worker_config(config), analyzer, queue, store, waker, health);
    worker.run(shutdown).await;
    let _ = server.await;
    Ok(())
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
