//! The per-registry concurrency limit: at most `registry.max_concurrent_per_host` jobs talk to one registry
//! host at once, fleet-wide, each process taking an even share of it.
//!
//! Why a share rather than a Postgres semaphore: the fleet already knows its size (the listening members
//! of [`fathom_queue::Fleet`]), so each of `n` processes allowing `limit / n` jobs per host bounds the
//! fleet at `limit` with no round trip and no slot leases to expire when a worker dies. Each process keeps
//! at least one slot (a fleet larger than the limit allows one job per process per host), and while
//! membership changes the shares adjust on the next acquire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fathom_queue::Fleet;
use tokio::sync::Notify;

/// Jobs in flight per registry host in this process, bounded by the fleet-wide limit's share.
#[derive(Debug, Default)]
pub struct HostLimits {
    limit: usize,
    fleet: Fleet,
    busy: Mutex<HashMap<String, usize>>,
    freed: Notify,
}

/// A slot for one job at one host, given back when dropped.
#[derive(Debug)]
pub struct HostSlot {
    limits: Arc<HostLimits>,
    host: String,
}

impl HostLimits {
    /// At most `limit` jobs per host across `fleet` (0: no limit).
    pub fn new(limit: usize, fleet: Fleet) -> Arc<HostLimits> {
        Arc::new(HostLimits {
            limit,
            fleet,
            ..Default::default()
        })
    }

    /// This process's share of the fleet-wide limit (usize::MAX when unlimited).
    pub fn share(&self) -> usize {
        if self.limit == 0 {
            return usize::MAX;
        }
        (self.limit / self.fleet.size()).max(1)
    }

    /// Waits for a slot at `host`; whether it had to wait.
    pub async fn acquire(self: &Arc<Self>, host: &str) -> (HostSlot, bool) {
        let mut waited = false;
        loop {
            let notified = self.freed.notified();
            {
                let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
                let n = busy.entry(host.to_string()).or_default();
                if *n < self.share() {
                    *n += 1;
                    let slot = HostSlot {
                        limits: Arc::clone(self),
                        host: host.to_string(),
                    };
                    return (slot, waited);
                }
            }
            waited = true;
            // The fleet may have shrunk meanwhile (a larger share): look again now and then.
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }

    /// Jobs holding a slot at `host` now.
    pub fn busy(&self, host: &str) -> usize {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        busy.get(host).copied().unwrap_or(0)
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let mut busy = self.limits.busy.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = busy.get_mut(&self.host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                busy.remove(&self.host);
            }
        }
        drop(busy);
        self.limits.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_per_host_are_bounded_and_given_back() {
        let limits = HostLimits::new(2, Fleet::default());
        let (a, waited) = limits.acquire("r.example").await;
        assert!(!waited);
        let (_b, _) = limits.acquire("r.example").await;
        let (_other, waited) = limits.acquire("s.example").await;
        assert!(!waited, "another host has its own slots");
        assert_eq!(limits.busy("r.example"), 2);
        let third = tokio::spawn({
            let limits = Arc::clone(&limits);
            async move { limits.acquire("r.example").await.1 }
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(a);
        assert!(third.await.unwrap(), "the third job waited for a slot");
    }

    #[test]
    fn zero_means_unlimited() {
        assert_eq!(HostLimits::new(0, Fleet::default()).share(), usize::MAX);
        assert_eq!(HostLimits::new(3, Fleet::default()).share(), 3);
    }
}
