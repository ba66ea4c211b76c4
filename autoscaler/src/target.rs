//! The two seams the control loop is generic over: what it scales ([`ScaleTarget`]) and where it reads
//! the queue ([`StatsSource`]).

use std::collections::BTreeMap;
use std::future::Future;

use serde::Serialize;

use crate::decision::{Override, QueueSnapshot};
use crate::error::Result;

/// Jobs held right now, by worker id (the queue's lease owner; the pod name on Kubernetes, the
/// `POD_NAME` a local worker was given). Workers absent from the map hold nothing.
pub type BusyMap = BTreeMap<String, u32>;

/// What the target looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Replicas the target is set to run.
    pub replicas: u32,
    /// The manual override in force.
    #[serde(rename = "override")]
    pub ov: Override,
    /// Another autoscaler (an HPA or a KEDA ScaledObject) targets the same workload: write nothing.
    pub conflict: Option<String>,
}

/// A change to the manual override, one per `fathom scale` subcommand. A pin and a pause are stored
/// separately, so `resume` returns to a pin made before `pause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverrideOp {
    /// `fathom scale override N`: exactly N replicas until cleared.
    Pin(u32),
    /// `fathom scale clear`: remove the pin.
    Clear,
    /// `fathom scale pause`: hands off entirely.
    Pause,
    /// `fathom scale resume`: remove the pause.
    Resume,
}

/// The stored override: a pin and a pause flag; a pause wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct OverrideSettings {
    /// Pinned replica count, if any.
    pub pinned: Option<u32>,
    /// Autoscaling paused.
    pub paused: bool,
}

impl OverrideSettings {
    /// The override the decision sees.
    pub fn effective(&self) -> Override {
        match (self.paused, self.pinned) {
            (true, _) => Override::Paused,
            (false, Some(n)) => Override::Pinned(n),
            (false, None) => Override::None,
        }
    }

    /// Applies one operation.
    pub fn apply(&mut self, op: OverrideOp) {
        match op {
            OverrideOp::Pin(n) => self.pinned = Some(n),
            OverrideOp::Clear => self.pinned = None,
            OverrideOp::Pause => self.paused = true,
            OverrideOp::Resume => self.paused = false,
        }
    }
}

/// What a replica write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SetOutcome {
    /// The new count was written.
    Written,
    /// The target already had the desired count.
    Unchanged,
    /// Someone else changed the count since it was observed (`found`); nothing was written so the next
    /// decision starts from the fresh value.
    Raced {
        /// The count found instead of the expected one.
        found: u32,
    },
    /// Dry-run mode: logged, not written.
    DryRun,
    /// Workers keep crashing at start: no new ones for now (local target's crash-loop backoff).
    Backoff {
        /// Milliseconds until spawning is allowed again.
        retry_in_ms: u64,
    },
}

/// Something whose replica count the autoscaler sets: a Kubernetes Deployment or local processes.
///
/// Methods return `Send` futures so the loop can run on a multi-threaded runtime.
pub trait ScaleTarget: Send + Sync {
    /// Reads the replica count, the override and any competing autoscaler.
    fn observe(&self) -> impl Future<Output = Result<Observed>> + Send;

    /// Called right before lowering the count to `to`: makes the target remove the idle workers first,
    /// given the jobs each worker holds.
    fn prepare_scale_in(&self, to: u32, busy: &BusyMap) -> impl Future<Output = Result<()>> + Send;

    /// Sets the count from `from` (what was observed) to `to`, without overwriting a concurrent change.
    fn set_replicas(&self, from: u32, to: u32) -> impl Future<Output = Result<SetOutcome>> + Send;

    /// Changes the manual override (for `fathom scale override|clear|pause|resume`).
    fn apply_override(&self, op: OverrideOp) -> impl Future<Output = Result<()>> + Send;

    /// Whether this process may write (leader election); a single-instance target is always leader.
    fn ensure_leader(&self) -> impl Future<Output = Result<bool>> + Send {
        async { Ok(true) }
    }
}

/// A shared target: the loop owns one handle while others (a reaper, a progress display) read the
/// target through theirs.
impl<T: ScaleTarget> ScaleTarget for std::sync::Arc<T> {
    fn observe(&self) -> impl Future<Output = Result<Observed>> + Send {
        T::observe(self)
    }

    fn prepare_scale_in(&self, to: u32, busy: &BusyMap) -> impl Future<Output = Result<()>> + Send {
        T::prepare_scale_in(self, to, busy)
    }

    fn set_replicas(&self, from: u32, to: u32) -> impl Future<Output = Result<SetOutcome>> + Send {
        T::set_replicas(self, from, to)
    }

    fn apply_override(&self, op: OverrideOp) -> impl Future<Output = Result<()>> + Send {
        T::apply_override(self, op)
    }

    fn ensure_leader(&self) -> impl Future<Output = Result<bool>> + Send {
        T::ensure_leader(self)
    }
}

/// The queue as the autoscaler sees it; the lead implements this on `fathom-queue`.
pub trait StatsSource: Send + Sync {
    /// Counts and oldest age of the queue, in one cheap query.
    fn snapshot(&self) -> impl Future<Output = Result<QueueSnapshot>> + Send;

    /// Jobs held by each worker (running jobs grouped by lease owner).
    fn busy(&self) -> impl Future<Output = Result<BusyMap>> + Send;
}
