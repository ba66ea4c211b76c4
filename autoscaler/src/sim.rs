//! A one-second-step simulation of a worker fleet under a load trace, driven by fathom's decision core or
//! by a KEDA + HPA baseline at their documented defaults, so policies can be compared on the same numbers.
//!
//! The model: jobs arrive per the [`Trace`], wait in a FIFO queue, and are claimed by ready workers (up to
//! `jobs_per_replica` each, workers polled in random order). A job takes `overhead_ms` plus the bytes it
//! fetches at `slot_bytes_per_s` (a standard cold job: `job_s` seconds); a slot that finishes a short job
//! within a second claims the next one at once, so re-analyses of cached images cost milliseconds. A new worker is
//! ready `startup_s` after it is asked for, whichever policy asked. When a policy lowers the count, fathom removes starting and idle
//! workers first and lets a busy one drain (it claims nothing more and exits when its jobs finish, killed
//! only after `drain_timeout_s`); the baseline removes pods the way a ReplicaSet without deletion costs
//! does — starting pods first, then at random — and a removed busy pod loses its jobs (they are re-queued
//! and counted as killed), which is KEDA #6719 when an analysis outlives the pod's grace period.

mod fleet;
mod keda;
mod trace;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::decision::{
    decide, DecisionState, Override, Policy, QueueSnapshot, ScaleOn, WorkPolicy, WorkSnapshot,
};
use fleet::{remove_idle_first, remove_random, requeue, Finished, History, Worker};
pub use keda::{
    KedaConfig, HPA_SCALE_DOWN_STABILIZATION_S, HPA_SCALE_UP_PERCENT, HPA_SCALE_UP_PERIOD_S,
    HPA_SCALE_UP_PODS, HPA_SYNC_PERIOD_S, HPA_SYNC_PHASE_S, HPA_TOLERANCE, KEDA_ACTIVATION_VALUE,
    KEDA_COOLDOWN_PERIOD_S, KEDA_POLLING_INTERVAL_S,
};
pub use trace::{JobWork, Trace};

/// The simulated fleet: worker speed and limits shared by every policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// Seconds one job takes on one worker slot.
    pub job_s: u64,
    /// Concurrent jobs per worker.
    pub jobs_per_replica: u32,
    /// Seconds from "add a worker" to the worker claiming jobs (scheduling, image pull, start-up).
    pub startup_s: u64,
    /// Highest replica count any policy may use.
    pub max_replicas: u32,
    /// Seed of the random choices (claim order, baseline victims), so runs are reproducible.
    pub seed: u64,
    /// Compressed bytes per second one slot fetches and analyzes.
    pub slot_bytes_per_s: u64,
    /// Milliseconds every job costs besides its bytes (resolve, cache lookups, writing the result).
    pub overhead_ms: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            job_s: 30,
            jobs_per_replica: 4,
            startup_s: 10,
            max_replicas: 20,
            seed: 7,
            slot_bytes_per_s: 25_000_000,
            // What a real worker takes to re-analyze an image whose layers are all cached (the mean of
            // `cargo bench --bench worker -- rescan`, docs/autoscaler.md): a manifest fetch, merging the
            // stored layer results, storing the image.
            overhead_ms: 28,
        }
    }
}

impl SimConfig {
    /// Bytes of the standard cold job, so that it takes exactly `job_s`.
    fn standard_bytes(&self) -> u64 {
        (self.job_s * 1000).saturating_sub(self.overhead_ms) * self.slot_bytes_per_s / 1000
    }

    /// Milliseconds a job fetching `bytes` takes on one slot.
    fn job_ms(&self, bytes: u64) -> u64 {
        let fetch = (u128::from(bytes) * 1000).div_ceil(u128::from(self.slot_bytes_per_s.max(1)));
        self.overhead_ms + u64::try_from(fetch).unwrap_or(u64::MAX)
    }
}

/// Which controller sizes the simulated fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum SimPolicy {
    /// fathom's [`decide`], polled every `poll_s` and nudged on every enqueue.
    Fathom {
        /// The decision policy.
        policy: Policy,
        /// Poll interval in seconds when no enqueue nudges the loop.
        poll_s: u64,
        /// Seconds a draining worker may keep its jobs before it is killed.
        drain_timeout_s: u64,
    },
    /// KEDA polling the queue (0 ↔ 1) and an HPA reading KEDA's metrics server (1 ↔ N).
    Keda(KedaConfig),
}

