//! Load traces the simulator replays: when each job arrives.

/// A load trace: job arrival times (whole seconds) and how long the simulation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Short name printed in the bench line (`trace=...`).
    pub name: &'static str,
    /// Arrival second of every job, ascending.
    pub arrivals: Vec<u64>,
    /// Simulated seconds, including an idle tail so scale-down is measured too.
    pub duration_s: u64,
}

impl Trace {
    /// 240 jobs at once (t=15 s), then 30 minutes of quiet: how fast does the fleet grow, and shrink back?
    ///
    /// Bursts land mid-way between the baseline's 30 s polls (its expected delay), not on a poll tick.
    pub fn burst() -> Trace {
        Trace {
            name: "burst",
            arrivals: vec![15; 240],
            duration_s: 1800,
        }
    }

    /// One hour of sinusoidal load between 0.1 and 1.5 jobs/s with a 10-minute period, then a
    /// 10-minute tail: does the fleet follow without flapping?
    pub fn sine() -> Trace {
        let mut arrivals = Vec::new();
        let mut owed = 0.0f64;
        for t in 0..3600u64 {
            let phase = t as f64 * std::f64::consts::TAU / 600.0;
            owed += 0.8 + 0.7 * phase.sin();
            while owed >= 1.0 {
                arrivals.push(t);
                owed -= 1.0;
            }
        }
        Trace {
            name: "sine",
            arrivals,
            duration_s: 4200,
        }
    }

    /// 120 jobs at t=75 s, then idle until 40 minutes: what does the idle tail cost in replica-minutes?
    pub fn spike_then_idle() -> Trace {
        Trace {
            name: "spike-then-idle",
            arrivals: vec![75; 120],
            duration_s: 2400,
        }
    }

    /// One job every 20 s for 20 minutes keeps one replica busy; 240 jobs land on it at t=615 s, then 10
    /// minutes of quiet. The case where the baseline's poll interval matters least: no activation is
    /// needed, so only the HPA's sync (and, with cached metrics, the poll) stands between burst and scale.
    ///
    /// Like [`Trace::burst`], the burst lands mid-way between two 30 s polls, so the cached variant waits
    /// its expected 15 s for the poll (then 7 s for the sync); the fresh-metric HPA waits 7 s for its next
    /// sync (expected 7.5 s).
    pub fn burst_warm() -> Trace {
        let mut arrivals: Vec<u64> = (0..1200).step_by(20).collect();
        arrivals.extend([615; 240]);
        arrivals.sort_unstable();
        Trace {
            name: "burst-warm",
            arrivals,
            duration_s: 1800,
        }
    }

    /// The traces the bench replays, in print order.
    pub fn all() -> Vec<Trace> {
        vec![
            Trace::burst(),
            Trace::sine(),
            Trace::spike_then_idle(),
            Trace::burst_warm(),
        ]
    }

    /// With unlimited workers (jobs start on arrival), the replicas needed at each second, capped at `max`.
    /// The time-to-scale figure measures how long a policy takes to reach the peak of this.
    pub fn ideal_replicas(&self, job_s: u64, jobs_per_replica: u32, max: u32) -> Vec<u32> {
        let mut outstanding = vec![0i64; self.duration_s as usize + 1];
        for &a in &self.arrivals {
            let start = a.min(self.duration_s) as usize;
            let end = (a + job_s).min(self.duration_s) as usize;
            outstanding[start] += 1;
            outstanding[end] -= 1;
        }
        let mut running = 0i64;
        outstanding
            .iter()
            .take(self.duration_s as usize)
            .map(|d| {
                running += d;
                let need = (running.max(0) as u64).div_ceil(u64::from(jobs_per_replica.max(1)));
                u32::try_from(need).unwrap_or(u32::MAX).min(max)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_are_sorted_and_within_their_duration() {
        for t in Trace::all() {
            assert!(t.arrivals.windows(2).all(|w| w[0] <= w[1]), "{}", t.name);
            assert!(t.arrivals.iter().all(|&a| a < t.duration_s), "{}", t.name);
        }
        // The warm burst: one replica's worth of load before it, 240 jobs on top.
        let warm = Trace::burst_warm();
        assert_eq!(warm.arrivals.len(), 60 + 240);
        let ideal = warm.ideal_replicas(30, 4, 20);
        assert!(
            ideal[..615].iter().all(|&r| r <= 1),
            "more than one replica before the burst"
        );
        assert_eq!(ideal[600], 1);
        assert_eq!(ideal[615], 20);
        // 0.8 jobs/s on average over an hour.
        let n = Trace::sine().arrivals.len();
        assert!((2870..=2890).contains(&n), "sine has {n} jobs");
    }

    #[test]
    fn ideal_replicas_follow_outstanding_jobs() {
        let ideal = Trace::burst().ideal_replicas(30, 4, 20);
        assert_eq!(ideal[14], 0);
        assert_eq!(ideal[15], 20);
        assert_eq!(ideal[44], 20);
        assert_eq!(ideal[45], 0);
        let ideal = Trace::sine().ideal_replicas(30, 4, 20);
        let peak = ideal.iter().copied().max().unwrap_or(0);
        // 1.5 jobs/s × 30 s = 45 outstanding → 12 replicas at the crest.
        assert!((11..=12).contains(&peak), "peak {peak}");
    }
}
