//! The worker service: claims analysis jobs, runs the analyzer, stores results and completes jobs.
//!
//! Overview: [`Worker::run`] is one loop that keeps up to `concurrency` jobs in flight, claiming batches
//! sized to its free slots and sleeping on the queue's [`Waker`] when there is nothing to do: it claims
//! after a wake-up, and after a job finishes only when its last batch came back full (otherwise the queue
//! was empty then and a new job would have woken someone), so an idle fleet makes about one claim per
//! job and polls only on its turn. Next to it,
//! [`lease`] heartbeats every held lease every `lease_ttl / 3` and aborts jobs whose lease was lost, and a
//! rescuer puts dead workers' expired leases back in the queue (the fleet takes turns: one rescue per
//! `rescue_interval` fleet-wide). Each job ([`process`]) resolves the image,
//! skips the layers entirely when the manifest was analyzed with the same catalogers key, otherwise
//! analyzes it against the Postgres layer cache, then stores the result and completes the job in one
//! transaction. Shutdown stops claiming, lets in-flight jobs finish until `drain_timeout`, and releases
//! the rest to the queue at once. Registry outages: [`breaker`] keeps the fleet off a failing registry
//! (jobs deferred without charge, one probe at a time) and [`limit`] bounds jobs per registry host.
//! [`health`] is the readiness the
//! binary's health endpoint reports.

pub mod breaker;
mod gate;
pub mod health;
pub mod lease;
pub mod limit;
mod process;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fathom_queue::{Queue, Waker};
use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::store::{Store, ANALYZE_KIND};
use breaker::{Breaker, BreakerConfig};
use fathom_analyzer::Analyzer;
use health::Health;
use lease::Held;
use limit::HostLimits;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Lease owner recorded on claimed jobs ([`worker_id`]).
    pub worker_id: String,
    /// Jobs in flight at once.
    pub concurrency: usize,
    /// Lease length; heartbeats every third of it.
    pub lease_ttl: Duration,
    /// How long in-flight jobs may run after shutdown begins before they are released.
    pub drain_timeout: Duration,
    /// Longest idle sleep between claims without a notification for a lone worker; in a fleet each
    /// member polls once per `max(poll_interval, members × fathom_queue::POLL_GAP)`, in turn.
    pub poll_interval: Duration,
    /// Interval between rescues of expired leases, fleet-wide: members take turns.
    pub rescue_interval: Duration,
    /// The per-registry breaker shared by the fleet.
    pub breaker: BreakerConfig,
    /// Jobs talking to one registry host at once, fleet-wide (0: no limit); see [`limit`].
    pub max_concurrent_per_host: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: worker_id(),
            concurrency: 2,
            lease_ttl: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(25),
            poll_interval: Duration::from_secs(5),
            rescue_interval: Duration::from_secs(10),
            breaker: BreakerConfig::default(),
            max_concurrent_per_host: 0,
        }
    }
}

