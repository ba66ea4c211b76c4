//! `scale_on: work`: load measured in the time the waiting work takes, not in jobs.
//!
//! A job's work is the compressed bytes of its layers not in the layer cache (the submitter's estimate,
//! or the recent median when it had none). A job costs a slot the per-job time that jobs with nothing to
//! fetch measure (resolve, cache lookups, the write), plus its bytes at the slot throughput learned from
//! finished cold jobs (net of that per-job time); jobs nothing is known about cost what they would under
//! `scale_on: jobs` (a slot for the whole drain time). The replicas asked for are those slot-seconds over
//! (jobs per replica × target drain time).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Policy, QueueSnapshot};

/// What the decision counts as load (`services.autoscaler.scale_on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleOn {
    /// Queued + running jobs over the jobs one replica runs at once.
    #[default]
    Jobs,
    /// The uncached bytes waiting, over what one replica analyzes within the target drain time.
    Work,
}

impl ScaleOn {
    /// Both, for metrics that start every series at zero.
    pub const ALL: [ScaleOn; 2] = [ScaleOn::Jobs, ScaleOn::Work];

    /// The configuration value and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleOn::Jobs => "jobs",
            ScaleOn::Work => "work",
        }
    }
}

impl std::str::FromStr for ScaleOn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jobs" => Ok(ScaleOn::Jobs),
            "work" => Ok(ScaleOn::Work),
            other => Err(format!("{other:?} is not jobs or work")),
        }
    }
}

/// The work policy's tunables (part of [`Policy`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkPolicy {
    /// What counts as load.
    pub scale_on: ScaleOn,
    /// Enough replicas to finish the waiting work within this long.
    pub target_drain: Duration,
    /// Bytes per second one busy replica analyzes, assumed until [`LEARN_AFTER`] finished jobs have
    /// reported what they fetched.
    pub throughput_floor: u64,
    /// From asking for a replica to it claiming jobs (scheduling, image pull, start-up): a replica
    /// asked for now works only the rest of the drain time, so more of them are needed to finish
    /// within it.
    #[serde(default = "default_startup")]
    pub replica_startup: Duration,
}

fn default_startup() -> Duration {
    WorkPolicy::default().replica_startup
}

impl Default for WorkPolicy {
    fn default() -> Self {
        WorkPolicy {
            scale_on: ScaleOn::Jobs,
            target_drain: Duration::from_secs(20),
            throughput_floor: 50_000_000,
            replica_startup: Duration::from_secs(10),
        }
    }
}

/// Finished jobs of a kind (cold, cached) needed before their measured figure replaces the default.
pub const LEARN_AFTER: u64 = 5;

/// Seconds a job with nothing to fetch is assumed to take until [`LEARN_AFTER`] such jobs were measured.
pub const DEFAULT_CACHED_JOB_S: f64 = 2.0;

/// The work in the queue and what recent jobs measured; the queue's stats in the decision's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkSnapshot {
    /// Estimated uncached bytes of the ready jobs.
    pub queued_bytes: u64,
    /// The same for running jobs (counted whole).
    pub running_bytes: u64,
    /// Ready jobs with nothing to fetch.
    pub queued_cached: u64,
    /// Running jobs with nothing to fetch.
    pub running_cached: u64,
    /// Ready jobs nothing is known about (no estimate, no history to take a median from).
    pub queued_unknown: u64,
    /// Running jobs nothing is known about.
    pub running_unknown: u64,
    /// Recently finished jobs that fetched something...
    pub recent_cold_jobs: u64,
    /// ...the bytes they fetched...
    pub recent_cold_bytes: u64,
    /// ...and the milliseconds they took, summed over jobs (slot-milliseconds).
    pub recent_cold_ms: u64,
    /// Recently finished jobs that fetched nothing...
    pub recent_cached_jobs: u64,
    /// ...and their milliseconds, summed.
    pub recent_cached_ms: u64,
    /// Over every job of the window: Σ kB fetched, Σ kB², Σ kB × ms (a least-squares fit of time against
    /// bytes gives the per-job time and the slot rate together, whatever the mix of sizes).
    pub recent_sum_kb: u64,
    /// See `recent_sum_kb`.
    pub recent_sum_kb2: u64,
    /// See `recent_sum_kb`.
    pub recent_sum_kb_ms: u64,
}

