//! The local-process target: the autoscaler spawns and stops worker processes itself, for single machines
//! and the demo.
//!
//! Each child gets a unique worker id in `POD_NAME` (the worker records it as its lease owner, so the
//! queue's busy map names children) and, when [`LocalConfig::metrics_host`] is set, a metrics port of its
//! own in `FATHOM_METRICS_ADDRESS`, so every worker's `/metrics` URL is known from the moment it starts. Scale-in stops idle children first and lets busy ones drain: they
//! get SIGTERM, stop counting as replicas at once, and are killed only after the drain timeout. Exited
//! children are reaped on every observation and reported (a crash is logged and replaced by the next
//! decision).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::target::{BusyMap, Observed, OverrideOp, OverrideSettings, ScaleTarget, SetOutcome};

/// The worker program to run, e.g. `fathom worker --config ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerCommand {
    /// Program path or name.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment (the parent's environment is inherited; `POD_NAME` is set per child).
    pub env: Vec<(OsString, OsString)>,
}

/// How the local target runs workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// What each worker runs.
    pub command: WorkerCommand,
    /// Worker ids are `{id_prefix}-{n}`; include the host name when several machines share a queue.
    pub id_prefix: String,
    /// How long a stopped worker may take to finish or release its jobs before it is killed.
    pub drain_timeout: Duration,
    /// Where the manual override is kept (JSON; absent means no override).
    pub override_file: PathBuf,
    /// When set, each worker serves its metrics on this host at a port chosen here (passed as
    /// `FATHOM_METRICS_ADDRESS`, which overrides the worker's configuration file) and
    /// [`LocalTarget::workers`] reports it. When unset the workers' own configuration decides.
    pub metrics_host: Option<IpAddr>,
}

/// The environment variable carrying a worker's metrics address (fathom's `metrics.address`).
pub const METRICS_ADDRESS_ENV: &str = "FATHOM_METRICS_ADDRESS";

/// A running (counted) worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// Its worker id (`POD_NAME`).
    pub id: String,
    /// Its process id.
    pub pid: Option<u32>,
    /// Where it serves `/metrics`, when [`LocalConfig::metrics_host`] is set.
    pub metrics: Option<SocketAddr>,
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitKind {
    /// It was stopped and exited within the drain timeout.
    Drained,
    /// It was stopped and did not exit in time, so it was killed.
    Killed,
    /// It exited without being asked to.
    Crashed,
}

/// A reaped child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildExit {
    /// Its worker id.
    pub id: String,
    /// How it ended.
    pub kind: ExitKind,
    /// Its exit status as text (`exit status: 3`, `signal: 9 (SIGKILL)`).
    pub status: String,
}

/// A spawned worker process.
struct Worker {
    id: String,
    child: Child,
    metrics: Option<SocketAddr>,
}

struct Draining {
    id: String,
    child: Child,
    /// Still reserved until the child exits: a new worker must not be given it meanwhile.
    metrics: Option<SocketAddr>,
    deadline: Instant,
    killed: bool,
}

impl Draining {
    fn new(worker: Worker, deadline: Instant) -> Draining {
        Draining {
            id: worker.id,
            child: worker.child,
            metrics: worker.metrics,
            deadline,
            killed: false,
        }
    }

    fn exit(self, status: String) -> ChildExit {
        let kind = if self.killed {
            ExitKind::Killed
        } else {
            ExitKind::Drained
        };
        ChildExit {
            id: self.id,
            kind,
            status,
        }
    }
}

#[derive(Default)]
struct Inner {
    next: u64,
    /// Live, counted children by spawn sequence (higher = newer).
    running: BTreeMap<u64, Worker>,
    /// When each running child was spawned, by sequence.
    started: BTreeMap<u64, Instant>,
    draining: Vec<Draining>,
    /// The busy map handed to `prepare_scale_in`, used by the next scale-in.
    busy: BusyMap,
    exits: Vec<ChildExit>,
    /// Crashes in a row of children that died young; drives the respawn backoff.
    crash_streak: u32,
    /// No spawning before this (crash-loop backoff).
    hold_until: Option<Instant>,
}

/// A child that lives this long counts as healthy and resets the crash backoff.
const HEALTHY_UPTIME: Duration = Duration::from_secs(10);
/// The longest pause between respawns of a crash-looping worker.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Worker processes on this machine as a [`ScaleTarget`].
pub struct LocalTarget {
    cfg: LocalConfig,
    inner: Mutex<Inner>,
}

