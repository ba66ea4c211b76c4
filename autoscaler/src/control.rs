//! The control loop: each round observes the queue and the target, decides, and acts; rounds run on a
//! poll interval and at once when nudged (the lead feeds the nudge from the queue's LISTEN/NOTIFY).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

use crate::decision::{decide, Decision, DecisionState, Override, Policy, QueueSnapshot};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::target::{Observed, ScaleTarget, SetOutcome, StatsSource};

/// Loop settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopConfig {
    /// The decision policy.
    pub policy: Policy,
    /// Rounds run at least this often (default 5 s).
    pub poll_interval: Duration,
    /// Nudged rounds run at most this often (default 1 s), so a stream of enqueue notifications
    /// cannot turn into a stream of API calls.
    pub min_interval: Duration,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            policy: Policy::default(),
            poll_interval: Duration::from_secs(5),
            min_interval: Duration::from_secs(1),
        }
    }
}

/// What the last round saw and did; `fathom scale status` prints it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Status {
    /// Whether this process held leadership (non-leaders only watch).
    pub leader: bool,
    /// The queue as read.
    pub queue: Option<QueueSnapshot>,
    /// The target as read.
    pub observed: Option<Observed>,
    /// The decision (also made when nothing may be written, to show what would happen).
    pub decision: Option<Decision>,
    /// The write, if one was attempted.
    pub outcome: Option<SetOutcome>,
    /// The error that ended the round, if any.
    pub error: Option<String>,
}

/// The autoscaler for one target: owns the decision history, reports through metrics and [`Status`].
pub struct Autoscaler<T, S> {
    target: T,
    stats: S,
    cfg: LoopConfig,
    metrics: Option<Metrics>,
    state: DecisionState,
    last_override: Option<Override>,
    last_conflict: Option<String>,
    status: watch::Sender<Status>,
}

impl<T: ScaleTarget, S: StatsSource> Autoscaler<T, S> {
    /// An autoscaler with an empty history; the policy is validated here.
    pub fn new(target: T, stats: S, cfg: LoopConfig, metrics: Option<Metrics>) -> Result<Self> {
        cfg.policy.validate()?;
        let (status, _) = watch::channel(Status::default());
        Ok(Autoscaler {
            target,
            stats,
            cfg,
            metrics,
            state: DecisionState::default(),
            last_override: None,
            last_conflict: None,
            status,
        })
    }

    /// The target (e.g. to stop local workers after the loop ends).
    pub fn target(&self) -> &T {
        &self.target
    }

    /// A receiver of the last round's [`Status`] (for a status endpoint).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// One round at `now`. Errors are counted by kind and recorded in the status before returning.
    pub async fn tick(&mut self, now: Instant) -> Result<Status> {
        let _timer = self.metrics.as_ref().map(Metrics::tick_timer);
        let mut status = Status::default();
        let result = self.round(now, &mut status).await;
        if let Err(e) = &result {
            status.error = Some(e.to_string());
            if let Some(m) = &self.metrics {
                m.error(e.kind());
            }
        }
        self.status.send_replace(status.clone());
        result.map(|()| status)
    }

    async fn round(&mut self, now: Instant, status: &mut Status) -> Result<()> {
        status.leader = self.target.ensure_leader().await?;
        if let Some(m) = &self.metrics {
            m.set_leader(status.leader);
        }
        if !status.leader {
            debug!("not the leader; watching only");
            return Ok(());
        }
        let snapshot = self.stats.snapshot().await?;
        status.queue = Some(snapshot);
        let observed = self.target.observe().await?;
        status.observed = Some(observed.clone());
        if let Some(m) = &self.metrics {
            m.observe_queue(&snapshot);
        }
        if self.last_override != Some(observed.ov) {
            let from = self
                .last_override
                .map_or("unknown".to_string(), |o| o.to_string());
            info!(%from, to = %observed.ov, "override changed");
            self.last_override = Some(observed.ov);
            if let Some(m) = &self.metrics {
                m.set_override(observed.ov);
            }
        }

        let policy = &self.cfg.policy;
        let decision = decide(
            policy,
            &snapshot,
            observed.replicas,
            observed.ov,
            &mut self.state,
            now,
        );
        status.decision = Some(decision.clone());
        if let Some(m) = &self.metrics {
            m.observe_decision(&decision);
            m.set_conflict(observed.conflict.is_some());
        }
        if let Some(conflict) = &observed.conflict {
            if self.last_conflict.as_ref() != Some(conflict) {
                warn!(%conflict, "another autoscaler owns this workload; writing nothing");
            }
            self.last_conflict = observed.conflict.clone();
            return Ok(());
        }
        self.last_conflict = None;
        if !decision.changes() {
            debug!(message = %decision.message, "no change");
            return Ok(());
        }
        if decision.desired < decision.current {
            let busy = self.stats.busy().await?;
            self.target
                .prepare_scale_in(decision.desired, &busy)
                .await?;
        }
        let outcome = self
            .target
            .set_replicas(decision.current, decision.desired)
            .await?;
        status.outcome = Some(outcome);
        match outcome {
            SetOutcome::Written => {
                info!(from = decision.current, to = decision.desired, reason = decision.reason.as_str(),
                      message = %decision.message, "scaled");
                if let Some(m) = &self.metrics {
                    m.scaled(&decision);
                }
            }
            SetOutcome::Raced { found } => {
                info!(
                    expected = decision.current,
                    found, "replicas changed meanwhile; deciding again next round"
                );
            }
            SetOutcome::Unchanged | SetOutcome::DryRun | SetOutcome::Backoff { .. } => {}
        }
        Ok(())
    }

    /// Runs rounds every poll interval and whenever `nudge` is notified, until `shutdown` completes;
    /// a failed round is logged and counted, and the loop goes on. Returns the autoscaler so the caller
    /// can stop what the target started.
    pub async fn run(mut self, nudge: Arc<Notify>, shutdown: impl Future<Output = ()>) -> Self {
        tokio::pin!(shutdown);
        loop {
            let started = tokio::time::Instant::now();
            if let Err(e) = self.tick(Instant::now()).await {
                warn!(error = %e, kind = e.kind(), "autoscaler round failed");
            }
            tokio::select! {
                _ = &mut shutdown => return self,
                _ = tokio::time::sleep(self.cfg.poll_interval) => continue,
                _ = nudge.notified() => debug!("nudged"),
            }
            tokio::select! {
                _ = &mut shutdown => return self,
                _ = tokio::time::sleep_until(started + self.cfg.min_interval) => {}
            }
        }
    }
}

/// One read-only look for `fathom scale status`: queue, target, and what a fresh autoscaler would
/// decide (without the running loop's history, so stabilization is not reflected).
pub async fn status_once<T: ScaleTarget, S: StatsSource>(
    target: &T,
    stats: &S,
    policy: &Policy,
) -> Result<Status> {
    let queue = stats.snapshot().await?;
    let observed = target.observe().await?;
    let mut state = DecisionState::default();
    let decision = decide(
        policy,
        &queue,
        observed.replicas,
        observed.ov,
        &mut state,
        Instant::now(),
    );
    Ok(Status {
        leader: false,
        queue: Some(queue),
        observed: Some(observed),
        decision: Some(decision),
        outcome: None,
        error: None,
    })
}
