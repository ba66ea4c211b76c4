//! `fathom run --config FILE`: run every service the configuration enables, in one process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fathom_worker::config::FathomConfig;
use fathom_worker::job::service;

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
}

/// Runs `fathom run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = FathomConfig::load(Some(&args.config))?;
    let services = &config.services;
    // Hooks for the services other crates provide: each is spawned into `tasks` below with the same
    // shutdown receiver once it exists. Until then, asking for one is a configuration error rather
    // than a silent no-op.
    if services.api.enabled {
        anyhow::bail!(
            "invalid configuration: services.api.enabled: the API service does not exist yet"
        );
    }
    if !services.analyzer.enabled && !services.autoscaler.enabled {
        anyhow::bail!("invalid configuration: services: no service is enabled");
    }
    if services.analyzer.enabled
        && services.autoscaler.enabled
        && services.autoscaler.metrics_address == config.metrics.address
    {
        anyhow::bail!(
            "invalid configuration: services.autoscaler.metrics_address: {} is metrics.address too (the analyzer's)",
            config.metrics.address
        );
    }
    let url = config.database_url(args.database_url)?;
    super::runtime()?.block_on(async move {
        let shutdown = service::shutdown_on_signals()?;
        let mut tasks = tokio::task::JoinSet::new();
        if config.services.analyzer.enabled {
            let (config, url, shutdown) = (config.clone(), url.clone(), shutdown.clone());
            tasks.spawn(async move {
                service::run_analyzer(&config, &url, shutdown)
                    .await
                    .context("analyzer service")
            });
        }
        if config.services.autoscaler.enabled {
            let (config, url, shutdown) = (config.clone(), url.clone(), shutdown.clone());
            tasks.spawn(async move {
                super::autoscaler::service::run_autoscaler(&config, &url, shutdown)
                    .await
                    .context("autoscaler service")
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.context("service task")??;
        }
        Ok(ExitCode::SUCCESS)
    })
}
