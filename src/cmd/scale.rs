//! `fathom scale override N | clear | pause | resume | status [--json]`: the manual override without
//! kubectl, and what the autoscaler sees. The override lands where the autoscaler reads it: annotations
//! on the Deployment, or the local state directory's `override.json`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::config::FathomConfig;
use anyhow::Context;
use fathom_autoscaler::decision::{Bytes, ScaleOn, WorkFigures};
use fathom_autoscaler::local::LocalTarget;
use fathom_autoscaler::AutoscalerTarget;
use fathom_autoscaler::{
    status_once, Override, OverrideOp, QueueSnapshot, ScaleTarget, StatsSource,
};
use serde::Serialize;

use super::autoscaler::TargetArgs;
use crate::services::autoscaler::{self as service, STATUS_FILE};

/// Arguments of `fathom scale`.
#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[command(subcommand)]
    command: ScaleCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ScaleCommand {
    /// Pin exactly N replicas until `clear` (min/max do not apply).
    Override {
        /// Replicas to run.
        replicas: u32,
    },
    /// Remove the pin: the autoscaler decides again.
    Clear,
    /// Hands off: the autoscaler writes nothing until `resume` (a pin is kept).
    Pause,
    /// Undo `pause`.
    Resume,
    /// Queue depth, current and desired replicas, the reason, and the override.
    Status {
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// What `fathom scale status` prints.
#[derive(Debug, Serialize)]
struct ScaleStatus {
    /// `kubernetes deployment NS/NAME` or `local STATE_DIR`.
    target: String,
    queue: QueueSnapshot,
    /// Replicas running now (local: as the running autoscaler last saw them; null if none runs).
    current: Option<u32>,
    /// Replicas the autoscaler wants.
    desired: Option<u32>,
    /// Low-cardinality reason (`burst`, `drain`, `pinned`, ...).
    reason: Option<String>,
    /// The whole story.
    message: Option<String>,
    #[serde(rename = "override")]
    ov: Override,
    /// An HPA or KEDA object that owns the Deployment instead.
    conflict: Option<String>,
    /// Local: seconds since the running autoscaler's last round (null when none ever ran here).
    last_round_age_s: Option<f64>,
    /// What counts as load (`services.autoscaler.scale_on`).
    scale_on: ScaleOn,
    /// The figures behind the decision: throughput, demand, what each policy would ask for.
    figures: Option<WorkFigures>,
}

/// Runs `fathom scale`.
pub fn run(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    let (config, url) = args.target.load()?;
    config.validate()?;
    let op = match args.command {
        ScaleCommand::Override { replicas } => OverrideOp::Pin(replicas),
        ScaleCommand::Clear => OverrideOp::Clear,
        ScaleCommand::Pause => OverrideOp::Pause,
        ScaleCommand::Resume => OverrideOp::Resume,
        ScaleCommand::Status { json } => {
            let url = config.database_url(url)?;
            let status = super::runtime()?.block_on(status(&config, &url))?;
            print(&status, json)?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    super::runtime()?.block_on(async {
        match config.services.autoscaler.target {
            AutoscalerTarget::Kubernetes => {
                service::kube_target(&config, false)
                    .await?
                    .apply_override(op)
                    .await?
            }
            AutoscalerTarget::Local => local(&config)?.apply_override(op).await?,
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A local target only for its override file (it never spawns here).
fn local(config: &FathomConfig) -> anyhow::Result<LocalTarget> {
    service::local_target(config, "")
}

async fn status(config: &FathomConfig, url: &str) -> anyhow::Result<ScaleStatus> {
    let a = &config.services.autoscaler;
    let stats = service::queue_source(config, url)?;
    match a.target {
        AutoscalerTarget::Kubernetes => {
            let target = service::kube_target(config, false).await?;
            let policy = service::policy(config)?;
            let s = status_once(&target, &stats, &policy).await?;
            let decision = s.decision;
            let observed = s.observed;
            Ok(ScaleStatus {
                target: format!(
                    "kubernetes deployment {}/{}",
                    a.namespace_or_default(),
                    a.deployment
                ),
                queue: s.queue.unwrap_or_default(),
                current: observed.as_ref().map(|o| o.replicas),
                desired: decision.as_ref().map(|d| d.desired),
                reason: decision.as_ref().map(|d| d.reason.as_str().to_string()),
                figures: decision.as_ref().map(|d| d.figures),
                message: decision.map(|d| d.message),
                ov: observed.as_ref().map(|o| o.ov).unwrap_or_default(),
                conflict: observed.and_then(|o| o.conflict),
                last_round_age_s: None,
                scale_on: a.scale_on,
            })
        }
        AutoscalerTarget::Local => {
            // The override and the queue are read fresh; replica counts only the running autoscaler
            // knows (it owns the processes), from the status file it rewrites every round.
            let dir = service::state_dir(config)?;
            let ov = local(config)?.observe().await?.ov;
            let queue = stats.snapshot().await?;
            let mut out = ScaleStatus {
                target: format!("local {}", dir.display()),
                queue,
                current: None,
                desired: None,
                reason: None,
                message: None,
                ov,
                conflict: None,
                last_round_age_s: None,
                scale_on: a.scale_on,
                figures: None,
            };
            read_status_file(&dir.join(STATUS_FILE), &mut out)?;
            // The figures follow the queue just read (the status file's are a round old), with the
            // replicas the running autoscaler last saw.
            let current = out.current.unwrap_or(0);
            out.figures = Some(WorkFigures::of(
                &service::policy(config)?,
                &out.queue,
                current,
            ));
            Ok(out)
        }
    }
}

/// Fills current/desired/reason from a local autoscaler's status file, if one was written.
fn read_status_file(path: &Path, out: &mut ScaleStatus) -> anyhow::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not JSON", path.display()))?;
    let status = &doc["status"];
    out.current = status["observed"]["replicas"].as_u64().map(|n| n as u32);
    out.desired = status["decision"]["desired"].as_u64().map(|n| n as u32);
    out.reason = status["decision"]["reason"].as_str().map(str::to_string);
    out.message = status["decision"]["message"].as_str().map(str::to_string);
    if let Some(ms) = doc["updated_unix_ms"].as_u64() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(ms);
        out.last_round_age_s = Some(now.saturating_sub(ms) as f64 / 1000.0);
    }
    Ok(())
}

fn print(s: &ScaleStatus, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, s)?;
        writeln!(out)?;
        return Ok(());
    }
    let show = |n: Option<u32>| n.map_or("unknown".to_string(), |n| n.to_string());
    let age = s.queue.oldest_queued_age.map_or(String::new(), |d| {
        format!(", oldest waiting {:.1} s", d.as_secs_f64())
    });
    writeln!(out, "target:   {}", s.target)?;
    writeln!(
        out,
        "queue:    {} queued, {} running{age}",
        s.queue.queued, s.queue.running
    )?;
    let w = &s.queue.work;
    writeln!(
        out,
        "work:     {} queued, {} running, {} cached jobs, {} jobs of unknown size",
        Bytes(w.queued_bytes as f64),
        Bytes(w.running_bytes as f64),
        w.queued_cached + w.running_cached,
        w.queued_unknown + w.running_unknown
    )?;
    if let Some(f) = &s.figures {
        writeln!(
            out,
            "figures:  {}/s per replica ({}), cached jobs {:.1} s each, {:.0} slot-seconds waiting; \
             by jobs {}, by work {} (scale_on: {})",
            Bytes(f.throughput_bytes_per_s),
            if f.throughput_learned {
                "learned"
            } else {
                "floor"
            },
            f.cached_job_s,
            f.demand_slot_s,
            f.replicas_by_jobs,
            f.replicas_by_work,
            s.scale_on.as_str()
        )?;
    }
    writeln!(out, "current:  {}", show(s.current))?;
    writeln!(out, "desired:  {}", show(s.desired))?;
    if let Some(m) = &s.message {
        writeln!(out, "reason:   {m}")?;
    }
    writeln!(out, "override: {}", s.ov)?;
    if let Some(c) = &s.conflict {
        writeln!(out, "conflict: {c} (the autoscaler writes nothing)")?;
    }
    match s.last_round_age_s {
        Some(age) => writeln!(out, "last autoscaler round: {age:.1} s ago")?,
        None if s.target.starts_with("local") => {
            writeln!(out, "no local autoscaler has run with this state directory")?
        }
        None => {}
    }
    Ok(())
}