impl WorkSnapshot {
    /// The least-squares line `ms = c + kB × m` through the window's jobs: `(c seconds, bytes/s per slot)`,
    /// when the window has enough jobs of different sizes and the line is physical (c ≥ 0, m > 0).
    fn fit(&self) -> Option<(f64, f64)> {
        let n = (self.recent_cold_jobs + self.recent_cached_jobs) as f64;
        if n < LEARN_AFTER as f64 {
            return None;
        }
        let (sx, sxx, sxy) = (
            self.recent_sum_kb as f64,
            self.recent_sum_kb2 as f64,
            self.recent_sum_kb_ms as f64,
        );
        let sy = (self.recent_cold_ms + self.recent_cached_ms) as f64;
        let var = n * sxx - sx * sx;
        // Sizes all alike (a relative spread under 1 %): no slope to learn from.
        if var <= 1e-4 * sxx * n {
            return None;
        }
        let slope = (n * sxy - sx * sy) / var;
        let intercept = (sy - slope * sx) / n;
        (slope > 0.0 && intercept >= 0.0).then(|| (intercept / 1000.0, 1e6 / slope))
    }
}

/// The figures behind a work decision, for `fathom scale status`, logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkFigures {
    /// Bytes per second one busy replica analyzes (learned, or the floor).
    pub throughput_bytes_per_s: f64,
    /// Whether `throughput_bytes_per_s` was learned from finished jobs (false: the configured floor).
    pub throughput_learned: bool,
    /// Seconds one job with nothing to fetch takes on one slot.
    pub cached_job_s: f64,
    /// Slot-seconds of work waiting or running.
    pub demand_slot_s: f64,
    /// Replicas `scale_on: jobs` would ask for (before min/max and the rate limits).
    pub replicas_by_jobs: u32,
    /// Replicas `scale_on: work` would ask for (before min/max and the rate limits).
    pub replicas_by_work: u32,
    /// Whether the work count is below the jobs count: replicas for short jobs (many to a slot within
    /// the drain time), which are done once nothing waits, so scale-in need not hold them through the
    /// stabilization window (see [`super::decide`]).
    #[serde(default)]
    pub short_work: bool,
}