impl LocalTarget {
    /// A target with no workers yet.
    pub fn new(cfg: LocalConfig) -> LocalTarget {
        LocalTarget {
            cfg,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Ids of the counted (not draining) workers, oldest first.
    pub async fn worker_ids(&self) -> Vec<String> {
        self.inner
            .lock()
            .await
            .running
            .values()
            .map(|w| w.id.clone())
            .collect()
    }

    /// The counted (not draining) workers, oldest first, with their process ids and metrics addresses.
    pub async fn workers(&self) -> Vec<WorkerInfo> {
        self.inner
            .lock()
            .await
            .running
            .values()
            .map(|w| WorkerInfo {
                id: w.id.clone(),
                pid: w.child.id(),
                metrics: w.metrics,
            })
            .collect()
    }

    /// Exits reaped since the last call.
    pub async fn take_exits(&self) -> Vec<ChildExit> {
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        std::mem::take(&mut inner.exits)
    }

    /// Waits until every draining child has exited or been killed at its deadline; returns all exits
    /// not yet taken.
    pub async fn wait_drained(&self) -> Vec<ChildExit> {
        let mut inner = self.inner.lock().await;
        for d in std::mem::take(&mut inner.draining) {
            let exit = finish(d).await;
            inner.exits.push(exit);
        }
        reap(&mut inner);
        std::mem::take(&mut inner.exits)
    }

    /// Stops every worker (SIGTERM, drain, kill stragglers); for shutdown.
    pub async fn stop_all(&self) -> Vec<ChildExit> {
        {
            let mut inner = self.inner.lock().await;
            let deadline = Instant::now() + self.cfg.drain_timeout;
            inner.started.clear();
            for (_, worker) in std::mem::take(&mut inner.running) {
                if let Err(e) = terminate(&worker.id, &worker.child) {
                    warn!(worker = %worker.id, error = %e, "stopping worker");
                }
                inner.draining.push(Draining::new(worker, deadline));
            }
        }
        self.wait_drained().await
    }

    fn spawn(&self, id: &str, metrics: Option<SocketAddr>) -> Result<Child> {
        let c = &self.cfg.command;
        let mut command = Command::new(&c.program);
        command
            .args(&c.args)
            .envs(c.env.iter().map(|(k, v)| (k, v)))
            .env("POD_NAME", id);
        if let Some(addr) = metrics {
            command.env(METRICS_ADDRESS_ENV, addr.to_string());
        }
        command
            .stdin(Stdio::null())
            // Own process group: a terminal's Ctrl-C reaches the autoscaler only, which then drains
            // the workers itself instead of all of them dying mid-job at once.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Process {
                what: format!("{id}: spawn {:?}", c.program),
                source,
            })
    }

    fn read_settings(&self) -> Result<OverrideSettings> {
        let path = &self.cfg.override_file;
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::BadOverride {
                place: path.display().to_string(),
                why: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(OverrideSettings::default()),
            Err(source) => Err(Error::OverrideFile {
                path: path.clone(),
                source,
            }),
        }
    }

