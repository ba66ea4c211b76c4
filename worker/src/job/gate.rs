//! What stands between a claimed job and its registry: the fleet's breaker for the host (run, probe, or
//! defer without charge) and the per-host concurrency slot; and what a registry failure does to both.

use std::time::Duration;

use fathom_analyzer::AnalyzeError;
use fathom_queue::{ClaimedJob, JobState};
use rand::Rng;
use tokio::sync::watch;

use super::breaker::Admission;
use super::limit::HostSlot;
use super::{Backoff, Ctx};
use crate::metrics::Metrics;

/// What [`admit`] decided.
pub(crate) enum Gate {
    /// Run the job, holding this slot.
    Go(HostSlot),
    /// The job was deferred (or its lease lost): nothing more to do.
    Done,
}

/// The resource name deferred jobs of `host` are parked under (see [`fathom_queue::Queue::resume`]).
pub(crate) fn resource(host: &str) -> String {
    format!("registry:{host}")
}

/// Asks the breaker whether the job may talk to `host`, then waits for a slot there. A breaker that cannot
/// be read (Postgres trouble) lets the job through: the job's own round trips will meet the same trouble.
pub(crate) async fn admit(
    ctx: &Ctx,
    job: &ClaimedJob,
    host: &str,
    lost: &watch::Receiver<bool>,
) -> Gate {
    match ctx.breaker.admit(host, &ctx.config.worker_id).await {
        Ok(Admission::Go) => {}
        Ok(Admission::Probe) => {
            tracing::info!(
                job = job.id(),
                host,
                "probing a registry whose breaker is open"
            );
        }
        Ok(Admission::Defer(wait)) => {
            let message = format!("registry {host} is failing; its breaker is open");
            defer(ctx, job, host, wait, "breaker_open", &message, lost).await;
            return Gate::Done;
        }
        Err(err) => tracing::warn!(%err, host, "registry breaker unreadable; running the job"),
    }
    let mut lost = lost.clone();
    tokio::select! {
        (slot, waited) = ctx.limits.acquire(host) => {
            if waited {
                Metrics::get().registry_slot_waits.inc();
            }
            Gate::Go(slot)
        }
        _ = lost.wait_for(|l| *l) => Gate::Done,
    }
}

/// The registry at `host` answered: close its breaker if it was not, and let its deferred jobs run now.
pub(crate) async fn answered(ctx: &Ctx, host: &str) {
    match ctx.breaker.answered(host).await {
        Ok(Some(previous)) if previous != "closed" => match ctx.queue.resume(&resource(host)).await
        {
            Ok(n) => tracing::info!(host, resumed = n, "registry is back; breaker closed"),
            Err(err) => {
                tracing::warn!(%err, host, "registry is back but its deferred jobs wait out their delay")
            }
        },
        Ok(_) => {}
        Err(err) => tracing::debug!(%err, host, "could not record the registry's answer"),
    }
}

/// For a registry failure worth retrying: a `Retry-After` pauses the host for the whole fleet, and a
/// failure that leaves the breaker open defers the job without charging the attempt. True when the job was
/// handled here; false when it fails the ordinary way (counted toward the breaker, attempt charged).
pub(crate) async fn defers(
    ctx: &Ctx,
    job: &ClaimedJob,
    host: Option<&str>,
    err: &AnalyzeError,
    lost: &watch::Receiver<bool>,
) -> bool {
    let Some(host) = host else { return false };
    if !is_registry_trouble(err) {
        return false;
    }
    let message = err.to_string();
    if let Some(wait) = err.retry_after() {
        return match ctx.breaker.pause(host, wait).await {
            Ok(left) => {
                defer(ctx, job, host, left, "rate_limited", &message, lost).await;
                true
            }
            Err(e) => {
                tracing::warn!(err = %e, host, "could not pause the registry's breaker");
                false
            }
        };
    }
    match ctx.breaker.failed(host).await {
        Ok((state, wait)) if state != "closed" => {
            let wait = wait.unwrap_or(ctx.breaker.config().probe_interval);
            defer(ctx, job, host, wait, "breaker_open", &message, lost).await;
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(err = %e, host, "could not count the registry failure");
            false
        }
    }
}

/// Failures that say the registry (not the image) is in trouble.
fn is_registry_trouble(err: &AnalyzeError) -> bool {
    matches!(
        err,
        AnalyzeError::Connect { .. }
            | AnalyzeError::Timeout { .. }
            | AnalyzeError::RegistryStatus { .. }
    ) && err.is_retryable()
}

/// Gives the job back uncharged until `wait` (plus up to one probe interval of jitter, so deferred jobs
/// do not all return in the same instant), retrying while Postgres is unreachable and the lease is ours.
async fn defer(
    ctx: &Ctx,
    job: &ClaimedJob,
    host: &str,
    wait: Duration,
    reason: &'static str,
    message: &str,
    lost: &watch::Receiver<bool>,
) {
    let metrics = Metrics::get();
    let spread = ctx.breaker.config().probe_interval;
    let delay = wait + spread.mul_f64(rand::rng().random_range(0.0..1.0));
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match ctx
            .queue
            .defer(job.lease, delay, &resource(host), reason, message)
            .await
        {
            Ok(outcome) => {
                if outcome.state == JobState::Dead {
                    // The time budget ran out while the registry stayed down (or kept rate limiting).
                    let label = if reason == "rate_limited" {
                        "rate_limited"
                    } else {
                        "registry_unavailable"
                    };
                    metrics
                        .jobs_failed
                        .with_label_values(&["dead", label])
                        .inc();
                    tracing::warn!(
                        job = job.id(),
                        host,
                        "time budget spent; job dead: {message}"
                    );
                } else {
                    metrics.jobs_deferred.with_label_values(&[reason]).inc();
                    tracing::info!(job = job.id(), host, reason, retry_in = ?delay, "job deferred without charge");
                }
                return;
            }
            Err(fathom_queue::Error::LeaseLost { .. }) => return,
            Err(e) if e.is_connection() && !*lost.borrow() => {
                metrics.database_errors.with_label_values(&["fail"]).inc();
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                tracing::warn!(job = job.id(), err = %e, "could not defer the job; its lease will expire");
                return;
            }
        }
    }
}
