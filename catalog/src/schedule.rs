//! When each request of a pass goes: every host's watches spread evenly over the interval, never closer
//! together than the per-host rate allows. Pure arithmetic; [`crate::Watcher`] paces by it.

use std::collections::BTreeMap;
use std::time::Duration;

/// Share of the interval a pass is spread over: it ends a little before the next one is due, so a pass
/// that keeps its schedule never delays the next.
pub const FILL: f64 = 0.9;

/// One host's part of a pass: which watches (indices into the pass's list), in order, and the gap
/// between the starts of consecutive ones.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPlan {
    /// Registry host[:port].
    pub host: String,
    /// Indices of the host's watches, in the order they are resolved.
    pub items: Vec<usize>,
    /// Time between the starts of consecutive items.
    pub gap: Duration,
}

impl HostPlan {
    /// When item `n` (0-based) starts, from the pass's start.
    pub fn offset(&self, n: usize) -> Duration {
        self.gap.mul_f64(n as f64)
    }

    /// How long the host's part takes at its schedule (the last item's start).
    pub fn span(&self) -> Duration {
        self.offset(self.items.len().saturating_sub(1))
    }
}

/// The smallest gap between two requests to one host at `rate` requests per second.
pub fn min_gap(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate)
}

/// The gap between `count` items of one host: spread over [`FILL`] of `interval`, but never under the
/// rate's [`min_gap`] (a host with more watches than the rate allows in an interval takes longer: the
/// pass falls behind and says so, it does not burst).
pub fn gap(count: usize, interval: Duration, rate: f64) -> Duration {
    let spread = if count == 0 {
        Duration::ZERO
    } else {
        interval.mul_f64(FILL) / u32::try_from(count).unwrap_or(u32::MAX)
    };
    spread.max(min_gap(rate))
}

/// Plans a pass over watches on `hosts` (one entry per watch, in the pass's order): one [`HostPlan`] per
/// host, sorted by host.
pub fn plan<'a>(
    hosts: impl IntoIterator<Item = &'a str>,
    interval: Duration,
    rate: f64,
) -> Vec<HostPlan> {
    let mut by_host: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, host) in hosts.into_iter().enumerate() {
        by_host.entry(host).or_default().push(i);
    }
    by_host
        .into_iter()
        .map(|(host, items)| HostPlan {
            host: host.to_string(),
            gap: gap(items.len(), interval, rate),
            items,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_host_is_spread_over_the_interval_within_its_rate() {
        // 10 tags over 5 minutes at 5/s: spread, 27 s apart, the last at 243 s (before the next pass).
        let g = gap(10, S(300), 5.0);
        assert_eq!(g, Duration::from_secs(27));
        // 10,000 tags at 5/s cannot fit 300 s: the rate wins (the pass takes 2,000 s and falls behind).
        assert_eq!(gap(10_000, S(300), 5.0), Duration::from_millis(200));
        // 500 tags over 2 s at 50/s: 20 ms apart, 10 s in all.
        let plan = plan(std::iter::repeat_n("r", 500), S(2), 50.0);
        assert_eq!(plan[0].gap, Duration::from_millis(20));
        assert_eq!(plan[0].span(), Duration::from_millis(20 * 499));
    }

    #[test]
    fn hosts_are_planned_apart_and_keep_the_pass_order() {
        let plan = plan(["b", "a", "b", "b"], S(9), 100.0);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            (plan[0].host.as_str(), plan[0].items.clone()),
            ("a", vec![1])
        );
        assert_eq!(
            (plan[1].host.as_str(), plan[1].items.clone()),
            ("b", vec![0, 2, 3])
        );
        // Each host gets the whole interval: b's three are 2.7 s apart, a's one goes at once.
        assert_eq!(plan[1].gap, Duration::from_millis(2700));
        assert_eq!(plan[1].offset(2), Duration::from_millis(5400));
        assert_eq!(plan[0].span(), Duration::ZERO);
    }
}
