//! `scale_on: work`: load measured in the time the waiting work takes, not in jobs.
//!
//! A job's work is the compressed bytes of its layers not in the layer cache (the submitter's estimate,
//! or the recent median when it had none). Bytes become slot-seconds through the throughput learned from
//! finished jobs; jobs with nothing to fetch cost their measured per-job time; jobs nothing is known about
//! cost what they would under `scale_on: jobs` (a slot for the whole drain time). The replicas asked for
//! are those slot-seconds over (jobs per replica × target drain time).

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
}

impl Default for WorkPolicy {
    fn default() -> Self {
        WorkPolicy {
            scale_on: ScaleOn::Jobs,
            target_drain: Duration::from_secs(30),
            throughput_floor: 20_000_000,
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
}

impl WorkFigures {
    /// Computes both policies' raw replica counts for `snapshot`.
    pub fn of(policy: &Policy, snapshot: &QueueSnapshot) -> WorkFigures {
        let jpr = u64::from(policy.jobs_per_replica.max(1));
        let w = &snapshot.work;
        let learned = w.recent_cold_jobs >= LEARN_AFTER && w.recent_cold_ms > 0;
        let replica_rate = if learned {
            w.recent_cold_bytes as f64 * 1000.0 / w.recent_cold_ms as f64 * jpr as f64
        } else {
            policy.work.throughput_floor as f64
        };
        // A zero floor is rejected by validation; keep the division safe anyway.
        let slot_rate = (replica_rate / jpr as f64).max(1.0);
        let cached_job_s = if w.recent_cached_jobs >= LEARN_AFTER {
            w.recent_cached_ms as f64 / 1000.0 / w.recent_cached_jobs as f64
        } else {
            DEFAULT_CACHED_JOB_S
        };
        let drain_s = policy.work.target_drain.as_secs_f64().max(0.001);
        let bytes = w.queued_bytes.saturating_add(w.running_bytes) as f64;
        let cached = w.queued_cached.saturating_add(w.running_cached) as f64;
        let unknown = w.queued_unknown.saturating_add(w.running_unknown) as f64;
        let demand_slot_s = bytes / slot_rate + cached * cached_job_s + unknown * drain_s;
        let jobs = snapshot.queued.saturating_add(snapshot.running);
        let by_jobs = to_u32(jobs.div_ceil(jpr));
        let mut by_work = to_u32((demand_slot_s / (jpr as f64 * drain_s)).ceil() as u64);
        // Never fewer slots than jobs in flight (as with jobs), and someone must take a waiting job.
        by_work = by_work.max(to_u32(snapshot.running.div_ceil(jpr)));
        if jobs > 0 {
            by_work = by_work.max(1);
        }
        WorkFigures {
            throughput_bytes_per_s: replica_rate,
            throughput_learned: learned,
            cached_job_s,
            demand_slot_s,
            replicas_by_jobs: by_jobs,
            replicas_by_work: by_work,
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
    let mut parts = vec![format!(
        "{} queued + {} running",
        Bytes(w.queued_bytes as f64),
        Bytes(w.running_bytes as f64)
    )];
    let cached = w.queued_cached + w.running_cached;
    if cached > 0 {
        parts.push(format!("{cached} cached jobs × {:.1}s", fig.cached_job_s));
    }
    let unknown = w.queued_unknown + w.running_unknown;
    if unknown > 0 {
        parts.push(format!("{unknown} jobs of unknown size"));
    }
    format!(
        "work: {} at {}/s per replica ({}) → {:.0} slot-seconds / ({} per replica × {}s drain) → {} \
         (by jobs: {})",
        parts.join(" + "),
        Bytes(fig.throughput_bytes_per_s),
        if fig.throughput_learned {
            "learned"
        } else {
            "floor"
        },
        fig.demand_slot_s,
        policy.jobs_per_replica,
        policy.work.target_drain.as_secs(),
        fig.replicas_by_work,
        fig.replicas_by_jobs,
    )
}

#[cfg(test)]
mod tests;
