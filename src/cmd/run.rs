//! `fathom run --config FILE`: run every service the configuration enables, in one process.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::FathomConfig;
use crate::server::shutdown_on_signals;
use crate::services;
use anyhow::Context;

/// Arguments of `fathom run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// YAML configuration file: `services.{analyzer,autoscaler,api}.enabled`, `database.url`, `registry`,
    /// `metrics.address`, ...; every key can be overridden by `FATHOM_<KEY>` (dots as underscores, e.g.
    /// `FATHOM_SERVICES_ANALYZER_CONCURRENCY`).
    #[arg(long)]
    pub config: PathBuf,
    /// PostgreSQL connection URL, when the configuration has no `database.url`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Registry (HOST:PORT) to reach over plain HTTP; repeatable or comma-separated (`registry.insecure`,
    /// also `FATHOM_INSECURE_REGISTRIES`).
    #[arg(long = "insecure-registry", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
}

/// Runs `fathom run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = FathomConfig::load(Some(&args.config))?;
    config.registry.insecure.extend(
        args.insecure_registries
            .into_iter()
            .filter(|h| !h.is_empty()),
    );
    let services = &config.services;
    let engine_alone = services.policy_engine.address.is_some();
    if !services.analyzer.enabled
        && !services.autoscaler.enabled
        && !services.api.enabled
        && !engine_alone
    {
        anyhow::bail!("invalid configuration: services: no service is enabled");
    }
    if services.webhook.enabled && !services.api.enabled {
        anyhow::bail!(
            "invalid configuration: services.webhook.enabled: the webhook is served by the core; \
             enable services.api too"
        );
    }
    let webhook_address = services.webhook.address.to_string();
    let listeners = [
        (
            services.analyzer.enabled,
            "metrics.address",
            config.metrics.address.as_str(),
        ),
        (
            services.autoscaler.enabled,
            "services.autoscaler.metrics_address",
            services.autoscaler.metrics_address.as_str(),
        ),
        (
            services.api.enabled,
            "services.api.address",
            services.api.address.as_str(),
        ),
        (
            services.webhook.enabled,
            "services.webhook.address",
            webhook_address.as_str(),
        ),
        (
            engine_alone,
            "services.policy_engine.address",
            services
                .policy_engine
                .address
                .as_deref()
                .unwrap_or_default(),
        ),
    ];
    for (i, (on, key, addr)) in listeners.iter().enumerate() {
        let port_zero = addr.ends_with(":0");
        if let Some((_, other, _)) = listeners[..i]
            .iter()
            .find(|(o, _, a)| *on && *o && a == addr && !port_zero)
        {
            anyhow::bail!("invalid configuration: {key}: {addr} is {other} too");
        }
    }
    let url = config.database_url(args.database_url)?;
    super::runtime()?.block_on(async move {
        let shutdown = shutdown_on_signals()?;
        let mut tasks = tokio::task::JoinSet::new();
        if config.services.analyzer.enabled {
            let (config, url, shutdown) = (config.clone(), url.clone(), shutdown.clone());
            tasks.spawn(async move {
                services::worker::run_worker(&config, &url, shutdown)
                    .await
                    .context("analyzer service")
            });
        }
        if config.services.autoscaler.enabled {
            let (config, url, shutdown) = (config.clone(), url.clone(), shutdown.clone());
            tasks.spawn(async move {
                services::autoscaler::run_autoscaler(&config, &url, shutdown)
                    .await
                    .context("autoscaler service")
            });
        }
        if config.services.api.enabled {
            let (config, url, shutdown) = (config.clone(), url.clone(), shutdown.clone());
            tasks.spawn(async move {
                services::core::run_core(&config, &url, shutdown)
                    .await
                    .context("API service")
            });
        }
        if config.services.policy_engine.address.is_some() {
            let (config, url, shutdown) = (config.clone(), url.clone(), shutdown.clone());
            tasks.spawn(async move {
                services::policy_engine::run_policy_engine(&config, &url, shutdown)
                    .await
                    .context("policy engine service")
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("service task")??;
        }
        Ok(ExitCode::SUCCESS)
    })
}
