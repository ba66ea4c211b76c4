//! The core's runner: the external API and, beside it, the queue maintenance (rescue of dead workers'
//! leases, pruning of finished jobs), the queue gauges, the feed cycle when `services.feeds.enabled`, the
//! catalog loop when `services.catalog.enabled`, the notification dispatcher when
//! `services.notifications.enabled`, the admission webhook when `services.webhook.enabled`,
//! and the Pod lister filling the inventory when `services.webhook.inventory_sync` (with or without the
//! webhook: an inventory of what runs is worth having without admission control).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use fathom_queue::Queue;
use fathom_worker::store::Store;
use tokio::sync::watch;

use crate::config::FathomConfig;
use crate::core::api::estimate::{Estimator, ESTIMATE_TIMEOUT};
use crate::core::api::{self, ApiMetrics, ApiState, Tokens, DOCUMENTS_AT_ONCE};
use crate::core::feeds::FeedMetrics;
use crate::core::forget::metrics::ForgetMetrics;
use crate::core::inventory_sync::SyncMetrics;
use crate::core::policy::PolicyEngine;
use crate::core::queue_gauges::QueueGauges;
use fathom_analyzer::source::registry::DigestResolver;
use fathom_catalog::CatalogMetrics;

/// Runs the API service (and the queue maintenance beside it) until `shutdown` turns true: binds
/// `services.api.address` first so a taken port fails at once, then serves with graceful shutdown.
pub async fn run_core(
    config: &FathomConfig,
    database_url: &str,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let api = config.services.api.clone();
    let addr: SocketAddr = api
        .address
        .parse()
        .with_context(|| format!("services.api.address {:?}", api.address))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding services.api.address {addr}"))?;
    let bound = listener.local_addr()?;
    // The API's own pools: requests are short, so a few connections serve many clients.
    let pool_size = config.database.pool_size.max(4);
    let store = Store::connect_lazy(database_url, pool_size)?;
    let queue = Queue::connect(database_url, config.queue_config(pool_size as usize))?;
    let options =
        fathom_worker::config::analyzer_options(&config.services.analyzer, &config.registry)?;
    let cache_key = fathom_analyzer::analyze::catalogers_key(
        &fathom_analyzer::catalog::default_catalogers(),
        &options,
    );
    let metrics = ApiMetrics::new()?;
    crate::process_metrics::register(metrics.registry(), "core")?;
    let mut policy = PolicyEngine::new(store.clone(), config.services.policy_engine.clone())?;
    policy.register_metrics(metrics.registry())?;
    crate::core::policy::listen(&mut policy, config, database_url)?;
    if let (true, Some(file)) = (
        config.services.policy_engine.enabled,
        config.services.policy_engine.bundle_file.as_deref(),
    ) {
        let stored = policy.seed(file).await?;
        tracing::info!(id = %stored.id, digest = %stored.digest, "policy bundle activated from {file}");
    }
    // A bundle the webhook names but nobody stored would answer every admission by failure policy.
    policy
        .require_webhook_bundles(&config.services.webhook)
        .await?;
    let tokens = Tokens::from_config(&api.tokens)?;
    let catalog_config = config.services.catalog.clone();
    let catalog_metrics = CatalogMetrics::register(metrics.registry(), &catalog_config)?;
    let catalog = crate::core::catalog::build(
        config,
        store.pool().clone(),
        cache_key.clone(),
        catalog_metrics.clone(),
    )?;
    let forget_metrics = ForgetMetrics::register(metrics.registry())?;
    let state = Arc::new(ApiState {
        store,
        queue: queue.clone(),
        config: api.clone(),
        cache_key,
        documents: tokio::sync::Semaphore::new(DOCUMENTS_AT_ONCE),
        deletions: tokio::sync::Semaphore::new(crate::core::api::DELETIONS_AT_ONCE),
        policy: Arc::new(policy),
        catalog: Some(Arc::new(catalog.clone())),
        inventory_ttl: config.services.webhook.inventory_ttl,
        forget: forget_metrics.clone(),
        retention: catalog_config.retention.clone(),
        // The registry settings the workers use, so a digest the job could fetch can be described.
        estimator: Some(Estimator::new(
            DigestResolver::new(options.registry.clone(), options.platform.clone()),
            ESTIMATE_TIMEOUT,
        )),
    });
    // The admission webhook beside the API, on its own HTTPS port, its metrics on the API's /metrics.
    // Bound before the API serves so a taken port or a missing certificate fails the start.
    let webhook = super::webhook::start(
        config,
        state.store.clone(),
        state.cache_key.clone(),
        Some(Arc::clone(&state.policy)),
        metrics.registry(),
        shutdown.clone(),
    )
    .await?;
    // Pods listed into the inventory, one core per interval; a missing Kubernetes client stops the start.
    let hook = &config.services.webhook;
    let inventory_sync = match fathom_webhook::KubePods::for_config(hook)
        .await
        .context("starting services.webhook.inventory_sync")?
    {
        Some(pods) => {
            let sync_metrics = SyncMetrics::register(metrics.registry())?;
            tracing::info!(
                interval = %humantime::format_duration(hook.inventory_sync_interval),
                "inventory sync on: listing pods"
            );
            Some(tokio::spawn(crate::core::inventory_sync::run(
                pods,
                state.store.pool().clone(),
                queue.clone(),
                hook.inventory_sync_interval,
                hook.inventory_ttl,
                sync_metrics,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    let queue_gauges = if api.queue_stats_interval.is_zero() {
        None
    } else {
        let gauges = QueueGauges::register(metrics.registry())?;
        Some(tokio::spawn(gauges.run(
            queue.clone(),
            api.queue_stats_interval,
            shutdown.clone(),
        )))
    };
    let maintenance = tokio::spawn(api::maintenance::run(
        queue.clone(),
        api.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    // Layers no image uses and the retention rules, one core per interval.
    let forget = tokio::spawn(crate::core::forget::run(
        state.store.pool().clone(),
        queue.clone(),
        catalog_config.clone(),
        config.services.webhook.inventory_ttl,
        forget_metrics,
        shutdown.clone(),
    ));
    let feeds = config.services.feeds.clone();
    let feed_cycle = if feeds.enabled {
        let feed_metrics = FeedMetrics::register(metrics.registry(), &feeds.ecosystems)?;
        let pool = state.store.pool().clone();
        tracing::info!(
            interval = %humantime::format_duration(feeds.interval),
            rematch_interval = %humantime::format_duration(feeds.rematch_interval),
            "feed cycle on"
        );
        Some(tokio::spawn(crate::core::feeds::run(
            pool,
            database_url.to_string(),
            feeds,
            feed_metrics,
            shutdown.clone(),
        )))
    } else {
        None
    };
    // Final actions of the images in scope, announced when they change (notifications).
    let scope_interval = config.services.policy_engine.scope_interval;
    let policy_scope =
        (config.services.policy_engine.enabled && !scope_interval.is_zero()).then(|| {
            tokio::spawn(crate::core::policy::scope::run(
                Arc::clone(&state.policy),
                scope_interval,
                shutdown.clone(),
            ))
        });
    let catalog_loop = catalog_config.enabled.then(|| {
        tracing::info!(
            watch_interval = %humantime::format_duration(catalog_config.watch_interval),
            repository_interval = %humantime::format_duration(catalog_config.repository_interval),
            "catalog loop on"
        );
        tokio::spawn(crate::core::catalog::run(
            catalog,
            state.store.pool().clone(),
            database_url.to_string(),
            catalog_config.clone(),
            catalog_metrics,
            shutdown.clone(),
        ))
    });
    // Notifications: endpoints' secrets are read now, so a missing one stops the start naming its key.
    let notifications = config.services.notifications.clone();
    let targets = fathom_notify::send::targets(&notifications, |k| std::env::var(k).ok())?;
    let endpoint_names: Vec<String> = targets.iter().map(|t| t.name().to_string()).collect();
    let notify_metrics =
        fathom_notify::metrics::NotifyMetrics::register(metrics.registry(), &endpoint_names)?;
    let dispatcher = notifications.enabled.then(|| {
        tracing::info!(endpoints = ?endpoint_names, "notification dispatcher on");
        let dispatcher = fathom_notify::dispatch::Dispatcher::new(
            state.store.pool().clone(),
            notifications.clone(),
            targets,
            notify_metrics,
        );
        tokio::spawn(dispatcher.run(database_url.to_string(), shutdown.clone()))
    });
    let app = api::router(state, tokens, metrics)?;
    tracing::info!(address = %bound, auth = api.auth, "API listening");
    // Printed for scripts and tests that bind port 0.
    println!("fathom api listening on http://{bound}");
    let mut stop = shutdown;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .context("API server")?;
    maintenance.abort();
    forget.abort();
    if let Some(gauges) = queue_gauges {
        gauges.abort();
    }
    if let Some(cycle) = feed_cycle {
        cycle.abort();
    }
    if let Some(scope) = policy_scope {
        scope.abort();
    }
    if let Some(catalog) = catalog_loop {
        catalog.abort();
    }
    if let Some(dispatcher) = dispatcher {
        dispatcher.abort();
    }
    if let Some(sync) = inventory_sync {
        sync.abort();
    }
    if let Some(webhook) = webhook {
        webhook.await.context("webhook task")??;
    }
    Ok(())
}
