//! The dispatcher: one core at a time (a Postgres advisory lock held on a connection of its own) fans the
//! outbox out into deliveries and runs one task per endpoint, so a slow or dead endpoint holds back only
//! itself. It wakes when a transaction writing events commits (LISTEN on [`CHANNEL`]) and polls besides.
//!
//! Delivery is at-least-once: a delivery is marked delivered only after its 2xx, so a core killed
//! mid-request leaves it pending and the next leader sends it again (receivers drop duplicates by the
//! CloudEvents `id`). An endpoint that stops answering (no answer, 5xx, 408, 429, a redirect) is probed by
//! one delivery at a time, backing off up to `probe_interval`; its first 2xx makes everything owed to
//! it due at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::backoff;
use crate::config::NotificationsConfig;
use crate::deliveries::{self, CHANNEL};
use crate::envelope::CloudEvent;
use crate::metrics::NotifyMetrics;
use crate::send::{Outcome, Target};

/// Advisory lock key of the dispatching core ("fathomNt" as bytes).
pub const DISPATCH_LOCK: i64 = 0x6661_7468_6f6d_4e74;

/// Events fanned out per statement.
const FAN_OUT_BATCH: i64 = 1000;

/// Rows deleted per pruning statement.
const PRUNE_BATCH: i64 = 1000;

/// How often every core reads the owed counts into its gauges.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// The dispatcher of one core.
pub struct Dispatcher {
    pool: PgPool,
    config: NotificationsConfig,
    targets: Vec<Arc<Target>>,
    metrics: NotifyMetrics,
}

impl Dispatcher {
    /// A dispatcher over `pool` for `targets` (built from `config.endpoints`).
    pub fn new(
        pool: PgPool,
        config: NotificationsConfig,
        targets: Vec<Target>,
        metrics: NotifyMetrics,
    ) -> Self {
        Dispatcher {
            pool,
            config,
            targets: targets.into_iter().map(Arc::new).collect(),
            metrics,
        }
    }

