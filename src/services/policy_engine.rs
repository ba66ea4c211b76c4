//! The policy engine as its own service (`services.policy_engine.address`): the split deployment's
//! policy engine Deployment. It evaluates checks from the shared database (bundles, images, matches) and
//! the core's API forwards checks to it (`services.api.policy_engine_url`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use fathom_queue::Queue;
use fathom_worker::store::Store;
use tokio::sync::watch;

use crate::config::FathomConfig;
use crate::core::api::{engine, ApiMetrics, ApiState, Tokens, DOCUMENTS_AT_ONCE};
use crate::core::policy::PolicyEngine;

/// Serves the engine on `services.policy_engine.address` until `shutdown` turns true.
pub async fn run_policy_engine(
    config: &FathomConfig,
    database_url: &str,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let section = &config.services.policy_engine;
    let address = section
        .address
        .as_deref()
        .context("services.policy_engine.address is not set")?;
    let addr: SocketAddr = address
        .parse()
        .with_context(|| format!("services.policy_engine.address {address:?}"))?;
    let api = config.services.api.clone();
    if api.auth && api.tokens.is_empty() {
        anyhow::bail!(
            "invalid configuration: services.api.tokens: empty while services.api.auth is true; the \
             policy engine checks the API's tokens (set FATHOM_SERVICES_API_TOKENS, or auth: false)"
        );
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding services.policy_engine.address {addr}"))?;
    let bound = listener.local_addr()?;
    let pool_size = config.database.pool_size.max(4);
    let store = Store::connect_lazy(database_url, pool_size)?;
    // The shared state carries a queue handle; the engine never uses it (its pool connects lazily).
    let queue = Queue::connect(database_url, config.queue_config(1))?;
    let metrics = ApiMetrics::new()?;
    crate::process_metrics::register(metrics.registry(), "policy-engine")?;
    let mut policy = PolicyEngine::new(store.clone(), section.clone())?;
    policy.register_metrics(metrics.registry())?;
    crate::core::policy::listen(&mut policy, config, database_url)?;
    if let Some(file) = section.bundle_file.as_deref() {
        let stored = policy.seed(file).await?;
        tracing::info!(id = %stored.id, digest = %stored.digest, "policy bundle activated from {file}");
    }
    policy.protect_webhook_bundles(&config.services.webhook);
    let tokens = Tokens::from_config(&api.tokens)?;
    let state = Arc::new(ApiState {
        store,
        queue,
        // Never forward from the engine itself.
        config: crate::core::config::ApiServiceConfig {
            policy_engine_url: None,
            ..api
        },
        cache_key: String::new(),
        documents: tokio::sync::Semaphore::new(DOCUMENTS_AT_ONCE),
        deletions: tokio::sync::Semaphore::new(crate::core::api::DELETIONS_AT_ONCE),
        policy: Arc::new(policy),
        catalog: None,
        inventory_ttl: config.services.webhook.inventory_ttl,
        forget: crate::core::forget::metrics::ForgetMetrics::unregistered()?,
        // The engine serves checks only: no prune route, no rules.
        retention: fathom_catalog::RetentionConfig::default(),
        estimator: None,
    });
    let app = engine::router(state, tokens, metrics);
    tracing::info!(address = %bound, "policy engine listening");
    // Printed for scripts and tests that bind port 0.
    println!("fathom policy engine listening on http://{bound}");
    let mut stop = shutdown;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("policy engine server")
}
