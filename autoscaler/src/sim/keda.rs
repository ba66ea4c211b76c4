//! The KEDA baseline at its documented defaults: KEDA activates and deactivates on its poll, an HPA sizes
//! 1..max from KEDA's metrics server at every sync (fresh, or cached with `useCachedMetrics`).
//!
//! Sources, each constant below cites the passage it comes from:
//! - KEDA ScaledObject spec: <https://keda.sh/docs/2.17/reference/scaledobject-spec/>
//! - KEDA scaling concepts: <https://keda.sh/docs/2.17/concepts/scaling-deployments/>
//! - Kubernetes HPA: <https://kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/>
//!   (formerly under `/docs/tasks/run-application/horizontal-pod-autoscale/`)
//!
//! The metric is an `AverageValue` external metric (the PostgreSQL scaler's default metric type): queued +
//! running jobs, with `targetQueryValue` = jobs per replica.

use std::collections::VecDeque;

/// KEDA's `pollingInterval` default. ScaledObject spec, "pollingInterval": "By default, KEDA will check
/// each trigger source on every ScaledObject every 30 seconds"; "When scaling from 0 to 1, the polling
/// interval is controlled by KEDA"; from 1 to N "the HPA will also poll regularly for metrics".
pub const KEDA_POLLING_INTERVAL_S: u64 = 30;

/// KEDA's `cooldownPeriod` default. ScaledObject spec, "cooldownPeriod": "The period to wait after the
/// last trigger reported active before scaling the resource back to 0 ... By default, it's 300"; it "only
/// applies when scaling to 0".
pub const KEDA_COOLDOWN_PERIOD_S: u64 = 300;

/// KEDA's activation value default (`activationTargetQueryValue` for the PostgreSQL scaler). Scaling
/// concepts, "Activating and Scaling thresholds": "the activation value is always optional and the default
/// value is 0", and "Activation only occurs when this value is greater than the set value".
pub const KEDA_ACTIVATION_VALUE: u64 = 0;

/// The kube-controller-manager's `--horizontal-pod-autoscaler-sync-period` default. HPA page, "How does a
/// HorizontalPodAutoscaler work?": "the default interval is 15 seconds". KEDA's "Caching Metrics" section:
/// at every sync the HPA's request "is routed to KEDA Metrics Server, that by default queries the scaler".
pub const HPA_SYNC_PERIOD_S: u64 = 15;

/// Where the HPA's sync falls relative to KEDA's poll, in seconds after each poll tick: a modelling choice,
/// not a documented value. The two loops run on independent clocks; at 7 s (about half the sync period)
/// each wait in the model is its expected value: 7 s from a burst to the next sync (expected 7.5 s), and
/// 7 s from an activation or a cache refresh at a poll to the sync that acts on it.
pub const HPA_SYNC_PHASE_S: u64 = 7;

/// The HPA's default tolerance. HPA page, "Algorithm details": "The control plane skips any scaling action
/// if the ratio is sufficiently close to 1.0 (within a configurable tolerance, 0.1 by default)".
pub const HPA_TOLERANCE: f64 = 0.1;

/// The HPA's default scale-up policies. HPA page, "Default behavior": `scaleUp` has `Percent 100` and
/// `Pods 4`, both with `periodSeconds: 15`, `selectPolicy: Max` and no stabilization: "4 pods or a 100% of
/// the currently running replicas may at most be added every 15 seconds".
pub const HPA_SCALE_UP_PERCENT: u32 = 100;
/// See [`HPA_SCALE_UP_PERCENT`].
pub const HPA_SCALE_UP_PODS: u32 = 4;
/// See [`HPA_SCALE_UP_PERCENT`].
pub const HPA_SCALE_UP_PERIOD_S: u64 = 15;

/// The HPA's default scale-down stabilization window. HPA page, "Default behavior": "For scaling down the
/// stabilization window is 300 seconds"; "Stabilization window": the algorithm "uses the highest value from
/// the specified interval". The default scale-down policy (100 % per 15 s) sets no rate limit.
pub const HPA_SCALE_DOWN_STABILIZATION_S: u64 = 300;

/// KEDA and HPA settings; [`KedaConfig::defaults`] gives their documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct KedaConfig {
    /// KEDA `pollingInterval`: seconds between the operator's scaler queries (activation, the cache).
    pub poll_s: u64,
    /// KEDA `cooldownPeriod`: seconds after the last active poll before 1 → 0.
    pub cooldown_s: u64,
    /// KEDA activation value: the scaler is active when the metric is above it.
    pub activation: u64,
    /// The trigger's `useCachedMetrics`: the HPA reads the value of the last poll instead of a fresh one.
    pub use_cached_metrics: bool,
    /// HPA sync period in seconds.
    pub sync_s: u64,
    /// Seconds after each poll tick at which a sync falls (taken modulo `sync_s`).
    pub sync_phase_s: u64,
    /// The trigger's target (`AverageValue`): jobs per replica.
    pub target: u32,
    /// HPA `maxReplicas` (KEDA's `maxReplicaCount`).
    pub max_replicas: u32,
    /// HPA tolerance: no change while the usage ratio is within 1 ± this.
    pub tolerance: f64,
    /// Scale-up policy `Percent`: at most this % of the replicas at the period's start added per period.
    pub scale_up_percent: u32,
    /// Scale-up policy `Pods`: at most this many added per period (the larger policy wins).
    pub scale_up_pods: u32,
    /// `periodSeconds` of both scale-up policies.
    pub scale_up_period_s: u64,
    /// HPA scale-down stabilization window in seconds.
    pub stabilization_s: u64,
}

