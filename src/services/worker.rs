//! The worker's runner: pools, waker, the analyzer engine, the health endpoint, then the job loop.

use std::net::SocketAddr;
use std::sync::Arc;

use fathom_queue::{Queue, Waker};
use tokio::sync::watch;

use anyhow::Context;
use fathom_analyzer::Analyzer;
use fathom_worker::job::health::Health;
use fathom_worker::job::{worker_id, Worker, WorkerConfig};
use fathom_worker::metrics::Metrics;
use fathom_worker::store::Store;

use crate::config::{ConfigError, FathomConfig};

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
        breaker: fathom_worker::config::breaker_config(&config.registry),
        max_concurrent_per_host: config.registry.max_concurrent_per_host,
    }
}

/// Runs the analyzer service until `shutdown` turns true and in-flight work is drained or released.
/// Fails only at start (bad configuration, metrics address taken); Postgres being down is waited out.
pub async fn run_worker(
    config: &FathomConfig,
    database_url: &str,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let queue = Queue::connect(
        database_url,
        config.queue_config(config.database.pool_size as usize),
    )?;
    let store = Store::connect_lazy_idle(
        database_url,
        config.database.pool_size,
        config.database.idle_timeout,
    )?;
    let waker = if config.database.poll_only {
        Waker::poll_only()
    } else {
        Waker::join(database_url)?
    };
    let analyzer = Analyzer::new(
        fathom_analyzer::catalog::default_catalogers(),
        fathom_worker::config::analyzer_options(&config.services.analyzer, &config.registry)?,
    );
    let addr: SocketAddr = config.metrics.address.parse().map_err(|e| ConfigError {
        key: "metrics.address".into(),
        message: format!("not HOST:PORT ({e})"),
    })?;
    crate::process_metrics::register(Metrics::get().registry(), "worker")?;
    let health = Arc::new(Health::default());
    let ready = Arc::clone(&health);
    let app = crate::server::health_router(|| Metrics::get().render(), move || ready.ready());
    let (bound, server) =
        crate::server::bind_and_serve(addr, app, shutdown.clone(), "metrics server")
            .await
            .with_context(|| format!("metrics.address {addr}: cannot listen"))?;
    tracing::info!(%bound, "serving /metrics, /healthz, /readyz");
    let worker = Worker::new(worker_config(config), analyzer, queue, store, waker, health);
    worker.run(shutdown).await;
    let _ = server.await;
    Ok(())
}