impl WorkFigures {
    /// Computes both policies' raw replica counts for `snapshot`, with `current` replicas running.
    pub fn of(policy: &Policy, snapshot: &QueueSnapshot, current: u32) -> WorkFigures {
        let jpr = u64::from(policy.jobs_per_replica.max(1));
        let w = &snapshot.work;
        // Every job pays a fixed time (resolve, cache lookups, the write) plus its bytes at the slot rate:
        // both from a line fitted through the recent jobs; without sizes to fit, the fixed time is what
        // jobs that fetched nothing measured and the rate is learned from cold jobs net of it.
        let (cached_job_s, slot_rate, learned) = match w.fit() {
            Some((c, rate)) => (c, rate, true),
            None => {
                let c = if w.recent_cached_jobs >= LEARN_AFTER {
                    w.recent_cached_ms as f64 / 1000.0 / w.recent_cached_jobs as f64
                } else {
                    DEFAULT_CACHED_JOB_S
                };
                let fetch_s = w.recent_cold_ms as f64 / 1000.0 - c * w.recent_cold_jobs as f64;
                if w.recent_cold_jobs >= LEARN_AFTER && fetch_s > 0.0 {
                    (c, w.recent_cold_bytes as f64 / fetch_s, true)
                } else {
                    (c, policy.work.throughput_floor as f64 / jpr as f64, false)
                }
            }
        };
        let slot_rate = slot_rate.max(1.0);
        let drain_s = policy.work.target_drain.as_secs_f64().max(0.001);
        let jobs = snapshot.queued.saturating_add(snapshot.running);
        let demand = |count: u64, bytes: u64, unknown: u64| {
            count.saturating_sub(unknown) as f64 * cached_job_s
                + bytes as f64 / slot_rate
                + unknown as f64 * drain_s
        };
        // A claimed job stays on its slot: within the drain time it takes that slot at most, however
        // much it has left (more replicas cannot take it over). Waiting jobs go wherever a slot is.
        let running = demand(snapshot.running, w.running_bytes, w.running_unknown)
            .min(snapshot.running as f64 * drain_s);
        let demand_slot_s = demand(snapshot.queued, w.queued_bytes, w.queued_unknown) + running;
        let by_jobs = to_u32(jobs.div_ceil(jpr));
        let slots_s = jpr as f64 * drain_s;
        // The small allowance keeps float noise (30.000000001 s of work per 30 s) from adding a replica.
        let replicas = demand_slot_s / slots_s - 1e-6;
        let mut by_work = to_u32(replicas.max(0.0).ceil() as u64);
        // Replicas asked for now start working `replica_startup` later: the running ones cover the whole
        // drain time, the added ones only the rest of it. That asks for more of them, but never for more
        // slots than there are jobs (one job runs on one slot; jobs longer than the drain time cannot
        // finish within it however many replicas start).
        let left_s = drain_s - policy.work.replica_startup.as_secs_f64();
        let beyond = demand_slot_s - f64::from(current) * slots_s;
        if by_work > current && left_s > 0.0 && beyond > 0.0 {
            let added = (beyond / (jpr as f64 * left_s) - 1e-6).max(0.0).ceil() as u64;
            let started = to_u32(u64::from(current).saturating_add(added)).min(by_jobs);
            by_work = by_work.max(started);
        }
        // Never fewer slots than jobs in flight (as with jobs), and someone must take a waiting job.
        by_work = by_work.max(to_u32(snapshot.running.div_ceil(jpr)));
        if jobs > 0 {
            by_work = by_work.max(1);
        }
        WorkFigures {
            throughput_bytes_per_s: slot_rate * jpr as f64,
            throughput_learned: learned,
            cached_job_s,
            demand_slot_s,
            replicas_by_jobs: by_jobs,
            replicas_by_work: by_work,
            short_work: by_work < by_jobs,
        }
    }

    /// The raw count the configured policy asks for.
    pub fn raw(&self, scale_on: ScaleOn) -> u32 {
        match scale_on {
            ScaleOn::Jobs => self.replicas_by_jobs,
            ScaleOn::Work => self.replicas_by_work,
        }
    }
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Bytes for people: `1.5 GB`, `300 MB`, `12 kB`.
pub struct Bytes(pub f64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match b {
            b if b >= 1e9 => write!(f, "{:.1} GB", b / 1e9),
            b if b >= 1e6 => write!(f, "{:.0} MB", b / 1e6),
            b if b >= 1e3 => write!(f, "{:.0} kB", b / 1e3),
            b => write!(f, "{b:.0} B"),
        }
    }
}

/// The load part of a work decision's message: what is waiting, at what rate, and the raw count.
pub(crate) fn message(policy: &Policy, s: &QueueSnapshot, fig: &WorkFigures) -> String {
    let w = &s.work;
    let jobs = s.queued.saturating_add(s.running);
    let unknown = w.queued_unknown.saturating_add(w.running_unknown);
    let drain = policy.work.target_drain.as_secs();
    let mut text = format!(
        "work: {} jobs × {:.1}s + {} queued + {} running at {}/s per replica ({})",
        jobs - unknown.min(jobs),
        fig.cached_job_s,
        Bytes(w.queued_bytes as f64),
        Bytes(w.running_bytes as f64),
        Bytes(fig.throughput_bytes_per_s),
        if fig.throughput_learned {
            "learned"
        } else {
            "floor"
        },
    );
    if unknown > 0 {
        text.push_str(&format!(" + {unknown} jobs of unknown size × {drain}s"));
    }
    let startup = policy.work.replica_startup.as_secs();
    text.push_str(&format!(
        " → {:.0} slot-seconds / ({} per replica × {drain}s drain, {startup}s start-up) → {} (by jobs: {})",
        fig.demand_slot_s, policy.jobs_per_replica, fig.replicas_by_work, fig.replicas_by_jobs,
    ));
    text
}

#[cfg(test)]
mod tests;
