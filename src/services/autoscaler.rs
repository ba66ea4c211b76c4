//! The autoscaler service, shared by `fathom autoscaler` and `fathom run`: builds the target and the
//! queue source from a [`FathomConfig`], turns LISTEN/NOTIFY wake-ups into nudges, serves metrics, and
//! cleans up on shutdown (local workers drained, the Lease released).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::FathomConfig;
use anyhow::Context;
use fathom_autoscaler::k8s::{KubeConfig, KubeTarget, LeaseConfig};
use fathom_autoscaler::local::{ChildExit, ExitKind, LocalConfig, LocalTarget, WorkerCommand};
use fathom_autoscaler::AutoscalerTarget;
use fathom_autoscaler::{Autoscaler, LoopConfig, Metrics, Policy, ScaleTarget, Status};
use fathom_queue::{Queue, Wake, Waker};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::{watch, Notify};

use super::autoscaler_http as http;
// The demo serves an in-process autoscaler's endpoints itself; nothing else needs the re-export.
#[cfg(feature = "demo")]
pub use super::autoscaler_http::serve as serve_http;
use crate::queue_source::QueueSource;

/// The override file inside the local state directory.
pub const OVERRIDE_FILE: &str = "override.json";
/// The running local autoscaler's last round, for `fathom scale status`.
pub const STATUS_FILE: &str = "status.json";

/// The decision policy from `services.autoscaler`; jobs per replica default to the workers' concurrency
/// (from the local workers' own configuration file when one is given).
pub fn policy(config: &FathomConfig) -> anyhow::Result<Policy> {
    let a = &config.services.autoscaler;
    let concurrency = match (&a.worker_config, a.target) {
        (Some(path), AutoscalerTarget::Local) => {
            FathomConfig::load(Some(path))
                .context("services.autoscaler.worker_config")?
                .services
                .analyzer
                .concurrency
        }
        _ => config.services.analyzer.concurrency,
    };
    let policy = a.policy(concurrency);
    policy
        .validate()
        .context("invalid configuration: services.autoscaler")?;
    Ok(policy)
}

/// A small queue handle for statistics.
pub fn queue_source(config: &FathomConfig, url: &str) -> anyhow::Result<QueueSource> {
    let queue = Queue::connect(url, config.queue_config(1))?;
    Ok(QueueSource::new(queue))
}

/// The local state directory, created if missing.
pub fn state_dir(config: &FathomConfig) -> anyhow::Result<PathBuf> {
    let dir = config.services.autoscaler.state_dir_or_default();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("services.autoscaler.state_dir {}", dir.display()))?;
    Ok(dir)
}

/// The local target: `fathom worker` from this very executable, with the same database.
pub fn local_target(config: &FathomConfig, url: &str) -> anyhow::Result<LocalTarget> {
    let a = &config.services.autoscaler;
    let program = std::env::current_exe().context("locating the fathom executable")?;
    let mut args: Vec<OsString> = vec!["worker".into()];
    if let Some(path) = &a.worker_config {
        args.extend([OsString::from("--config"), path.clone().into_os_string()]);
    }
    Ok(LocalTarget::new(LocalConfig {
        command: WorkerCommand {
            program: program.into_os_string(),
            args,
            env: vec![("DATABASE_URL".into(), url.into())],
        },
        id_prefix: format!("{}-worker", fathom_worker::job::worker_id()),
        drain_timeout: a.drain_timeout,
        override_file: state_dir(config)?.join(OVERRIDE_FILE),
        // Every worker needs its own metrics port; the target picks one per worker on loopback and
        // logs each worker's /metrics URL as it starts it.
        metrics_host: Some(std::net::Ipv4Addr::LOCALHOST.into()),
    }))
}

/// The Kubernetes target, with leader election when asked (the CLI's one-shot commands do without).
pub async fn kube_target(config: &FathomConfig, elect: bool) -> anyhow::Result<KubeTarget> {
    let a = &config.services.autoscaler;
    let client = kube::Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account or KUBECONFIG)")?;
    let mut cfg = KubeConfig::new(a.namespace_or_default(), a.deployment.clone());
    cfg.dry_run = a.dry_run;
    if !elect {
        return Ok(KubeTarget::new(client, cfg));
    }
    let mut lease = LeaseConfig::new(fathom_worker::job::worker_id());
    lease.name = a.lease_name_or_default();
    // Renewed every round: keep the Lease valid across a few missed rounds.
    lease.lease_duration = lease.lease_duration.max(a.poll_interval * 3);
    Ok(KubeTarget::with_leader_election(client, cfg, lease))
}

