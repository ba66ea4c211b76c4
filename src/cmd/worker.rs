//! `fathom worker`: run the analyzer service alone (what the analyzer Deployment runs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::FathomConfig;
use crate::server::shutdown_on_signals;
use crate::services;

/// Arguments of `fathom worker`. Flags override the configuration file and its `FATHOM_...` variables.
#[derive(clap::Args, Debug)]
pub struct WorkerArgs {
    /// YAML configuration file (see `fathom run --help`); every key can also come from `FATHOM_...`.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// PostgreSQL connection URL (else `database.url` from the configuration).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Jobs in flight (`services.analyzer.concurrency`).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Lease length, e.g. 30s (`services.analyzer.lease_ttl`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub lease_ttl: Option<Duration>,
    /// Time in-flight jobs get to finish on SIGTERM, e.g. 25s (`services.analyzer.drain_timeout`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Listen address of /metrics, /healthz and /readyz (`metrics.address`).
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// Registry (HOST:PORT) to reach over plain HTTP; repeatable or comma-separated (`registry.insecure`).
    #[arg(long = "insecure-registry", value_delimiter = ',')]
    pub insecure_registries: Vec<String>,
}

impl WorkerArgs {
    /// The configuration: file, then environment, then these flags; validated.
    pub fn into_config(self) -> anyhow::Result<(FathomConfig, String)> {
        let mut config = FathomConfig::load(self.config.as_deref())?;
        let a = &mut config.services.analyzer;
        if let Some(n) = self.concurrency {
            a.concurrency = n;
        }
        if let Some(t) = self.lease_ttl {
            a.lease_ttl = t;
        }
        if let Some(t) = self.drain_timeout {
            a.drain_timeout = t;
        }
        if let Some(addr) = self.metrics_address {
            config.metrics.address = addr;
        }
        config.registry.insecure.extend(
            self.insecure_registries
                .into_iter()
                .filter(|h| !h.is_empty()),
        );
        config.validate()?;
        let url = config.database_url(self.database_url)?;
        Ok((config, url))
    }
}

/// Runs `fathom worker`.
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let (config, url) = args.into_config()?;
    super::runtime()?.block_on(async move {
        let shutdown = shutdown_on_signals()?;
        services::worker::run_worker(&config, &url, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
