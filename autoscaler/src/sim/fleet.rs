//! The simulated workers: slots that run jobs to the millisecond, the two ways of removing workers, and
//! the window of finished jobs the work policy learns from (what the queue's recent window holds).

use std::collections::VecDeque;

use crate::decision::WorkSnapshot;

/// One worker: `slots` jobs at once, each `(job, ends at ms)`; a slot is free once its end has passed.
pub(super) struct Worker {
    pub(super) ready_at: u64,
    /// (job index, finishes at, in ms).
    pub(super) jobs: Vec<(usize, u64)>,
    pub(super) draining_since: Option<u64>,
    /// When the jobs that ended during the last second ended (ms): their slots claim the next job
    /// from then, not from the next whole second.
    pub(super) freed_at: Vec<u64>,
}

impl Worker {
    pub(super) fn new(ready_at: u64) -> Worker {
        Worker {
            ready_at,
            jobs: Vec::new(),
            draining_since: None,
            freed_at: Vec::new(),
        }
    }
}

/// A finished job as a worker reports it: bytes fetched and milliseconds taken.
#[derive(Debug, Clone, Copy)]
pub(super) struct Finished {
    pub(super) fetched: u64,
    pub(super) ms: u64,
}

/// The most recent finished jobs ([`fathom_queue`'s window] is 200 too).
pub(super) struct History {
    window: VecDeque<Finished>,
}

/// Jobs the window holds, as the queue's stats query does.
const WINDOW: usize = 200;

impl History {
    pub(super) fn new() -> History {
        History {
            window: VecDeque::with_capacity(WINDOW),
        }
    }

    pub(super) fn push(&mut self, f: Finished) {
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(f);
    }

    /// The recent-window part of the work snapshot.
    pub(super) fn fill(&self, w: &mut WorkSnapshot) {
        for f in &self.window {
            let kb = f.fetched / 1000;
            w.recent_sum_kb += kb;
            w.recent_sum_kb2 += kb * kb;
            w.recent_sum_kb_ms += kb * f.ms;
            if f.fetched > 0 {
                w.recent_cold_jobs += 1;
                w.recent_cold_bytes += f.fetched;
                w.recent_cold_ms += f.ms;
            } else {
                w.recent_cached_jobs += 1;
                w.recent_cached_ms += f.ms;
            }
        }
    }
}

/// Puts a removed worker's unfinished jobs back at the front of the queue; returns how many.
pub(super) fn requeue(
    jobs: &mut Vec<(usize, u64)>,
    now_ms: u64,
    queue: &mut VecDeque<usize>,
) -> u32 {
    let mut n = 0;
    for (job, end) in jobs.drain(..).rev() {
        if end > now_ms {
            queue.push_front(job);
            n += 1;
        }
    }
    n
}

/// fathom's scale-in: starting and idle workers go at once, the least busy drain.
pub(super) fn remove_idle_first(workers: &mut Vec<Worker>, victims: usize, t: u64) -> u32 {
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
pub(super) fn remove_random(
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
        killed += requeue(&mut w.jobs, t * 1000, queue);
    }
    killed
}