/// Runs the autoscaler until `shutdown` turns true. Fails only at start (bad configuration, address
/// taken, no Kubernetes client); rounds that fail are logged, counted and retried.
pub async fn run_autoscaler(
    config: &FathomConfig,
    url: &str,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let a = &config.services.autoscaler;
    let registry = Registry::new();
    let metrics = Metrics::register(&registry)?;
    crate::process_metrics::register(&registry, "autoscaler")?;
    let loop_cfg = LoopConfig {
        policy: policy(config)?,
        poll_interval: a.poll_interval,
        min_interval: a.poll_interval.min(Duration::from_secs(1)),
    };
    let stats = queue_source(config, url)?;
    let nudge = Arc::new(Notify::new());
    let nudger = spawn_nudger(config, url, Arc::clone(&nudge))?;
    let result = match a.target {
        AutoscalerTarget::Local => {
            let target = Arc::new(local_target(config, url)?);
            let exits = IntCounterVec::new(
                Opts::new(
                    "fathom_autoscaler_local_worker_exits_total",
                    "Local worker processes that ended, by how: drained, killed (drain timeout), crashed",
                ),
                &["kind"],
            )?;
            registry.register(Box::new(exits.clone()))?;
            // Zero from the start, so a crash shows as an increase rather than a new series.
            for kind in [ExitKind::Drained, ExitKind::Killed, ExitKind::Crashed] {
                exits.with_label_values(&[exit_label(kind)]);
            }
            let reaper = spawn_reaper(Arc::clone(&target), exits.clone());
            let autoscaler = Autoscaler::new(Arc::clone(&target), stats, loop_cfg, Some(metrics))?;
            let status_file = Some(state_dir(config)?.join(STATUS_FILE));
            let run = drive(
                autoscaler,
                &a.metrics_address,
                registry,
                status_file,
                nudge,
                shutdown,
            )
            .await;
            reaper.abort();
            tracing::info!("stopping local workers (drain)");
            record_exits(&exits, target.stop_all().await);
            run.map(drop)
        }
        AutoscalerTarget::Kubernetes => {
            let target = kube_target(config, a.leader_election).await?;
            let autoscaler = Autoscaler::new(target, stats, loop_cfg, Some(metrics))?;
            let run = drive(
                autoscaler,
                &a.metrics_address,
                registry,
                None,
                nudge,
                shutdown,
            )
            .await;
            if let Ok(stopped) = &run {
                if let Err(e) = stopped.target().release_leadership().await {
                    tracing::warn!(error = %e, "releasing the leader Lease");
                }
            }
            run.map(drop)
        }
    };
    if let Some(n) = nudger {
        n.abort();
    }
    result
}

/// Serves metrics, follows the status, runs the loop until shutdown; returns the stopped autoscaler.
async fn drive<T: ScaleTarget + 'static>(
    autoscaler: Autoscaler<T, QueueSource>,
    address: &str,
    registry: Registry,
    status_file: Option<PathBuf>,
    nudge: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Autoscaler<T, QueueSource>> {
    let addr: SocketAddr = address
        .parse()
        .with_context(|| format!("services.autoscaler.metrics_address {address:?}"))?;
    let ready = Arc::new(AtomicBool::new(false));
    let status = autoscaler.status();
    let (bound, server) = http::serve(
        addr,
        registry,
        status.clone(),
        Arc::clone(&ready),
        shutdown.clone(),
    )
    .await
    .with_context(|| format!("services.autoscaler.metrics_address {addr}: cannot listen"))?;
    tracing::info!(%bound, "autoscaler serving /metrics, /healthz, /readyz, /status");
    let follower = tokio::spawn(follow_status(status, ready, status_file));
    let stopped = autoscaler
        .run(nudge, async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    follower.abort();
    let _ = server.await;
    Ok(stopped)
}

/// Turns LISTEN/NOTIFY wake-ups (enqueue, release, rescue) into nudges so a burst is seen at once; none
/// behind PgBouncer (`database.poll_only`), where the poll interval alone drives the loop.
fn spawn_nudger(
    config: &FathomConfig,
    url: &str,
    nudge: Arc<Notify>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if config.database.poll_only {
        return Ok(None);
    }
    nudge_on_notify(url, nudge).map(Some)
}

/// Listens for job notifications and nudges the loop on each one (the demo uses it too).
pub(crate) fn nudge_on_notify(
    url: &str,
    nudge: Arc<Notify>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut waker = Waker::listen(url)?;
    Ok(tokio::spawn(async move {
        loop {
            if waker.wait(Duration::from_secs(60)).await == Wake::Notified {
                nudge.notify_one();
            }
        }
    }))
}

/// Keeps readiness and (local target) the status file in step with the loop's rounds.
async fn follow_status(
    mut status: watch::Receiver<Status>,
    ready: Arc<AtomicBool>,
    file: Option<PathBuf>,
) {
    while status.changed().await.is_ok() {
        let s = status.borrow_and_update().clone();
        ready.store(s.error.is_none(), Ordering::Relaxed);
        if let Some(path) = &file {
            if let Err(e) = write_status(path, &s) {
                tracing::warn!(file = %path.display(), error = %e, "writing the status file");
            }
        }
    }
}

/// Writes `{pid, updated_unix_ms, status}` through a temporary file, so a reader never sees half of it.
fn write_status(path: &Path, status: &Status) -> std::io::Result<()> {
    let updated = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let doc = serde_json::json!({
        "pid": std::process::id(),
        "updated_unix_ms": updated,
        "status": status,
    });
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)?;
    std::fs::rename(&tmp, path)
}

/// Collects exited local workers every second (the target keeps them until taken), logging and
/// counting each.
fn spawn_reaper(target: Arc<LocalTarget>, exits: IntCounterVec) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            record_exits(&exits, target.take_exits().await);
        }
    })
}

fn record_exits(counter: &IntCounterVec, exits: Vec<ChildExit>) {
    for exit in exits {
        let kind = exit_label(exit.kind);
        counter.with_label_values(&[kind]).inc();
        tracing::info!(worker = %exit.id, kind, status = %exit.status, "local worker exited");
    }
}

fn exit_label(kind: ExitKind) -> &'static str {
    match kind {
        ExitKind::Drained => "drained",
        ExitKind::Killed => "killed",
        ExitKind::Crashed => "crashed",
    }
}