impl SimPolicy {
    /// fathom's shipped defaults for this fleet.
    pub fn fathom(cfg: &SimConfig) -> SimPolicy {
        let policy = Policy {
            jobs_per_replica: cfg.jobs_per_replica,
            max_replicas: cfg.max_replicas,
            ..Policy::default()
        };
        SimPolicy::Fathom {
            policy,
            poll_s: 5,
            drain_timeout_s: 600,
        }
    }

    /// KEDA's and the HPA's defaults for this fleet: the HPA reads a fresh metric at every sync.
    pub fn keda(cfg: &SimConfig) -> SimPolicy {
        SimPolicy::Keda(KedaConfig::defaults(cfg.jobs_per_replica, cfg.max_replicas))
    }

    /// The same with `useCachedMetrics: true`: the HPA reads the value of KEDA's last poll.
    pub fn keda_cached(cfg: &SimConfig) -> SimPolicy {
        SimPolicy::Keda(KedaConfig::cached(cfg.jobs_per_replica, cfg.max_replicas))
    }

    /// fathom with `scale_on: work` (its shipped drain target and floor) for this fleet.
    pub fn fathom_work(cfg: &SimConfig) -> SimPolicy {
        let mut p = SimPolicy::fathom(cfg);
        if let SimPolicy::Fathom { policy, .. } = &mut p {
            policy.work = WorkPolicy {
                scale_on: ScaleOn::Work,
                ..WorkPolicy::default()
            };
        }
        p
    }

    /// The policies the bench compares, in print order.
    pub fn all(cfg: &SimConfig) -> Vec<SimPolicy> {
        vec![
            SimPolicy::fathom(cfg),
            SimPolicy::fathom_work(cfg),
            SimPolicy::keda(cfg),
            SimPolicy::keda_cached(cfg),
        ]
    }

    /// Short name printed in the bench line (`policy=...`).
    pub fn name(&self) -> &'static str {
        match self {
            SimPolicy::Fathom { policy, .. } if policy.work.scale_on == ScaleOn::Work => {
                "fathom-work"
            }
            SimPolicy::Fathom { .. } => "fathom",
            SimPolicy::Keda(k) if k.use_cached_metrics => "keda-cached",
            SimPolicy::Keda(_) => "keda",
        }
    }
}

/// What one simulation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Trace name.
    pub trace: &'static str,
    /// Policy name.
    pub policy: &'static str,
    /// Seconds from the moment an unlimited fleet would need its peak replica count (capped at max)
    /// until that many workers were ready; `None` if never reached.
    pub time_to_scale_s: Option<u64>,
    /// 95th percentile of job queue wait (arrival to last start); unstarted jobs count until the end.
    pub wait_p95_s: u64,
    /// Workers provisioned (starting, ready or draining) integrated over time, in minutes.
    pub replica_minutes: f64,
    /// Times the replica count was changed.
    pub scale_events: u32,
    /// Jobs lost because their worker was removed while running them.
    pub killed_busy: u32,
    /// Jobs finished by the end of the trace.
    pub jobs_done: usize,
    /// Times a scale-up followed a scale-down or vice versa (flapping shows up here).
    pub reversals: u32,
    /// Bytes the finished jobs were estimated at when enqueued...
    pub estimated_bytes: u64,
    /// ...and the bytes they actually fetched.
    pub fetched_bytes: u64,
}

impl fmt::Display for Report {
    /// The bench's one-line contract.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tts = match self.time_to_scale_s {
            Some(s) => s.to_string(),
            None => "never".to_string(),
        };
        write!(
            f,
            "autoscale trace={} policy={} time_to_scale_s={tts} wait_p95_s={} replica_minutes={:.1} \
             scale_events={} killed_busy={}",
            self.trace, self.policy, self.wait_p95_s, self.replica_minutes, self.scale_events, self.killed_busy
        )
    }
}

/// What a controller sees each second.
struct View {
    t: u64,
    queued: u64,
    running: u64,
    oldest_age_s: Option<u64>,
    current: u32,
    nudged: bool,
    work: WorkSnapshot,
}

enum Controller {
    Fathom {
        policy: Policy,
        poll_s: u64,
        state: DecisionState,
        last: Option<u64>,
        t0: Instant,
    },
    Keda(keda::Keda),
}

