//! The pure scaling decision: queue snapshot + policy + history in, desired replicas and a reason out.
//!
//! No IO and no clock: the caller passes `now` and owns the [`DecisionState`], so the same function drives
//! the control loop, the simulation bench and the table tests.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod work;
pub use work::{
    Bytes, ScaleOn, WorkFigures, WorkPolicy, WorkSnapshot, DEFAULT_CACHED_JOB_S, LEARN_AFTER,
};

/// What the queue looks like right now; the lead converts the queue's `stats()` into this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    /// Jobs waiting to be claimed (ready now).
    pub queued: u64,
    /// Jobs currently held by a worker.
    pub running: u64,
    /// Age of the oldest queued job, if any is queued (seconds, as a float, in JSON).
    #[serde(with = "opt_secs")]
    pub oldest_queued_age: Option<Duration>,
    /// The work in those jobs and what recent jobs measured (`scale_on: work`).
    #[serde(default)]
    pub work: WorkSnapshot,
}

/// `Option<Duration>` as float seconds, so `fathom scale status --json` reads naturally.
mod opt_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let secs = Option::<f64>::deserialize(d)?;
        secs.map(|s| Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A manual override, read from the target (annotations on Kubernetes, a file locally). It always wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    /// The autoscaler decides.
    #[default]
    None,
    /// Exactly this many replicas, kept until the override is removed (min/max do not apply).
    Pinned(u32),
    /// Hands off: the autoscaler writes nothing.
    Paused,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Override::None => f.write_str("none"),
            Override::Pinned(n) => write!(f, "pinned at {n}"),
            Override::Paused => f.write_str("paused"),
        }
    }
}

/// The tunables of the decision. [`Policy::default`] gives the values fathom ships with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Jobs one replica works on at once (the worker's concurrency).
    pub jobs_per_replica: u32,
    /// Lowest replica count (0 allows scale-to-zero).
    pub min_replicas: u32,
    /// Highest replica count.
    pub max_replicas: u32,
    /// From zero replicas, scale up only when more than this many jobs are queued...
    pub activation_queued: u64,
    /// ...or when the oldest queued job has waited this long (so a few jobs are never stranded).
    pub activation_age: Duration,
    /// At most this many replicas added within one `scale_up_period`.
    pub max_scale_up_step: u32,
    /// The period `max_scale_up_step` applies to.
    pub scale_up_period: Duration,
    /// Scale down only to the highest recommendation seen within this window (the HPA's rule).
    pub scale_down_stabilization: Duration,
    /// The queue must have been empty (nothing queued or running) this long before going to zero.
    pub scale_to_zero_cooldown: Duration,
    /// What counts as load, and the work policy's settings.
    pub work: WorkPolicy,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            jobs_per_replica: 4,
            min_replicas: 0,
            max_replicas: 20,
            activation_queued: 0,
            activation_age: Duration::from_secs(30),
            max_scale_up_step: 8,
            scale_up_period: Duration::from_secs(10),
            scale_down_stabilization: Duration::from_secs(120),
            scale_to_zero_cooldown: Duration::from_secs(300),
            work: WorkPolicy::default(),
        }
    }
}

impl Policy {
    /// Rejects settings the decision cannot honour, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, why: String| Err(Error::InvalidPolicy { field, why });
        if self.jobs_per_replica == 0 {
            return bad("jobs_per_replica", "must be at least 1".into());
        }
        if self.max_replicas == 0 {
            return bad("max_replicas", "must be at least 1".into());
        }
        if self.min_replicas > self.max_replicas {
            return bad(
                "min_replicas",
                format!(
                    "{} is above max_replicas {}",
                    self.min_replicas, self.max_replicas
                ),
            );
        }
        if self.max_scale_up_step == 0 {
            return bad("max_scale_up_step", "must be at least 1".into());
        }
        if self.work.target_drain.is_zero() {
            return bad("target_drain_time", "must be greater than 0".into());
        }
        if self.work.throughput_floor == 0 {
            return bad(
                "throughput_floor",
                "must be at least 1 byte per second".into(),
            );
        }
        Ok(())
    }
}

