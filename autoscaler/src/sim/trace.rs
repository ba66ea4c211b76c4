//! Load traces the simulator replays: when each job arrives, and how much it has to fetch.

/// What one job has to fetch, in compressed bytes of layers not in the layer cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobWork {
    /// Bytes only this job fetches (its own top layers).
    pub own_bytes: u64,
    /// A layer shared by a family of images (a new base): `(family, bytes)`. Every job of the family
    /// that is enqueued before the layer is cached is estimated with it; only the first to run fetches it.
    pub shared: Option<(u32, u64)>,
}

/// A log-normal draw with this median and σ (Box–Muller from two uniforms).
fn log_normal(rng: &mut fastrand::Rng, median: f64, sigma: f64) -> f64 {
    let (u1, u2) = (rng.f64().max(1e-12), rng.f64());
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    median * (sigma * z).exp()
}

/// A load trace: job arrival times (whole seconds) and how long the simulation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Short name printed in the bench line (`trace=...`).
    pub name: &'static str,
    /// Arrival second of every job, ascending.
    pub arrivals: Vec<u64>,
    /// Simulated seconds, including an idle tail so scale-down is measured too.
    pub duration_s: u64,
    /// Each job's work, in arrival order; a missing entry or `None` is the fleet's standard cold job
    /// ([`super::SimConfig::job_s`] long).
    pub work: Vec<Option<JobWork>>,
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
            work: Vec::new(),
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
            work: Vec::new(),
        }
    }

    /// 120 jobs at t=75 s, then idle until 40 minutes: what does the idle tail cost in replica-minutes?
    pub fn spike_then_idle() -> Trace {
        Trace {
            name: "spike-then-idle",
            arrivals: vec![75; 120],
            duration_s: 2400,
            work: Vec::new(),
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
            work: Vec::new(),
        }
    }

    /// The traces the bench replays, in print order.
    pub fn all() -> Vec<Trace> {
        vec![
            Trace::burst(),
            Trace::sine(),
            Trace::spike_then_idle(),
            Trace::burst_warm(),
            Trace::rescan_burst(),
            Trace::rescan_on_load(),
            Trace::mixed(),
        ]
    }

    /// The Monday-morning rebuild: 1,000 images land at once on an idle fleet, each sharing all
    /// but its top layer with what was analyzed before, so 95 % of its bytes are cached. Image sizes are
    /// log-normal around 150 MB. Nothing else runs, so replica-minutes are what the rescan alone costs.
    pub fn rescan_burst() -> Trace {
        Trace::from_jobs("rescan-burst", rescan_jobs(15), 1800)
    }

    /// The same rebuild landing at t=615 s on a fleet kept busy (and its throughput learned) by one
    /// standard cold job every 20 s: the background costs every policy about the same, so the bench also
    /// prints what the burst alone added (`autoscale-floor`).
    pub fn rescan_on_load() -> Trace {
        let mut jobs: Vec<(u64, Option<JobWork>)> =
            (0..1200).step_by(20).map(|t| (t, None)).collect();
        jobs.extend(rescan_jobs(615));
        Trace::from_jobs("rescan-on-load", jobs, 1800)
    }

    /// An hour of cold and cached jobs interleaved (0.5 jobs/s on average): 70 % re-analyses with every
    /// layer cached, 30 % cold images with Pareto-distributed sizes (α 1.2, from 50 MB, capped at 5 GB).
    /// Cold images come in families of five sharing a new base layer (40 % of their bytes), which every
    /// estimate made before the base is cached counts: the estimate's error on this trace.
    pub fn mixed() -> Trace {
        let mut rng = fastrand::Rng::with_seed(2812);
        let mut jobs = Vec::new();
        let mut family = 0u32;
        let mut in_family = 0;
        let mut t = 0.0f64;
        while t < 3600.0 {
            t += -rng.f64().max(1e-9).ln() / 0.5;
            let work = if rng.f64() < 0.7 {
                JobWork {
                    own_bytes: 0,
                    shared: None,
                }
            } else {
                let size = (50e6 / rng.f64().max(1e-9).powf(1.0 / 1.2)).min(5e9);
                if in_family == 5 {
                    family += 1;
                    in_family = 0;
                }
                in_family += 1;
                JobWork {
                    own_bytes: (size * 0.6) as u64,
                    shared: Some((family, (size * 0.4) as u64)),
                }
            };
            if t < 3600.0 {
                jobs.push((t as u64, Some(work)));
            }
        }
        Trace::from_jobs("mixed", jobs, 4200)
    }

    /// The trace's standard cold jobs alone (e.g. the background a burst lands on), over the same
    /// duration: what a policy spends on them is the floor under what it spends on the whole trace.
    pub fn background(&self) -> Trace {
        let kept: Vec<usize> = (0..self.arrivals.len())
            .filter(|&i| self.work.get(i).copied().flatten().is_none())
            .collect();
        Trace {
            name: self.name,
            arrivals: kept.iter().map(|&i| self.arrivals[i]).collect(),
            duration_s: self.duration_s,
            work: Vec::new(),
        }
    }

    /// A trace from `(arrival, work)` pairs (`None`: a standard cold job), sorted by arrival.
    fn from_jobs(
        name: &'static str,
        mut jobs: Vec<(u64, Option<JobWork>)>,
        duration_s: u64,
    ) -> Trace {
        jobs.sort_by_key(|&(t, _)| t);
        Trace {
            name,
            arrivals: jobs.iter().map(|&(t, _)| t).collect(),
            duration_s,
            work: jobs.into_iter().map(|(_, w)| w).collect(),
        }
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

    /// [`Trace::ideal_replicas`] for jobs of any length: `durations_ms[i]` is job i's time on one slot,
    /// and each second needs the slots its jobs occupy during it (a 400 ms job counts 0.4 of a slot).
    pub fn ideal_replicas_ms(
        &self,
        durations_ms: &[u64],
        jobs_per_replica: u32,
        max: u32,
    ) -> Vec<u32> {
        let end_ms = self.duration_s * 1000;
        let mut busy_ms = vec![0u64; self.duration_s as usize];
        for (&a, &d) in self.arrivals.iter().zip(durations_ms) {
            let (mut from, to) = (a * 1000, (a * 1000 + d).min(end_ms));
            while from < to {
                let second = from / 1000;
                let next = ((second + 1) * 1000).min(to);
                busy_ms[second as usize] += next - from;
                from = next;
            }
        }
        let per_replica = 1000 * u64::from(jobs_per_replica.max(1));
        busy_ms
            .iter()
            .map(|&ms| {
                u32::try_from(ms.div_ceil(per_replica))
                    .unwrap_or(u32::MAX)
                    .min(max)
            })
            .collect()
    }
}

/// 1,000 re-analyses arriving at `at`, 95 % of each image's bytes cached (the same seed for every trace
/// that uses them, so the burst is identical on an idle and on a busy fleet).
fn rescan_jobs(at: u64) -> Vec<(u64, Option<JobWork>)> {
    let mut rng = fastrand::Rng::with_seed(28);
    (0..1000)
        .map(|_| {
            let size = log_normal(&mut rng, 150e6, 0.8);
            let own_bytes = (size * 0.05) as u64;
            (
                at,
                Some(JobWork {
                    own_bytes,
                    shared: None,
                }),
            )
        })
        .collect()
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
