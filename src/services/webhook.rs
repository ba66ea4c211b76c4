//! The admission webhook inside the core (`services.webhook`): its oracle over the core's store and the
//! analyzer's registry client, its HTTPS server, its metrics in the core's registry.

use std::sync::Arc;

use anyhow::Context;
use fathom_analyzer::source::registry::DigestResolver;
use fathom_webhook::{KubeNamespaces, NamespaceSource, WebhookServer};
use fathom_worker::store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::FathomConfig;
use crate::core::oracle::{cached_policy_check, StoreOracle};
use crate::core::policy::PolicyEngine;

/// Binds the webhook when `services.webhook.enabled` and serves it in a task until `shutdown` turns
/// true; `None` when it is off. Errors (certificate, port, configuration) surface here, before serving.
pub async fn start(
    config: &FathomConfig,
    store: Store,
    cache_key: String,
    policy: Option<Arc<PolicyEngine>>,
    registry: &prometheus::Registry,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<JoinHandle<anyhow::Result<()>>>> {
    let hook = &config.services.webhook;
    if !hook.enabled {
        return Ok(None);
    }
    let options =
        fathom_worker::config::analyzer_options(&config.services.analyzer, &config.registry)?;
    // Tag lookups share the time budget of the whole answer: never wait on a registry longer than it.
    let mut registry_options = options.registry.clone();
    registry_options.timeout = registry_options.timeout.min(hook.timeout);
    let resolver = DigestResolver::new(registry_options, options.platform.clone());
    let fresh = policy.as_ref().map(|p| p.freshness().clone());
    let policy = cached_policy_check(policy, store.pool().clone(), &config.services.policy_engine);
    // What runs, written in batches off the request path; a full queue drops uses (counted) instead.
    let dropped = prometheus::IntCounter::new(
        "fathom_webhook_inventory_dropped_total",
        "Admitted containers' image uses not recorded in the inventory because its write queue was full",
    )?;
    registry.register(Box::new(dropped.clone()))?;
    let recorder = fathom_catalog::inventory::Recorder::spawn(
        store.pool().clone(),
        hook.inventory_ttl,
        dropped,
    );
    let oracle = StoreOracle::new(
        store,
        resolver,
        policy,
        cache_key,
        config.services.api.max_attempts,
        hook.cache_ttl,
    )
    .with_inventory(recorder);
    let oracle = match fresh {
        Some(fresh) => oracle.with_freshness(fresh),
        None => oracle,
    };
    // Selectors on namespace labels: the labels come from the Kubernetes API (in-cluster by default).
    let namespaces = KubeNamespaces::for_config(hook)
        .await
        .context("starting services.webhook")?
        .map(|k| Arc::new(k) as Arc<dyn NamespaceSource>);
    let server = WebhookServer::bind_with(hook, Arc::new(oracle), namespaces, registry)
        .await
        .context("starting services.webhook")?;
    let bound = server.local_addr()?;
    tracing::info!(address = %bound, mode = hook.default_mode.as_str(), "admission webhook listening");
    // Printed for scripts and tests that bind port 0.
    println!("fathom webhook listening on https://{bound}");
    let mut stop = shutdown;
    Ok(Some(tokio::spawn(async move {
        server
            .run(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
            .context("webhook server")
    })))
}