    /// Runs until `shutdown` turns true. Every core refreshes the gauges; the one holding the lock
    /// dispatches.
    pub async fn run(self, database_url: String, mut shutdown: watch::Receiver<bool>) {
        let names: Vec<String> = self.targets.iter().map(|t| t.name().to_string()).collect();
        let mut lock: Option<PgConnection> = None;
        let mut leading = false;
        let mut listener: Option<PgListener> = None;
        let mut workers: Vec<(Arc<Notify>, JoinHandle<()>)> = Vec::new();
        let mut last_gauges: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        loop {
            leading = self.lead(&database_url, &mut lock, leading).await;
            self.metrics.leading(leading);
            if leading {
                if listener.is_none() {
                    listener = listen(&database_url).await;
                }
                if workers.is_empty() && !self.targets.is_empty() {
                    workers = self
                        .targets
                        .iter()
                        .map(|t| self.spawn_worker(Arc::clone(t)))
                        .collect();
                }
                self.fan_out().await;
                match deliveries::expire(&self.pool, self.config.retry_window).await {
                    Ok(dead) => {
                        for endpoint in dead {
                            self.metrics.outcome(&endpoint, "dead");
                        }
                    }
                    Err(e) => tracing::warn!("notifications: expiring deliveries: {e}"),
                }
                for (poke, _) in &workers {
                    poke.notify_one();
                }
                if !self.config.prune_interval.is_zero()
                    && last_prune.is_none_or(|t| t.elapsed() >= self.config.prune_interval)
                {
                    last_prune = Some(Instant::now());
                    match deliveries::prune(&self.pool, self.config.retention, PRUNE_BATCH).await {
                        Ok((0, 0)) => {}
                        Ok((d, e)) => tracing::info!(
                            deliveries = d,
                            events = e,
                            "notifications: pruned past retention"
                        ),
                        Err(e) => tracing::warn!("notifications: pruning: {e}"),
                    }
                }
            } else {
                // Not (or no longer) leading: the new leader's workers must not race ours.
                for (_, task) in workers.drain(..) {
                    task.abort();
                }
                listener = None;
            }
            if last_gauges.is_none_or(|t| t.elapsed() >= GAUGE_INTERVAL) {
                last_gauges = Some(Instant::now());
                match deliveries::owed(&self.pool).await {
                    Ok((owed, n, oldest)) => self.metrics.owed(&names, &owed, n, oldest),
                    Err(e) => tracing::warn!(
                        "notifications: reading what is owed (has `fathom migrate` run?): {e}"
                    ),
                }
            }
            let woke = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(drop),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = woke => if let Err(e) = r {
                    tracing::warn!("notifications: listener: {e}; polling until it reconnects");
                    listener = None;
                },
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        for (_, task) in workers {
            task.abort();
        }
        self.metrics.leading(false);
    }

    /// Keeps or takes the lock; true while this core leads.
    async fn lead(&self, url: &str, lock: &mut Option<PgConnection>, leading: bool) -> bool {
        if let (true, Some(conn)) = (leading, lock.as_mut()) {
            let held: sqlx::Result<bool> = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
                 AND granted AND ((classid::int8 << 32) | objid::int8) = $1)",
            )
            .bind(DISPATCH_LOCK)
            .fetch_one(&mut *conn)
            .await;
            if matches!(held, Ok(true)) {
                return true;
            }
            tracing::warn!(
                "notifications: lost the dispatcher's session; another core may take over"
            );
            *lock = None;
        }
        let conn = match lock {
            Some(c) => c,
            None => match PgConnection::connect(url).await {
                Ok(c) => lock.insert(c),
                Err(e) => {
                    tracing::warn!("notifications: connecting for the dispatcher lock: {e}");
                    return false;
                }
            },
        };
        match sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
            .bind(DISPATCH_LOCK)
            .fetch_one(&mut *conn)
            .await
        {
            Ok(true) => {
                tracing::info!("notifications: this core dispatches");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!("notifications: taking the dispatcher lock: {e}");
                *lock = None;
                false
            }
        }
    }

    /// Fans out everything not yet fanned out, a batch at a time.
    async fn fan_out(&self) {
        let endpoints: Vec<_> = self.targets.iter().map(|t| t.config.clone()).collect();
        loop {
            match deliveries::fan_out(&self.pool, &endpoints, FAN_OUT_BATCH).await {
                Ok(types) => {
                    self.metrics.written(&types);
                    if (types.len() as i64) < FAN_OUT_BATCH {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "notifications: fanning out events (has `fathom migrate` run?): {e}"
                    );
                    return;
                }
            }
        }
    }

    fn spawn_worker(&self, target: Arc<Target>) -> (Arc<Notify>, JoinHandle<()>) {
        let poke = Arc::new(Notify::new());
        let worker = Worker {
            pool: self.pool.clone(),
            config: self.config.clone(),
            target,
            metrics: self.metrics.clone(),
            poke: Arc::clone(&poke),
        };
        (poke, tokio::spawn(worker.run()))
    }
}

/// A listener on [`CHANNEL`], or None (the dispatcher polls until the next try).
async fn listen(url: &str) -> Option<PgListener> {
    let mut listener = match PgListener::connect(url).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("notifications: connecting the listener: {e}");
            return None;
        }
    };
    match listener.listen(CHANNEL).await {
        Ok(()) => Some(listener),
        Err(e) => {
            tracing::warn!("notifications: LISTEN {CHANNEL}: {e}");
            None
        }
    }
}

/// One endpoint's delivery loop.
struct Worker {
    pool: PgPool,
    config: NotificationsConfig,
    target: Arc<Target>,
    metrics: NotifyMetrics,
    poke: Arc<Notify>,
}