/// The pod name (`POD_NAME`, from the Downward API) so the autoscaler can match leases to pods, else
/// `hostname-pid`.
pub fn worker_id() -> String {
    if let Ok(name) = std::env::var("POD_NAME") {
        if !name.trim().is_empty() {
            return name.trim().to_string();
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// Everything a job needs, shared by all of them.
pub(crate) struct Ctx {
    pub config: WorkerConfig,
    pub analyzer: Analyzer,
    pub queue: Queue,
    pub store: Store,
    pub held: Held,
    pub health: Arc<Health>,
    pub breaker: Breaker,
    pub limits: Arc<HostLimits>,
}

/// The analyzer service.
pub struct Worker {
    ctx: Arc<Ctx>,
    waker: Waker,
}

impl Worker {
    /// A worker over these handles. `waker` is [`Waker::listen`] on a direct connection, or
    /// [`Waker::poll_only`] behind PgBouncer.
    pub fn new(
        config: WorkerConfig,
        analyzer: Analyzer,
        queue: Queue,
        store: Store,
        waker: Waker,
        health: Arc<Health>,
    ) -> Worker {
        let breaker = Breaker::new(store.pool().clone(), config.breaker);
        let limits = HostLimits::new(config.max_concurrent_per_host, waker.fleet());
        Worker {
            ctx: Arc::new(Ctx {
                config,
                analyzer,
                // Claims and rescues on the listening connection: a woken worker claims without
                // connecting first, and an idle one holds nothing else.
                queue: queue.with_listener(&waker),
                store,
                held: Held::default(),
                health,
                breaker,
                limits,
            }),
            waker,
        }
    }

    /// Runs until `shutdown` turns true, then drains and returns. Never returns early because of one
    /// image or because Postgres is unreachable (it backs off and retries).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let ctx = Arc::clone(&self.ctx);
        let metrics = Metrics::get();
        metrics
            .job_slots
            .set(i64::try_from(ctx.config.concurrency).unwrap_or(i64::MAX));
        tracing::info!(worker = %ctx.config.worker_id, concurrency = ctx.config.concurrency, "worker started");
        let heartbeat = tokio::spawn(lease::heartbeat_loop(Arc::clone(&ctx)));
        let rescuer = tokio::spawn(rescue_loop(Arc::clone(&ctx), self.waker.fleet()));
        let breakers = tokio::spawn(breaker_metrics_loop(Arc::clone(&ctx)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        // Whether a claim is worth making: at start, after a wake-up, or while batches come back full.
        let mut claim_due = true;
        while !*shutdown.borrow() {
            while let Some(done) = tasks.try_join_next() {
                log_join(done);
            }
            let free = ctx.config.concurrency.saturating_sub(tasks.len());
            if free > 0 && claim_due {
                match ctx
                    .queue
                    .claim(
                        ANALYZE_KIND,
                        free,
                        &ctx.config.worker_id,
                        ctx.config.lease_ttl,
                    )
                    .await
                {
                    Ok(jobs) => {
                        backoff.reset();
                        ctx.health.set_database_up(true);
                        if jobs.is_empty() && tasks.is_empty() {
                            // Idle: no connection held until the next poll or wake-up.
                            ctx.queue
                                .release_until(self.waker.poll_period(ctx.config.poll_interval));
                        }
                        let outcome = if jobs.is_empty() { "empty" } else { "jobs" };
                        metrics.claims.with_label_values(&[outcome]).inc();
                        claim_due = self.waker.claimed(free, jobs.len());
                        for job in jobs {
                            metrics.jobs_claimed.inc();
                            metrics.queue_wait.observe(job.queue_wait().as_secs_f64());
                            let lost = ctx.held.insert(job.lease, ctx.config.lease_ttl);
                            let job_ctx = Arc::clone(&ctx);
                            tasks.spawn(
                                std::panic::AssertUnwindSafe(process::run(job_ctx, job, lost))
                                    .catch_unwind()
                                    .map(|r| {
                                        if r.is_err() {
                                            tracing::error!("a job task panicked; its lease will expire and be rescued");
                                        }
                                    }),
                            );
                        }
                        metrics
                            .jobs_in_flight
                            .set(i64::try_from(tasks.len()).unwrap_or(i64::MAX));
                    }
                    Err(err) => {
                        metrics.database_errors.with_label_values(&["claim"]).inc();
                        ctx.health.set_database_up(false);
                        let delay = backoff.next();
                        tracing::warn!(%err, retry_in = ?delay, "claim failed");
                        tokio::select! {
                            _ = tokio::time::sleep(delay) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                }
            }
            // With every slot busy, only a finishing job (or shutdown) makes the next claim worthwhile.
            let has_free = tasks.len() < ctx.config.concurrency;
            tokio::select! {
                _ = shutdown.changed() => {}
                Some(done) = tasks.join_next(), if !tasks.is_empty() => log_join(done),
                wake = self.waker.wait_idle(ctx.config.poll_interval), if has_free => {
                    metrics.wakeups.with_label_values(&[wake.label()]).inc();
                    claim_due = true;
                }
            }
            metrics
                .jobs_in_flight
                .set(i64::try_from(tasks.len()).unwrap_or(i64::MAX));
        }
        // Out of the draws at once: notifications go to workers that will take them.
        self.waker.leave().await;
        drain(&ctx, &mut tasks).await;
        heartbeat.abort();
        rescuer.abort();
        breakers.abort();
        metrics.jobs_in_flight.set(0);
        tracing::info!(worker = %ctx.config.worker_id, "worker stopped");
    }
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        if !err.is_cancelled() {
            tracing::error!(%err, "job task failed");
        }
    }
}

/// Stops claiming, lets in-flight jobs finish until the drain timeout, then aborts the rest and
/// releases their leases so another worker starts them at once.
async fn drain(ctx: &Ctx, tasks: &mut JoinSet<()>) {
    let metrics = Metrics::get();
    metrics.draining.set(1);
    ctx.health.set_draining();
    tracing::info!(in_flight = tasks.len(), timeout = ?ctx.config.drain_timeout, "draining");
    let deadline = tokio::time::Instant::now() + ctx.config.drain_timeout;
    while !tasks.is_empty() {
        tokio::select! {
            done = tasks.join_next() => { if let Some(done) = done { log_join(done) } }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    // Taken before cancelling: a cancelled job sees "lease lost", drops its lease from `held` and would
    // never be released. Releasing a job that finished meanwhile is a no-op (the release is fenced).
    let leftover = ctx.held.all();
    // Stops analyses running on blocking threads too (aborting a task does not reach them).
    ctx.held.cancel_all();
    tasks.abort_all();
    while let Some(done) = tasks.join_next().await {
        log_join(done);
    }
    if leftover.is_empty() {
        return;
    }
    let release = tokio::time::timeout(Duration::from_secs(5), ctx.queue.release(&leftover));
    match release.await {
        Ok(Ok(ids)) => {
            metrics
                .jobs_abandoned
                .with_label_values(&["released"])
                .inc_by(ids.len() as u64);
            tracing::info!(jobs = ?ids, "released unfinished jobs to the queue");
        }
        Ok(Err(err)) => {
            metrics
                .database_errors
                .with_label_values(&["release"])
                .inc();
            tracing::warn!(%err, "could not release unfinished jobs; their leases will expire and be rescued");
        }
        Err(_) => tracing::warn!(
            "releasing unfinished jobs timed out; their leases will expire and be rescued"
        ),
    }
}

/// Members take turns rescuing expired leases, so the fleet rescues once per `rescue_interval` whatever
/// its size (a lone worker every `rescue_interval`; an expired lease waits about that long at most
/// while members agree on who listens, one member's period `members × rescue_interval` at worst).
async fn rescue_loop(ctx: Arc<Ctx>, fleet: fathom_queue::Fleet) {
    let metrics = Metrics::get();
    loop {
        let every = ctx.config.rescue_interval;
        tokio::time::sleep(fleet.until_turn(every, every)).await;
        match ctx.queue.rescue_expired(100).await {
            Ok(rescued) if !rescued.is_empty() => {
                metrics.rescued_jobs.inc_by(rescued.len() as u64);
                tracing::info!(jobs = ?rescued, "rescued expired leases");
            }
            Ok(_) => {}
            Err(err) => {
                metrics.database_errors.with_label_values(&["rescue"]).inc();
                tracing::debug!(%err, "rescue failed");
            }
        }
    }
}

/// Keeps the breaker gauges in step with the fleet's shared breakers (a read of a tiny table) while this
/// worker has work, and for [`fathom_queue::IDLE_TIMEOUT`] after. An idle worker reports no breakers
/// and reads nothing, so its store pool's connection closes (every 5 s would keep it open forever: one
/// connection per idle worker); the breakers matter to the jobs they defer, whose workers report them.
async fn breaker_metrics_loop(ctx: Arc<Ctx>) {
    let mut last_busy = Instant::now();
    let mut reported = true;
    loop {
        if !ctx.held.is_empty() {
            last_busy = Instant::now();
        }
        if last_busy.elapsed() < fathom_queue::IDLE_TIMEOUT {
            match ctx.breaker.all().await {
                Ok(all) => Metrics::get().set_breakers(&all),
                Err(err) => tracing::debug!(%err, "reading registry breakers failed"),
            }
            reported = true;
        } else if reported {
            Metrics::get().set_breakers(&[]);
            reported = false;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Capped exponential backoff with jitter (half to full delay).
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            current: base,
        }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let delay = self.current;
        self.current = (self.current * 2).min(self.cap);
        delay.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays[0] >= Duration::from_millis(50));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(1)));
        assert!(delays[7] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }

    #[test]
    fn worker_id_prefers_pod_name() {
        // Only the fallback shape is checked: POD_NAME is process-global and tests run in parallel.
        let id = worker_id();
        assert!(!id.is_empty());
        if std::env::var("POD_NAME").is_err() {
            assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        }
    }
}
