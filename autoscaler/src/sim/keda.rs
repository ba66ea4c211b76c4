//! The KEDA-like baseline: KEDA polls the queue and handles 0↔1, an HPA sizes 1..max from the last poll.

use std::collections::VecDeque;

/// KEDA and HPA settings; [`KedaConfig::defaults`] gives their documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct KedaConfig {
    /// KEDA `pollingInterval`: seconds between queue queries.
    pub poll_s: u64,
    /// HPA sync period in seconds.
    pub sync_s: u64,
    /// HPA `targetAverageValue`: jobs per replica.
    pub target: u32,
    /// HPA `maxReplicas`.
    pub max_replicas: u32,
    /// HPA scale-down stabilization window in seconds.
    pub stabilization_s: u64,
    /// KEDA `cooldownPeriod`: seconds without activity before 1 → 0.
    pub cooldown_s: u64,
    /// HPA tolerance: no change while the usage ratio is within 1 ± this.
    pub tolerance: f64,
}

impl KedaConfig {
    /// KEDA: poll 30 s, cooldown 300 s; HPA: sync 15 s, stabilization 300 s, tolerance 10 %.
    pub fn defaults(target: u32, max_replicas: u32) -> KedaConfig {
        KedaConfig {
            poll_s: 30,
            sync_s: 15,
            target: target.max(1),
            max_replicas,
            stabilization_s: 300,
            cooldown_s: 300,
            tolerance: 0.1,
        }
    }
}

pub(super) struct Keda {
    cfg: KedaConfig,
    /// The value of the last poll: what the HPA sees until the next one.
    metric: u64,
    last_active: Option<u64>,
    recommendations: VecDeque<(u64, u32)>,
}

impl Keda {
    pub(super) fn new(cfg: KedaConfig) -> Keda {
        Keda {
            cfg,
            metric: 0,
            last_active: None,
            recommendations: VecDeque::new(),
        }
    }

    /// The replica count at second `t`, given the queue's `depth` (queued + running) and `current`.
    pub(super) fn desired(&mut self, t: u64, depth: u64, current: u32) -> u32 {
        let c = &self.cfg;
        if t % c.poll_s == 0 {
            self.metric = depth;
            if depth > 0 {
                self.last_active = Some(t);
            }
            if current == 0 && depth > 0 {
                return 1;
            }
            let cooled = self.last_active.is_none_or(|a| t >= a + c.cooldown_s);
            if current > 0 && depth == 0 && cooled {
                self.recommendations.clear();
                return 0;
            }
        }
        if current == 0 || t % c.sync_s != 0 {
            return current;
        }
        let target = u64::from(c.target);
        let ratio = self.metric as f64 / (target * u64::from(current)) as f64;
        let rec = if (ratio - 1.0).abs() <= c.tolerance {
            current
        } else {
            let want = u32::try_from(self.metric.div_ceil(target)).unwrap_or(u32::MAX);
            want.clamp(1, c.max_replicas.max(1))
        };
        self.recommendations.push_back((t, rec));
        self.recommendations
            .retain(|&(at, _)| t < at + c.stabilization_s);
        if rec > current {
            // Default HPA scale-up policies: +100 % or +4 pods per period, whichever is more.
            let limit = (current * 2).max(current + 4);
            rec.min(limit)
        } else {
            let highest = self
                .recommendations
                .iter()
                .map(|&(_, r)| r)
                .max()
                .unwrap_or(rec);
            highest.min(current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activates_on_poll_then_hpa_doubles_per_sync() {
        let mut k = Keda::new(KedaConfig::defaults(4, 20));
        // Jobs arrive at t=1: nothing until the next poll at 30.
        assert_eq!(k.desired(15, 240, 0), 0);
        assert_eq!(k.desired(30, 240, 0), 1);
        assert_eq!(k.desired(45, 240, 1), 5);
        assert_eq!(k.desired(60, 240, 5), 10);
        assert_eq!(k.desired(75, 240, 10), 20);
        assert_eq!(k.desired(76, 240, 20), 20);
    }

    #[test]
    fn scale_down_waits_for_the_window_and_zero_for_the_cooldown() {
        let mut k = Keda::new(KedaConfig::defaults(4, 20));
        assert_eq!(k.desired(0, 80, 20), 20);
        // Depth 4 → 1 replica recommended, but 20 is within the 300 s window.
        assert_eq!(k.desired(30, 4, 20), 20);
        assert_eq!(k.desired(285, 4, 20), 20);
        assert_eq!(k.desired(300, 4, 20), 1);
        // Last active at 300: zero only from 600.
        assert_eq!(k.desired(570, 0, 1), 1);
        assert_eq!(k.desired(600, 0, 1), 0);
    }
}