impl Worker {
    async fn run(self) {
        let name = self.target.name().to_string();
        // Consecutive rounds in which the endpoint looked down, and when to probe it next.
        let mut down: u32 = 0;
        let mut hold_until: Option<Instant> = None;
        loop {
            if let Some(until) = hold_until.take() {
                tokio::time::sleep_until(until.into()).await;
            }
            let limit = if down > 0 {
                1
            } else {
                self.config.concurrency as i64
            };
            let due = match deliveries::due_heads(&self.pool, &name, limit).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(endpoint = %name, "notifications: reading due deliveries: {e}");
                    tokio::time::sleep(self.config.poll_interval).await;
                    continue;
                }
            };
            if due.is_empty() {
                let wait = match deliveries::next_due_in(&self.pool, &name).await {
                    Ok(Some(secs)) => {
                        Duration::from_secs_f64(secs).min(self.config.poll_interval * 5)
                    }
                    _ => self.config.poll_interval * 5,
                };
                tokio::select! {
                    _ = self.poke.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            let target = &self.target;
            let source = self.config.source.as_str();
            let answers: Vec<_> = stream::iter(due)
                .map(|d| async move {
                    let event = CloudEvent::new(
                        &d.id,
                        source,
                        &d.kind,
                        &d.subject,
                        &d.time,
                        d.data.clone(),
                    );
                    let answer = target.send(&event).await;
                    (d, answer.outcome)
                })
                .buffer_unordered(self.config.concurrency)
                .collect()
                .await;
            let mut delivered = Vec::new();
            let mut looked_down = false;
            for (d, outcome) in answers {
                match outcome {
                    Outcome::Delivered { status } => {
                        delivered.push((d.delivery, i32::from(status)))
                    }
                    Outcome::Failed {
                        status,
                        error,
                        endpoint_down,
                    } => {
                        looked_down |= endpoint_down;
                        let failures = u32::try_from(d.attempts).unwrap_or(0).saturating_add(1);
                        let wait = backoff::delay(
                            failures,
                            self.config.backoff_base,
                            self.config.backoff_cap,
                            backoff::jitter(),
                        );
                        let died = deliveries::failed(
                            &self.pool,
                            d.delivery,
                            status.map(i32::from),
                            &error,
                            wait,
                            self.config.retry_window,
                        )
                        .await;
                        let outcome = match died {
                            Ok(true) => "dead",
                            Ok(false) => "failed",
                            Err(e) => {
                                tracing::warn!(endpoint = %name, "notifications: recording a failure: {e}");
                                "failed"
                            }
                        };
                        self.metrics.outcome(&name, outcome);
                        tracing::warn!(
                            endpoint = %name, event = %d.id, kind = %d.kind, attempt = failures,
                            retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())),
                            "notification not delivered: {error}"
                        );
                    }
                }
            }
            if !delivered.is_empty() {
                match deliveries::delivered(&self.pool, &delivered).await {
                    Ok(latencies) => {
                        for _ in &latencies {
                            self.metrics.outcome(&name, "delivered");
                        }
                        self.metrics.latencies(&name, &latencies);
                    }
                    // Sent but not recorded: they stay pending and go out again (at-least-once).
                    Err(e) => {
                        tracing::warn!(endpoint = %name, "notifications: recording deliveries: {e}")
                    }
                }
                if down > 0 {
                    tracing::info!(endpoint = %name, "notifications: endpoint answers again; sending what it is owed");
                    if let Err(e) = deliveries::release(&self.pool, &name).await {
                        tracing::warn!(endpoint = %name, "notifications: releasing owed deliveries: {e}");
                    }
                }
                down = 0;
            } else if looked_down {
                down = down.saturating_add(1);
                let wait = backoff::delay(
                    down,
                    self.config.backoff_base,
                    self.config.probe_interval,
                    backoff::jitter(),
                );
                hold_until = Some(Instant::now() + wait);
            }
        }
    }
}
