//! `fathom autoscaler`: size the analyzer fleet from queue depth, on Kubernetes or with local worker
//! processes. The flags here override `services.autoscaler` of the configuration file; the service
//! itself (shared with `fathom run`) is in [`service`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::FathomConfig;
use crate::server::shutdown_on_signals;
use fathom_autoscaler::AutoscalerTarget;

/// Which target, and where it lives: shared by `fathom autoscaler` and `fathom scale`.
#[derive(clap::Args, Debug, Default)]
pub struct TargetArgs {
    /// YAML configuration file (`services.autoscaler`, `database.url`); every key can also come from
    /// `FATHOM_...` variables.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// PostgreSQL connection URL (else `database.url` from the configuration).
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// What to scale: `kubernetes` (the analyzer Deployment) or `local` (worker processes spawned here).
    #[arg(long, value_parser = parse_target, global = true)]
    pub target: Option<AutoscalerTarget>,
    /// Namespace of the Deployment (default: `POD_NAMESPACE`, else `default`).
    #[arg(long, global = true)]
    pub namespace: Option<String>,
    /// Name of the analyzer Deployment (default `fathom-analyzer`).
    #[arg(long, global = true)]
    pub deployment: Option<String>,
    /// Local target: directory holding `override.json` and the running autoscaler's `status.json`
    /// (default: `$TMPDIR/fathom-autoscaler`).
    #[arg(long, global = true)]
    pub state_dir: Option<PathBuf>,
}

fn parse_target(s: &str) -> Result<AutoscalerTarget, String> {
    s.parse()
}

impl TargetArgs {
    /// Loads the configuration and applies these flags (validation is the caller's, after its own).
    pub fn load(self) -> anyhow::Result<(FathomConfig, Option<String>)> {
        let mut config = FathomConfig::load(self.config.as_deref())?;
        let a = &mut config.services.autoscaler;
        if let Some(t) = self.target {
            a.target = t;
        }
        if self.namespace.is_some() {
            a.namespace = self.namespace;
        }
        if let Some(d) = self.deployment {
            a.deployment = d;
        }
        if self.state_dir.is_some() {
            a.state_dir = self.state_dir;
        }
        Ok((config, self.database_url))
    }
}

/// The decision policy (`services.autoscaler.*`).
#[derive(clap::Args, Debug, Default)]
pub struct PolicyArgs {
    /// Lowest replica count (0 allows scale-to-zero).
    #[arg(long)]
    pub min_replicas: Option<u32>,
    /// Highest replica count.
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// Jobs one replica works on at once (default: the workers' concurrency).
    #[arg(long)]
    pub jobs_per_replica: Option<u32>,
    /// From zero, scale up only when more than this many jobs are queued...
    #[arg(long)]
    pub activation_queued: Option<u64>,
    /// ...or once the oldest queued job has waited this long, e.g. 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub activation_age: Option<Duration>,
    /// Most replicas added per scale-up period.
    #[arg(long)]
    pub max_scale_up_step: Option<u32>,
    /// The period of --max-scale-up-step, e.g. 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub scale_up_period: Option<Duration>,
    /// Scale down only to the highest recommendation within this window, e.g. 2m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub scale_down_stabilization: Option<Duration>,
    /// The queue must be empty this long before scaling to zero, e.g. 5m.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub scale_to_zero_cooldown: Option<Duration>,
}

/// Arguments of `fathom autoscaler`.
#[derive(clap::Args, Debug)]
pub struct AutoscalerArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Rounds run at least this often (enqueue notifications trigger one at once), e.g. 5s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub poll_interval: Option<Duration>,
    /// Log decisions without writing replicas or pod annotations.
    #[arg(long)]
    pub dry_run: bool,
    /// Listen address of /metrics, /healthz, /readyz and /status (`services.autoscaler.metrics_address`).
    #[arg(long)]
    pub metrics_address: Option<String>,
    /// Kubernetes: write without electing a leader (only when exactly one autoscaler runs).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Kubernetes: the leader-election Lease (default: `<deployment>-autoscaler`).
    #[arg(long)]
    pub lease_name: Option<String>,
    /// Local: how long a stopped worker may drain before it is killed, e.g. 60s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Local: configuration file given to every worker as `--config`.
    #[arg(long)]
    pub worker_config: Option<PathBuf>,
}

impl AutoscalerArgs {
    /// The configuration: file, then environment, then these flags; validated.
    pub fn into_config(self) -> anyhow::Result<(FathomConfig, String)> {
        let (mut config, url) = self.target.load()?;
        let a = &mut config.services.autoscaler;
        let p = self.policy;
        macro_rules! set {
            ($($field:ident <- $value:expr),* $(,)?) => {
                $(if let Some(v) = $value { a.$field = v; })*
            };
        }
        set!(
            min_replicas <- p.min_replicas,
            max_replicas <- p.max_replicas,
            activation_queued <- p.activation_queued,
            activation_age <- p.activation_age,
            max_scale_up_step <- p.max_scale_up_step,
            scale_up_period <- p.scale_up_period,
            scale_down_stabilization <- p.scale_down_stabilization,
            scale_to_zero_cooldown <- p.scale_to_zero_cooldown,
            poll_interval <- self.poll_interval,
            metrics_address <- self.metrics_address,
            drain_timeout <- self.drain_timeout,
        );
        if p.jobs_per_replica.is_some() {
            a.jobs_per_replica = p.jobs_per_replica;
        }
        if self.lease_name.is_some() {
            a.lease_name = self.lease_name;
        }
        if self.worker_config.is_some() {
            a.worker_config = self.worker_config;
        }
        a.dry_run |= self.dry_run;
        a.leader_election &= !self.no_leader_election;
        config.validate()?;
        let url = config.database_url(url)?;
        Ok((config, url))
    }
}

/// Runs `fathom autoscaler`.
pub fn run(args: AutoscalerArgs) -> anyhow::Result<ExitCode> {
    let (config, url) = args.into_config()?;
    super::runtime()?.block_on(async move {
        let shutdown = shutdown_on_signals()?;
        crate::services::autoscaler::run_autoscaler(&config, &url, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    })
}
