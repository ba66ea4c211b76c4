//! The leases this worker holds, and the heartbeat that keeps them: every `lease_ttl / 3` one statement
//! extends all of them. A lease the queue reports lost, or one whose expiry passed while Postgres could
//! not be reached, aborts its job: another worker may own it by now, and the fenced completion would
//! reject our result anyway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fathom_queue::Lease;
use tokio::sync::watch;

use super::Ctx;
use crate::metrics::Metrics;

struct Entry {
    lease: Lease,
    /// Local estimate of the lease's expiry: the send time of the last successful heartbeat + TTL.
    expires: Instant,
    lost: watch::Sender<bool>,
}

/// Leases held by this process.
#[derive(Default)]
pub struct Held {
    entries: Mutex<HashMap<i64, Entry>>,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts/removes).
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking a freshly claimed lease; the receiver turns true when the lease is lost.
    pub fn insert(&self, lease: Lease, ttl: Duration) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        self.lock().insert(
            lease.job_id,
            Entry {
                lease,
                expires: Instant::now() + ttl,
                lost: tx,
            },
        );
        rx
    }

    /// Stops tracking a job (completed, failed, or abandoned).
    pub fn remove(&self, job_id: i64) {
        self.lock().remove(&job_id);
    }

    /// Every held lease.
    pub fn all(&self) -> Vec<Lease> {
        self.lock().values().map(|e| e.lease).collect()
    }

    /// Number of held leases.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells every job to stop (shutdown) while keeping the leases for release.
    pub fn cancel_all(&self) {
        for e in self.lock().values() {
            let _ = e.lost.send(true);
        }
    }

    fn extended(&self, ids: &[i64], expires: Instant) {
        let mut entries = self.lock();
        for id in ids {
            if let Some(e) = entries.get_mut(id) {
                e.expires = expires;
            }
        }
    }

    /// Signals the jobs to stop and forgets their leases.
    fn lose(&self, ids: &[i64]) -> usize {
        let mut entries = self.lock();
        let mut n = 0;
        for id in ids {
            if let Some(e) = entries.remove(id) {
                let _ = e.lost.send(true);
                n += 1;
            }
        }
        n
    }

    fn expired(&self, now: Instant) -> Vec<i64> {
        self.lock()
            .values()
            .filter(|e| e.expires <= now)
            .map(|e| e.lease.job_id)
            .collect()
    }
}

/// Heartbeats every held lease every `lease_ttl / 3`, forever (aborted at shutdown).
pub(crate) async fn heartbeat_loop(ctx: Arc<Ctx>) {
    let metrics = Metrics::get();
    let period = (ctx.config.lease_ttl / 3).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let leases = ctx.held.all();
        if leases.is_empty() {
            continue;
        }
        let sent = Instant::now();
        let outcome =
            tokio::time::timeout(period, ctx.queue.heartbeat(&leases, ctx.config.lease_ttl));
        match outcome.await {
            Ok(Ok(outcome)) => {
                ctx.health.set_database_up(true);
                ctx.held
                    .extended(&outcome.extended, sent + ctx.config.lease_ttl);
                let lost = ctx.held.lose(&outcome.lost);
                if lost > 0 {
                    tracing::warn!(jobs = ?outcome.lost, "leases lost; abandoning those jobs");
                }
            }
            Ok(Err(err)) => {
                metrics
                    .database_errors
                    .with_label_values(&["heartbeat"])
                    .inc();
                ctx.health.set_database_up(false);
                tracing::warn!(%err, "heartbeat failed");
            }
            Err(_) => {
                metrics
                    .database_errors
                    .with_label_values(&["heartbeat"])
                    .inc();
                tracing::warn!("heartbeat timed out");
            }
        }
        // Keep leases honest: past its expiry a lease may already belong to someone else.
        let expired = ctx.held.expired(Instant::now());
        if !expired.is_empty() {
            ctx.held.lose(&expired);
            tracing::warn!(jobs = ?expired, "leases expired while Postgres was unreachable; abandoning those jobs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_and_expired_leases_signal_their_jobs() {
        let held = Held::default();
        let a = Lease {
            job_id: 1,
            token: 10,
        };
        let b = Lease {
            job_id: 2,
            token: 20,
        };
        let rx_a = held.insert(a, Duration::from_secs(30));
        let rx_b = held.insert(b, Duration::ZERO);
        assert_eq!(held.len(), 2);
        assert_eq!(held.expired(Instant::now()), vec![2]);
        held.lose(&[2]);
        assert!(*rx_b.borrow());
        assert!(!*rx_a.borrow());
        held.extended(&[1], Instant::now() + Duration::from_secs(60));
        assert!(held.expired(Instant::now()).is_empty());
        assert_eq!(held.all(), vec![a]);
        held.remove(1);
        assert!(held.is_empty());
    }
}