impl KedaConfig {
    /// KEDA's and the HPA's defaults (the constants above) for a fleet of `target` jobs per replica.
    pub fn defaults(target: u32, max_replicas: u32) -> KedaConfig {
        KedaConfig {
            poll_s: KEDA_POLLING_INTERVAL_S,
            cooldown_s: KEDA_COOLDOWN_PERIOD_S,
            activation: KEDA_ACTIVATION_VALUE,
            use_cached_metrics: false,
            sync_s: HPA_SYNC_PERIOD_S,
            sync_phase_s: HPA_SYNC_PHASE_S,
            target: target.max(1),
            max_replicas,
            tolerance: HPA_TOLERANCE,
            scale_up_percent: HPA_SCALE_UP_PERCENT,
            scale_up_pods: HPA_SCALE_UP_PODS,
            scale_up_period_s: HPA_SCALE_UP_PERIOD_S,
            stabilization_s: HPA_SCALE_DOWN_STABILIZATION_S,
        }
    }

    /// The defaults with `useCachedMetrics: true` on the trigger.
    pub fn cached(target: u32, max_replicas: u32) -> KedaConfig {
        KedaConfig {
            use_cached_metrics: true,
            ..KedaConfig::defaults(target, max_replicas)
        }
    }
}

pub(super) struct Keda {
    cfg: KedaConfig,
    /// The value of the last poll: what the HPA reads with `useCachedMetrics`.
    cached: u64,
    /// KEDA's `lastActiveTime`.
    last_active: Option<u64>,
    /// The HPA's unstabilized recommendations (time, replicas), for the scale-down window; the HPA seeds
    /// it with the current count at its first sync, so a new HPA does not drop at once.
    recommendations: Option<VecDeque<(u64, u32)>>,
    /// The HPA's own scale changes (time, replicas added or removed), for the policies' period.
    changes: VecDeque<(u64, i64)>,
}

impl Keda {
    pub(super) fn new(cfg: KedaConfig) -> Keda {
        Keda {
            cfg,
            cached: 0,
            last_active: None,
            recommendations: None,
            changes: VecDeque::new(),
        }
    }

    /// The replica count at second `t`, given the queue's `depth` (queued + running) and `current`.
    ///
    /// Polls fall on multiples of `poll_s`, syncs `sync_phase_s` after multiples of `sync_s`; when both
    /// fall on the same second the poll comes first (it may fill the cache the sync then reads).
    pub(super) fn desired(&mut self, t: u64, depth: u64, current: u32) -> u32 {
        if t % self.cfg.poll_s.max(1) == 0 {
            if let Some(n) = self.poll(t, depth, current) {
                return n;
            }
        }
        // At zero replicas the HPA does nothing (KEDA owns 0 ↔ 1).
        let sync = self.cfg.sync_s.max(1);
        if current == 0 || t % sync != self.cfg.sync_phase_s % sync {
            return current;
        }
        let metric = if self.cfg.use_cached_metrics {
            self.cached
        } else {
            depth
        };
        self.sync(t, metric, current)
    }

    /// KEDA's operator loop: query the scaler, refresh the cache, activate or deactivate.
    fn poll(&mut self, t: u64, depth: u64, current: u32) -> Option<u32> {
        let c = &self.cfg;
        self.cached = depth;
        let active = depth > c.activation;
        if active {
            self.last_active = Some(t);
        }
        if current == 0 && active {
            return Some(1);
        }
        // KEDA scales to zero once `lastActiveTime + cooldownPeriod` is strictly in the past.
        let cooled = self.last_active.is_none_or(|a| a + c.cooldown_s < t);
        if current > 0 && !active && cooled {
            return Some(0);
        }
        None
    }

    /// One HPA sync on an `AverageValue` external metric.
    fn sync(&mut self, t: u64, metric: u64, current: u32) -> u32 {
        let c = &self.cfg;
        let target = u64::from(c.target);
        let ratio = metric as f64 / (target * u64::from(current)) as f64;
        let rec = if (ratio - 1.0).abs() <= c.tolerance {
            current
        } else {
            u32::try_from(metric.div_ceil(target)).unwrap_or(u32::MAX)
        };
        // Stabilization: the highest recommendation of the window caps a scale-down; scale-up has none.
        let window = self
            .recommendations
            .get_or_insert_with(|| VecDeque::from([(t, current)]));
        window.push_back((t, rec));
        window.retain(|&(at, _)| at + c.stabilization_s > t);
        let highest = window.iter().map(|&(_, r)| r).max().unwrap_or(rec);
        let stabilized = current.max(rec).min(highest);
        // Rate: the larger of the two policies, counted from the replicas at the period's start (the
        // HPA's own changes within the period undone; KEDA's 0 → 1 is not one of them).
        self.changes.retain(|&(at, _)| at + c.scale_up_period_s > t);
        let changed: i64 = self.changes.iter().map(|&(_, n)| n).sum();
        let start = u32::try_from((i64::from(current) - changed).max(0)).unwrap_or(u32::MAX);
        let by_percent = start.saturating_add(
            (u64::from(start) * u64::from(c.scale_up_percent))
                .div_ceil(100)
                .try_into()
                .unwrap_or(u32::MAX),
        );
        let limit = by_percent.max(start.saturating_add(c.scale_up_pods));
        let desired = stabilized.min(limit).clamp(1, c.max_replicas.max(1));
        if desired != current {
            self.changes
                .push_back((t, i64::from(desired) - i64::from(current)));
        }
        desired
    }
}

#[cfg(test)]
mod tests;