impl Controller {
    fn desired(&mut self, v: &View) -> u32 {
        match self {
            Controller::Fathom {
                policy,
                poll_s,
                state,
                last,
                t0,
            } => {
                let due = last.is_none_or(|l| v.t >= l + *poll_s);
                if !(due || v.nudged) {
                    return v.current;
                }
                *last = Some(v.t);
                let snap = QueueSnapshot {
                    queued: v.queued,
                    running: v.running,
                    oldest_queued_age: v.oldest_age_s.map(Duration::from_secs),
                    work: v.work,
                };
                let now = *t0 + Duration::from_secs(v.t);
                decide(policy, &snap, v.current, Override::None, state, now).desired
            }
            Controller::Keda(k) => k.desired(v.t, v.queued + v.running, v.current),
        }
    }
}

/// One job as the simulation tracks it: what the submitter estimated, when it started.
#[derive(Clone, Copy, Default)]
struct JobState {
    estimate: u64,
    fetched: u64,
    started_ms: Option<u64>,
}

/// Replays `trace` against `policy` on the fleet `cfg` and measures it.
pub fn simulate(trace: &Trace, cfg: &SimConfig, policy: &SimPolicy) -> Report {
    let jpr = cfg.jobs_per_replica.max(1) as usize;
    let mut rng = fastrand::Rng::with_seed(cfg.seed);
    let (mut ctrl, drain_timeout) = match policy {
        SimPolicy::Fathom {
            policy,
            poll_s,
            drain_timeout_s,
        } => (
            Controller::Fathom {
                policy: policy.clone(),
                poll_s: *poll_s,
                state: DecisionState::default(),
                last: None,
                t0: Instant::now(),
            },
            Some(*drain_timeout_s),
        ),
        SimPolicy::Keda(k) => (Controller::Keda(keda::Keda::new(k.clone())), None),
    };
    let work: Vec<JobWork> = (0..trace.arrivals.len())
        .map(|i| {
            trace.work.get(i).copied().flatten().unwrap_or(JobWork {
                own_bytes: cfg.standard_bytes(),
                shared: None,
            })
        })
        .collect();
    let full_ms: Vec<u64> = work
        .iter()
        .map(|w| cfg.job_ms(w.own_bytes + w.shared.map_or(0, |(_, b)| b)))
        .collect();
    let ideal = trace.ideal_replicas_ms(&full_ms, cfg.jobs_per_replica, cfg.max_replicas);
    let peak = ideal.iter().copied().max().unwrap_or(0);
    let peak_at = ideal.iter().position(|&r| r == peak).unwrap_or(0) as u64;

    let mut jobs = vec![JobState::default(); trace.arrivals.len()];
    // Shared layers fetched so far (by family): the layer cache.
    let mut cached_families = std::collections::HashSet::new();
    let mut history = History::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut workers: Vec<Worker> = Vec::new();
    let (mut next_arrival, mut done, mut killed, mut events) = (0usize, 0usize, 0u32, 0u32);
    let (mut replica_seconds, mut time_to_scale) = (0u64, None);
    let (mut reversals, mut last_up) = (0u32, None::<bool>);
    let (mut estimated_bytes, mut fetched_bytes) = (0u64, 0u64);
    // Every job finishes once; its estimate and fetched bytes are counted then.
    let mut finish = |job: usize, ms: u64, jobs: &[JobState], h: &mut History| {
        let fetched = jobs[job].fetched;
        h.push(Finished { fetched, ms });
        estimated_bytes += jobs[job].estimate;
        fetched_bytes += fetched;
    };

    for t in 0..trace.duration_s {
        let now = t * 1000;
        let before = next_arrival;
        while trace.arrivals.get(next_arrival).is_some_and(|&a| a <= t) {
            let w = work[next_arrival];
            let shared = w
                .shared
                .filter(|(f, _)| !cached_families.contains(f))
                .map_or(0, |(_, b)| b);
            jobs[next_arrival].estimate = w.own_bytes + shared;
            queue.push_back(next_arrival);
            next_arrival += 1;
        }
        for w in &mut workers {
            w.freed_at.clear();
            for &(job, end) in w.jobs.iter().filter(|&&(_, end)| end <= now) {
                done += 1;
                let ms = end - jobs[job].started_ms.unwrap_or(end);
                finish(job, ms, &jobs, &mut history);
                w.freed_at.push(end);
            }
            w.jobs.retain(|&(_, end)| end > now);
        }
        workers.retain_mut(|w| match (w.draining_since, drain_timeout) {
            (None, _) => true,
            (Some(_), _) if w.jobs.is_empty() => false,
            (Some(since), Some(limit)) if t >= since + limit => {
                killed += requeue(&mut w.jobs, now, &mut queue);
                false
            }
            _ => true,
        });

        let mut order: Vec<usize> = (0..workers.len()).collect();
        rng.shuffle(&mut order);
        for i in order {
            let w = &mut workers[i];
            if w.draining_since.is_some() || w.ready_at > t {
                continue;
            }
            for _ in w.jobs.len()..jpr {
                // One slot: jobs back to back until one outlasts this second, from when its last job
                // ended (a slot freed mid-second does not idle until the next whole second).
                let mut at = w.freed_at.pop().unwrap_or(now);
                while at < now + 1000 {
                    let Some(job) = queue.pop_front() else { break };
                    // Never before the job arrived.
                    at = at.max(trace.arrivals[job] * 1000);
                    let wk = work[job];
                    let shared = match wk.shared {
                        Some((f, b)) if cached_families.insert(f) => b,
                        _ => 0,
                    };
                    let fetched = wk.own_bytes + shared;
                    let ms = cfg.job_ms(fetched);
                    jobs[job].started_ms = Some(at);
                    jobs[job].fetched = fetched;
                    let end = at + ms;
                    if end <= now + 1000 {
                        done += 1;
                        finish(job, ms, &jobs, &mut history);
                        at = end;
                    } else {
                        w.jobs.push((job, end));
                        break;
                    }
                }
            }
        }
        let current = workers
            .iter()
            .filter(|w| w.draining_since.is_none())
            .count() as u32;
        let running: Vec<usize> = workers
            .iter()
            .flat_map(|w| {
                w.jobs
                    .iter()
                    .filter(|&&(_, end)| end > now)
                    .map(|&(j, _)| j)
            })
            .collect();
        let mut ws = WorkSnapshot::default();
        for &j in &queue {
            match jobs[j].estimate {
                0 => ws.queued_cached += 1,
                b => ws.queued_bytes += b,
            }
        }
        for &j in &running {
            match jobs[j].estimate {
                0 => ws.running_cached += 1,
                b => ws.running_bytes += b,
            }
        }
        history.fill(&mut ws);
        let view = View {
            t,
            queued: queue.len() as u64,
            running: running.len() as u64,
            oldest_age_s: queue.front().map(|&j| t.saturating_sub(trace.arrivals[j])),
            current,
            nudged: next_arrival > before,
            work: ws,
        };
        let desired = ctrl.desired(&view).min(cfg.max_replicas);
        if desired != current {
            events += 1;
            let up = desired > current;
            if last_up.is_some_and(|was| was != up) {
                reversals += 1;
            }
            last_up = Some(up);
        }
        for _ in current..desired {
            workers.push(Worker::new(t + cfg.startup_s));
        }
        if desired < current {
            let victims = (current - desired) as usize;
            killed += match ctrl {
                Controller::Fathom { .. } => remove_idle_first(&mut workers, victims, t),
                Controller::Keda(_) => {
                    remove_random(&mut workers, victims, t, &mut rng, &mut queue)
                }
            };
        }

        replica_seconds += workers.len() as u64;
        let ready = workers
            .iter()
            .filter(|w| w.draining_since.is_none() && w.ready_at <= t)
            .count();
        if time_to_scale.is_none() && t >= peak_at && ready as u32 >= peak {
            time_to_scale = Some(t - peak_at);
        }
    }

    let mut waits: Vec<u64> = trace
        .arrivals
        .iter()
        .zip(&jobs)
        .map(|(&a, j)| {
            j.started_ms
                .unwrap_or(trace.duration_s * 1000)
                .saturating_sub(a * 1000)
                .div_ceil(1000)
        })
        .collect();
    waits.sort_unstable();
    let p95 = waits
        .get((waits.len() * 95).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or(0);
    Report {
        trace: trace.name,
        policy: policy.name(),
        time_to_scale_s: time_to_scale,
        wait_p95_s: p95,
        replica_minutes: replica_seconds as f64 / 60.0,
        scale_events: events,
        killed_busy: killed,
        reversals,
        jobs_done: done,
        estimated_bytes,
        fetched_bytes,
    }
}

#[cfg(test)]
mod tests;
