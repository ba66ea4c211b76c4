//! A simulated idle fleet for herd tests and the bench: many members, each a [`Waker::join`] and the
//! worker's claim loop (claim a batch for its free slots, report it to the waker, claim again only after
//! what [`Waker::claimed`] says or a wake-up), counting every claim statement it makes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{Error, Result};
use fathom_queue::{Queue, QueueConfig, Waker};

/// What a [`Herd`] looks like.
#[derive(Debug, Clone)]
pub struct HerdConfig {
    /// Member processes (each with its own listening connection).
    pub members: usize,
    /// Jobs each member claims at most at once.
    pub slots: usize,
    /// Each member's own polling interval (stretched by fleet size, see [`Waker::wait_idle`]).
    pub poll_interval: Duration,
    /// Job kind claimed.
    pub kind: String,
    /// `Some(n)`: each member opens its own queue pool of `n` connections (idle ones closing after
    /// [`fathom_queue::IDLE_TIMEOUT`]), as worker processes do, so the connections an idle fleet holds can
    /// be counted. `None`: the members share one pool of 8 (fewer connections next to other tests).
    pub member_pool: Option<usize>,
}

/// Claims made so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HerdCounts {
    /// Claim statements that returned jobs.
    pub with_jobs: u64,
    /// Claim statements that returned nothing.
    pub empty: u64,
    /// Jobs claimed (and completed at once).
    pub jobs: u64,
}

impl HerdCounts {
    /// Every claim statement.
    pub fn claims(&self) -> u64 {
        self.with_jobs + self.empty
    }

    /// Claims made since `earlier`.
    pub fn since(&self, earlier: HerdCounts) -> HerdCounts {
        HerdCounts {
            with_jobs: self.with_jobs - earlier.with_jobs,
            empty: self.empty - earlier.empty,
            jobs: self.jobs - earlier.jobs,
        }
    }
}

#[derive(Default)]
struct Counters {
    with_jobs: AtomicU64,
    empty: AtomicU64,
    jobs: AtomicU64,
    waits: Mutex<Vec<Duration>>,
}

/// A running simulated fleet; [`Herd::stop`] it (members leave the fleet).
pub struct Herd {
    tasks: Vec<JoinHandle<()>>,
    wakers: Vec<Waker>,
    counters: Arc<Counters>,
}

impl Herd {
    /// Starts the members and returns once every one counts the whole fleet and their start-up claims
    /// (each member's first wake-up) are done.
    pub async fn start(database_url: &str, config: HerdConfig) -> Result<Herd> {
        let shared = Queue::connect(
            database_url,
            QueueConfig {
                pool_size: 8,
                ..QueueConfig::default()
            },
        )?;
        let counters = Arc::new(Counters::default());
        let mut herd = Herd {
            tasks: Vec::new(),
            wakers: Vec::new(),
            counters: Arc::clone(&counters),
        };
        for i in 0..config.members {
            let waker = Waker::join(database_url)?;
            herd.wakers.push(waker.clone());
            let queue = match config.member_pool {
                Some(pool_size) => Queue::connect(
                    database_url,
                    QueueConfig {
                        pool_size,
                        ..QueueConfig::default()
                    },
                )?,
                None => shared.clone(),
            };
            herd.tasks.push(tokio::spawn(member(
                // As the worker does: claims on the member's listening connection.
                queue.with_listener(&waker),
                waker,
                config.clone(),
                format!("herd-{i}"),
                Arc::clone(&counters),
            )));
        }
        let everyone = herd
            .wakers
            .iter()
            .all(|w| w.fleet().size() == config.members);
        let mut tries = 0;
        let mut all_counted = everyone;
        while !all_counted {
            tries += 1;
            if tries > 600 {
                return Err(Error::Harness(format!(
                    "herd members never all counted {} members",
                    config.members
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            all_counted = herd
                .wakers
                .iter()
                .all(|w| w.fleet().size() == config.members);
        }
        herd.settle().await;
        Ok(herd)
    }

    /// Waits until no claim was made for half a second (start-up claims done).
    pub async fn settle(&self) {
        let mut last = self.counts();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.counts();
            if now.claims() == last.claims() {
                return;
            }
            last = now;
        }
    }

    /// Claims so far.
    pub fn counts(&self) -> HerdCounts {
        HerdCounts {
            with_jobs: self.counters.with_jobs.load(Ordering::SeqCst),
            empty: self.counters.empty.load(Ordering::SeqCst),
            jobs: self.counters.jobs.load(Ordering::SeqCst),
        }
    }

    /// Waits until `jobs` jobs in total were claimed; an error after `deadline`.
    pub async fn wait_for_jobs(&self, jobs: u64, deadline: Duration) -> Result<()> {
        let give_up = tokio::time::Instant::now() + deadline;
        while self.counts().jobs < jobs {
            if tokio::time::Instant::now() > give_up {
                return Err(Error::Harness(format!(
                    "only {} of {jobs} jobs claimed within {deadline:?}",
                    self.counts().jobs
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Enqueue → claim of every job claimed so far (database clock), in claim order.
    pub fn queue_waits(&self) -> Vec<Duration> {
        self.counters
            .waits
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }

    /// Every member leaves the fleet and stops.
    pub async fn stop(self) {
        for waker in &self.wakers {
            waker.leave().await;
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The worker's job loop with jobs that finish the moment they are claimed.
async fn member(
    queue: Queue,
    mut waker: Waker,
    config: HerdConfig,
    id: String,
    counters: Arc<Counters>,
) {
    let ttl = Duration::from_secs(60);
    let mut due = true;
    loop {
        if due {
            let jobs = match queue.claim(&config.kind, config.slots, &id, ttl).await {
                Ok(jobs) => jobs,
                Err(err) => {
                    tracing::warn!(%err, "herd claim failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // As the worker does: idle, it holds no pooled connection until its next poll (a shared
            // pool is left alone: the others use it).
            if jobs.is_empty() && config.member_pool.is_some() {
                queue.release_until(waker.poll_period(config.poll_interval));
            }
            // Jobs finish at once, so "claim again when a slot frees" is right away.
            due = waker.claimed(config.slots, jobs.len());
            let counter = if jobs.is_empty() {
                &counters.empty
            } else {
                &counters.with_jobs
            };
            counter.fetch_add(1, Ordering::SeqCst);
            if !jobs.is_empty() {
                if let Ok(mut waits) = counters.waits.lock() {
                    waits.extend(jobs.iter().map(|j| j.queue_wait()));
                }
                let leases: Vec<_> = jobs.iter().map(|j| j.lease).collect();
                if let Err(err) = queue.complete_many(&leases).await {
                    tracing::warn!(%err, "herd complete failed");
                }
                counters.jobs.fetch_add(jobs.len() as u64, Ordering::SeqCst);
            }
            if due {
                continue;
            }
        }
        waker.wait_idle(config.poll_interval).await;
        due = true;
    }
}
