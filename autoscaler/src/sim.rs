//! A one-second-step simulation of a worker fleet under a load trace, driven by fathom's decision core or
//! by a KEDA + HPA baseline at their documented defaults, so policies can be compared on the same numbers.
//!
//! The model: jobs arrive per the [`Trace`], wait in a FIFO queue, and are claimed by ready workers (up to
//! `jobs_per_replica` each, workers polled in random order). A job takes `job_s` seconds. A new worker is
//! ready `startup_s` after it is asked for, whichever policy asked. When a policy lowers the count, fathom removes starting and idle
//! workers first and lets a busy one drain (it claims nothing more and exits when its jobs finish, killed
//! only after `drain_timeout_s`); the baseline removes pods the way a ReplicaSet without deletion costs
//! does — starting pods first, then at random — and a removed busy pod loses its jobs (they are re-queued
//! and counted as killed), which is KEDA #6719 when an analysis outlives the pod's grace period.

mod keda;
mod trace;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::decision::{decide, DecisionState, Override, Policy, QueueSnapshot};
pub use keda::{
    KedaConfig, HPA_SCALE_DOWN_STABILIZATION_S, HPA_SCALE_UP_PERCENT, HPA_SCALE_UP_PERIOD_S,
    HPA_SCALE_UP_PODS, HPA_SYNC_PERIOD_S, HPA_SYNC_PHASE_S, HPA_TOLERANCE, KEDA_ACTIVATION_VALUE,
    KEDA_COOLDOWN_PERIOD_S, KEDA_POLLING_INTERVAL_S,
};
pub use trace::Trace;

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
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            job_s: 30,
            jobs_per_replica: 4,
            startup_s: 10,
            max_replicas: 20,
            seed: 7,
        }
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

    /// The policies the bench compares, in print order.
    pub fn all(cfg: &SimConfig) -> Vec<SimPolicy> {
        vec![
            SimPolicy::fathom(cfg),
            SimPolicy::keda(cfg),
            SimPolicy::keda_cached(cfg),
        ]
    }

    /// Short name printed in the bench line (`policy=...`).
    pub fn name(&self) -> &'static str {
        match self {
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

struct Worker {
    ready_at: u64,
    /// (job index, finishes at).
    jobs: Vec<(usize, u64)>,
    draining_since: Option<u64>,
}

/// What a controller sees each second.
struct View {
    t: u64,
    queued: u64,
    running: u64,
    oldest_age_s: Option<u64>,
    current: u32,
    nudged: bool,
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
                    ..Default::default()
                };
                let now = *t0 + Duration::from_secs(v.t);
                decide(policy, &snap, v.current, Override::None, state, now).desired
            }
            Controller::Keda(k) => k.desired(v.t, v.queued + v.running, v.current),
        }
    }
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
    let ideal = trace.ideal_replicas(cfg.job_s, cfg.jobs_per_replica, cfg.max_replicas);
    let peak = ideal.iter().copied().max().unwrap_or(0);
    let peak_at = ideal.iter().position(|&r| r == peak).unwrap_or(0) as u64;

    let mut start: Vec<Option<u64>> = vec![None; trace.arrivals.len()];
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut workers: Vec<Worker> = Vec::new();
    let (mut next_arrival, mut done, mut killed, mut events) = (0usize, 0usize, 0u32, 0u32);
    let (mut replica_seconds, mut time_to_scale) = (0u64, None);
    let (mut reversals, mut last_up) = (0u32, None::<bool>);

    for t in 0..trace.duration_s {
        let before = next_arrival;
        while trace.arrivals.get(next_arrival).is_some_and(|&a| a <= t) {
            queue.push_back(next_arrival);
            next_arrival += 1;
        }
        for w in &mut workers {
            let n = w.jobs.len();
            w.jobs.retain(|&(_, end)| end > t);
            done += n - w.jobs.len();
        }
        workers.retain_mut(|w| match (w.draining_since, drain_timeout) {
            (None, _) => true,
            (Some(_), _) if w.jobs.is_empty() => false,
            (Some(since), Some(limit)) if t >= since + limit => {
                killed += requeue(&mut w.jobs, &mut queue);
                false
            }
            _ => true,
        });

        let mut order: Vec<usize> = (0..workers.len()).collect();
        rng.shuffle(&mut order);
        for i in order {
            let w = &mut workers[i];
            while w.draining_since.is_none() && w.ready_at <= t && w.jobs.len() < jpr {
                let Some(job) = queue.pop_front() else { break };
                start[job] = Some(t);
                w.jobs.push((job, t + cfg.job_s));
            }
        }

        let current = workers
            .iter()
            .filter(|w| w.draining_since.is_none())
            .count() as u32;
        let view = View {
            t,
            queued: queue.len() as u64,
            running: workers.iter().map(|w| w.jobs.len() as u64).sum(),
            oldest_age_s: queue.front().map(|&j| t.saturating_sub(trace.arrivals[j])),
            current,
            nudged: next_arrival > before,
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
            workers.push(Worker {
                ready_at: t + cfg.startup_s,
                jobs: Vec::new(),
                draining_since: None,
            });
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
        .zip(&start)
        .map(|(&a, s)| s.unwrap_or(trace.duration_s).saturating_sub(a))
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
    }
}

fn requeue(jobs: &mut Vec<(usize, u64)>, queue: &mut VecDeque<usize>) -> u32 {
    let n = jobs.len() as u32;
    for (job, _) in jobs.drain(..).rev() {
        queue.push_front(job);
    }
    n
}

/// fathom's scale-in: starting and idle workers go at once, the least busy drain.
fn remove_idle_first(workers: &mut Vec<Worker>, victims: usize, t: u64) -> u32 {
    let mut candidates: Vec<usize> = (0..workers.len())
        .filter(|&i| workers[i].draining_since.is_none())
        .collect();
    candidates.sort_by_key(|&i| (workers[i].ready_at <= t, workers[i].jobs.len()));
    for &i in candidates.iter().take(victims) {
        workers[i].draining_since = Some(t);
    }
    workers.retain(|w| w.draining_since.is_none() || !w.jobs.is_empty());
    0
}

/// A ReplicaSet without deletion costs: starting pods first, then random; busy pods lose their jobs.
fn remove_random(
    workers: &mut Vec<Worker>,
    victims: usize,
    t: u64,
    rng: &mut fastrand::Rng,
    queue: &mut VecDeque<usize>,
) -> u32 {
    let mut killed = 0;
    for _ in 0..victims {
        let starting: Vec<usize> = (0..workers.len())
            .filter(|&i| workers[i].ready_at > t)
            .collect();
        let i = match starting.first() {
            Some(&i) => i,
            None if workers.is_empty() => break,
            None => rng.usize(..workers.len()),
        };
        let mut w = workers.swap_remove(i);
        killed += requeue(&mut w.jobs, queue);
    }
    killed
}

#[cfg(test)]
mod tests;