/// History the decision needs between calls; the caller owns it (one per scaled target).
#[derive(Debug, Clone, Default)]
pub struct DecisionState {
    /// Recommendations within the scale-down stabilization window, each marked when it asked for
    /// replicas for short work only (`scale_on: work`, [`WorkFigures::short_work`]).
    recommendations: VecDeque<(Instant, u32, bool)>,
    /// Replica counts observed within the scale-up period (the base of the step limit).
    observed: VecDeque<(Instant, u32)>,
    /// Since when nothing has been queued or running.
    idle_since: Option<Instant>,
}

/// What determined the desired count; a low-cardinality label for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The override pins the count.
    Pinned,
    /// The override pauses autoscaling; desired is the current count.
    Paused,
    /// Load needs more replicas than are running.
    Burst,
    /// Load fits the current count.
    Steady,
    /// Load fell and the stabilization window allows the lower count.
    Drain,
    /// Load fell but a higher recommendation within the window holds the count.
    Stabilized,
    /// The queue is empty but not for long enough to go to zero.
    Cooldown,
    /// The queue has been empty for the cooldown: scale to zero.
    Idle,
    /// At zero with too little queued to activate.
    BelowActivation,
}

impl Reason {
    /// Every reason, so metrics can start each series at zero.
    pub const ALL: [Reason; 9] = [
        Reason::Pinned,
        Reason::Paused,
        Reason::Burst,
        Reason::Steady,
        Reason::Drain,
        Reason::Stabilized,
        Reason::Cooldown,
        Reason::Idle,
        Reason::BelowActivation,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Pinned => "pinned",
            Reason::Paused => "paused",
            Reason::Burst => "burst",
            Reason::Steady => "steady",
            Reason::Drain => "drain",
            Reason::Stabilized => "stabilized",
            Reason::Cooldown => "cooldown",
            Reason::Idle => "idle",
            Reason::BelowActivation => "below_activation",
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Replicas the target should run.
    pub desired: u32,
    /// Replicas it ran when the decision was made.
    pub current: u32,
    /// What determined `desired`.
    pub reason: Reason,
    /// The whole story for humans, e.g. "burst: 240 queued / 4 per replica → 60, capped at max 20".
    pub message: String,
    /// Both policies' view of the load (the configured one decided): throughput, demand, raw counts.
    #[serde(default)]
    pub figures: WorkFigures,
}

impl Decision {
    /// True when the target must be written (paused decisions never write).
    pub fn changes(&self) -> bool {
        self.reason != Reason::Paused && self.desired != self.current
    }

    /// "up", "down" or "none": the metric label for scale events.
    pub fn direction(&self) -> &'static str {
        match self.desired.cmp(&self.current) {
            std::cmp::Ordering::Greater => "up",
            std::cmp::Ordering::Less => "down",
            std::cmp::Ordering::Equal => "none",
        }
    }
}