    fn write_settings(&self, settings: &OverrideSettings) -> Result<()> {
        let path = &self.cfg.override_file;
        let io = |source| Error::OverrideFile {
            path: path.clone(),
            source,
        };
        let mut tmp = path.clone().into_os_string();
        tmp.push(".tmp");
        let bytes =
            serde_json::to_vec_pretty(settings).map_err(|e| io(std::io::Error::other(e)))?;
        // Write-then-rename so a reader never sees half a file.
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Tries before giving up on finding a port no live worker holds.
const PORT_TRIES: usize = 32;

/// A free port on `host` that no live worker was given. The kernel picks it (bind to port 0) and it is
/// released at once for the child to bind; ports handed to workers that have not bound them yet are
/// skipped. Another program taking the port in between makes that worker fail to start, which the
/// crash handling answers with a new worker on a new port.
fn reserve_port(host: IpAddr, taken: &BTreeSet<u16>) -> Result<SocketAddr> {
    for _ in 0..PORT_TRIES {
        let addr = TcpListener::bind((host, 0))
            .and_then(|l| l.local_addr())
            .map_err(|source| Error::Process {
                what: format!("reserving a metrics port on {host}"),
                source,
            })?;
        if !taken.contains(&addr.port()) {
            return Ok(addr);
        }
    }
    Err(Error::Process {
        what: format!("reserving a metrics port on {host}"),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

/// SIGTERM through a checked pid; an already-reaped child has no pid and needs nothing.
fn terminate(id: &str, child: &Child) -> Result<()> {
    let Some(pid) = child.id() else { return Ok(()) };
    let pid = i32::try_from(pid).map_err(|_| Error::Process {
        what: format!("{id}: pid {pid} out of range"),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|e| Error::Process {
        what: format!("{id}: SIGTERM"),
        source: e.into(),
    })
}

fn describe(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Waits for a draining child until its deadline, then kills it.
async fn finish(mut d: Draining) -> ChildExit {
    let status = match tokio::time::timeout_at(d.deadline, d.child.wait()).await {
        Ok(status) => describe(status),
        Err(_) => {
            warn!(worker = %d.id, "drain timeout; killing");
            let _ = d.child.start_kill();
            d.killed = true;
            describe(d.child.wait().await)
        }
    };
    d.exit(status)
}

/// Collects children that have exited, without blocking; kills draining ones past their deadline.
fn reap(inner: &mut Inner) {
    let mut crashed = Vec::new();
    for (&seq, w) in inner.running.iter_mut() {
        if let Ok(Some(status)) = w.child.try_wait() {
            warn!(worker = %w.id, %status, "worker exited unexpectedly");
            crashed.push(seq);
            inner.exits.push(ChildExit {
                id: w.id.clone(),
                kind: ExitKind::Crashed,
                status: status.to_string(),
            });
        }
    }
    let now = Instant::now();
    for seq in crashed {
        inner.running.remove(&seq);
        let young = inner
            .started
            .remove(&seq)
            .is_some_and(|t| now.duration_since(t) < HEALTHY_UPTIME);
        // Like Kubernetes' CrashLoopBackOff: a worker that keeps dying at start is respawned ever
        // more slowly (1 s, 2 s, 4 s ... 60 s) instead of every round.
        inner.crash_streak = if young {
            inner.crash_streak.saturating_add(1)
        } else {
            1
        };
        let backoff = Duration::from_secs(1u64 << inner.crash_streak.saturating_sub(1).min(6))
            .min(MAX_BACKOFF);
        inner.hold_until = Some(now + backoff);
    }
    let mut still = Vec::new();
    for mut d in std::mem::take(&mut inner.draining) {
        match d.child.try_wait() {
            Ok(Some(status)) => {
                info!(worker = %d.id, %status, killed = d.killed, "worker stopped");
                inner.exits.push(d.exit(status.to_string()));
            }
            _ if now >= d.deadline && !d.killed => {
                warn!(worker = %d.id, "drain timeout; killing");
                let _ = d.child.start_kill();
                // Reaped on a later pass once the kill lands.
                d.killed = true;
                still.push(d);
            }
            _ => still.push(d),
        }
    }
    inner.draining = still;
}

impl ScaleTarget for LocalTarget {
    async fn observe(&self) -> Result<crate::target::Observed> {
        let ov = self.read_settings()?.effective();
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        Ok(Observed {
            replicas: inner.running.len() as u32,
            ov,
            conflict: None,
        })
    }

    async fn prepare_scale_in(&self, _to: u32, busy: &BusyMap) -> Result<()> {
        self.inner.lock().await.busy = busy.clone();
        Ok(())
    }

    async fn set_replicas(&self, from: u32, to: u32) -> Result<SetOutcome> {
        let mut inner = self.inner.lock().await;
        reap(&mut inner);
        let found = inner.running.len() as u32;
        if found == to {
            return Ok(SetOutcome::Unchanged);
        }
        if found != from {
            return Ok(SetOutcome::Raced { found });
        }
        if to > found {
            if let Some(until) = inner.hold_until.filter(|&u| u > Instant::now()) {
                let retry_in_ms = until.duration_since(Instant::now()).as_millis() as u64;
                info!(retry_in_ms, "workers crash-looping; respawn held back");
                return Ok(SetOutcome::Backoff { retry_in_ms });
            }
            // Survivors of the last crash that are old enough prove the command healthy again.
            let now = Instant::now();
            if inner
                .started
                .values()
                .any(|&t| now.duration_since(t) >= HEALTHY_UPTIME)
            {
                inner.crash_streak = 0;
            }
        }
        while (inner.running.len() as u32) < to {
            let metrics = match self.cfg.metrics_host {
                Some(host) => {
                    let taken: BTreeSet<u16> = inner
                        .running
                        .values()
                        .filter_map(|w| w.metrics)
                        .chain(inner.draining.iter().filter_map(|d| d.metrics))
                        .map(|a| a.port())
                        .collect();
                    Some(reserve_port(host, &taken)?)
                }
                None => None,
            };
            inner.next += 1;
            let seq = inner.next;
            let id = format!("{}-{seq}", self.cfg.id_prefix);
            let child = self.spawn(&id, metrics)?;
            let url = metrics.map(|a| format!("http://{a}/metrics"));
            info!(worker = %id, pid = child.id(), metrics = url, "worker started");
            inner.running.insert(seq, Worker { id, child, metrics });
            inner.started.insert(seq, Instant::now());
        }
        let excess = (inner.running.len() as u32).saturating_sub(to) as usize;
        if excess > 0 {
            // Idle first, then the least busy; among equals the newest (its caches are coldest).
            let mut order: Vec<(u32, std::cmp::Reverse<u64>)> = inner
                .running
                .iter()
                .map(|(&seq, w)| {
                    (
                        inner.busy.get(&w.id).copied().unwrap_or(0),
                        std::cmp::Reverse(seq),
                    )
                })
                .collect();
            order.sort();
            let deadline = Instant::now() + self.cfg.drain_timeout;
            for (jobs, std::cmp::Reverse(seq)) in order.into_iter().take(excess) {
                inner.started.remove(&seq);
                let Some(worker) = inner.running.remove(&seq) else {
                    continue;
                };
                info!(worker = %worker.id, jobs, "stopping worker");
                if let Err(e) = terminate(&worker.id, &worker.child) {
                    // Left to the drain deadline, which kills it.
                    warn!(worker = %worker.id, error = %e, "stopping worker");
                }
                inner.draining.push(Draining::new(worker, deadline));
            }
        }
        Ok(SetOutcome::Written)
    }

    async fn apply_override(&self, op: OverrideOp) -> Result<()> {
        let mut settings = self.read_settings()?;
        let before = settings.effective();
        settings.apply(op);
        self.write_settings(&settings)?;
        info!(?op, from = %before, to = %settings.effective(), "override changed");
        Ok(())
    }
}