/// Decides the desired replica count. `state` must be the same value across calls for one target.
///
/// Load is `queued + running` jobs over `jobs_per_replica`, so a scale-in never asks for fewer slots than
/// the jobs in flight. Scale-up is immediate up to the step limit; scale-down follows the highest
/// recommendation in the stabilization window, which is what keeps oscillating load from flapping.
pub fn decide(
    policy: &Policy,
    snapshot: &QueueSnapshot,
    current: u32,
    ov: Override,
    state: &mut DecisionState,
    now: Instant,
) -> Decision {
    state.prune(policy, now);
    if snapshot.queued == 0 && snapshot.running == 0 {
        state.idle_since.get_or_insert(now);
    } else {
        state.idle_since = None;
    }
    state.observed.push_back((now, current));

    let figures = WorkFigures::of(policy, snapshot, current);
    let done = |desired: u32, reason: Reason, message: String| Decision {
        desired,
        current,
        reason,
        message,
        figures,
    };
    match ov {
        Override::Paused => {
            // Recording `current` means that on resume the scale-down starts stabilized from here.
            state.recommendations.push_back((now, current, false));
            let msg = format!("paused: autoscaling is off, keeping {current}");
            return done(current, Reason::Paused, msg);
        }
        Override::Pinned(n) => {
            state.recommendations.push_back((now, n, false));
            return done(
                n,
                Reason::Pinned,
                format!("pinned: override holds {n} replicas"),
            );
        }
        Override::None => {}
    }

    let raw = figures.raw(policy.work.scale_on);
    let mut msg = match policy.work.scale_on {
        ScaleOn::Jobs => format!(
            "{} queued + {} running / {} per replica → {raw}",
            snapshot.queued,
            snapshot.running,
            policy.jobs_per_replica.max(1)
        ),
        ScaleOn::Work => work::message(policy, snapshot, &figures),
    };

    if current == 0 && policy.min_replicas == 0 && raw > 0 && !activated(policy, snapshot) {
        state.recommendations.push_back((now, 0, false));
        msg = format!(
            "below activation: {} queued ≤ threshold {}, oldest waited {}s < {}s, staying at 0",
            snapshot.queued,
            policy.activation_queued,
            snapshot.oldest_queued_age.unwrap_or_default().as_secs(),
            policy.activation_age.as_secs()
        );
        return done(0, Reason::BelowActivation, msg);
    }

    let mut target = raw;
    if target > policy.max_replicas {
        target = policy.max_replicas;
        msg.push_str(&format!(", capped at max {target}"));
    } else if target < policy.min_replicas {
        target = policy.min_replicas;
        msg.push_str(&format!(", raised to min {target}"));
    }
    let short = policy.work.scale_on == ScaleOn::Work && figures.short_work;
    state.recommendations.push_back((now, target, short));

    if target > current {
        let base = state
            .observed
            .iter()
            .map(|&(_, r)| r)
            .min()
            .unwrap_or(current);
        let limit = base.saturating_add(policy.max_scale_up_step).max(current);
        if target > limit {
            msg.push_str(&format!(
                ", limited to +{} per {}s → {limit}",
                policy.max_scale_up_step,
                policy.scale_up_period.as_secs()
            ));
            target = limit;
        }
        return done(target, Reason::Burst, format!("burst: {msg}"));
    }
    if target == current {
        return done(target, Reason::Steady, format!("steady: {msg}"));
    }

    // Scale-down: never below the highest recommendation in the window, never above current. Once
    // nothing waits, replicas asked for short work only have done it: those recommendations do not
    // hold the count (the window is for load that comes back, and these replicas would idle).
    let work_done = snapshot.queued == 0;
    let highest = state
        .recommendations
        .iter()
        .filter(|&&(_, _, short)| !(short && work_done))
        .map(|&(_, r, _)| r)
        .max()
        .unwrap_or(target)
        .max(target);
    let stabilized = highest.min(current);
    if stabilized > target {
        msg.push_str(&format!(
            ", held at {stabilized} (highest in last {}s)",
            policy.scale_down_stabilization.as_secs()
        ));
        let reason = if stabilized == current {
            Reason::Stabilized
        } else {
            Reason::Drain
        };
        return done(stabilized, reason, format!("{}: {msg}", reason.as_str()));
    }
    if target == 0 {
        let idle_for = state
            .idle_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if idle_for < policy.scale_to_zero_cooldown {
            let keep = 1.min(current);
            msg.push_str(&format!(
                ", held at {keep}: idle {}s of {}s cooldown",
                idle_for.as_secs(),
                policy.scale_to_zero_cooldown.as_secs()
            ));
            return done(keep, Reason::Cooldown, format!("cooldown: {msg}"));
        }
        msg.push_str(&format!(", idle {}s", idle_for.as_secs()));
        return done(0, Reason::Idle, format!("idle: {msg}"));
    }
    done(target, Reason::Drain, format!("drain: {msg}"))
}

fn activated(policy: &Policy, snapshot: &QueueSnapshot) -> bool {
    snapshot.queued > policy.activation_queued
        || snapshot
            .oldest_queued_age
            .is_some_and(|age| age >= policy.activation_age)
}

impl DecisionState {
    fn prune(&mut self, policy: &Policy, now: Instant) {
        let window = policy.scale_down_stabilization;
        self.recommendations
            .retain(|&(t, _, _)| now.saturating_duration_since(t) < window);
        let period = policy.scale_up_period;
        self.observed
            .retain(|&(t, _)| now.saturating_duration_since(t) < period);
    }
}

#[cfg(test)]
mod tests;
