//! One job: resolve the image, reuse an earlier analysis of the same manifest or analyze it against the
//! layer cache, then store the result and complete the job in one transaction (fenced by the lease).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fathom_notify::data::ImageAnalyzed;
use fathom_notify::Event;
use fathom_queue::{ClaimedJob, Failure, JobState};
use sqlx::PgConnection;
use tokio::sync::watch;

use super::breaker::host_of;
use super::{gate, Backoff, Ctx};
use crate::metrics::Metrics;
use crate::store::{self, StoreError, Timings};
use fathom_analyzer::analyze::ImageAnalysis;
use fathom_analyzer::cache::WriteOnly;
use fathom_analyzer::source::Platform;
use fathom_analyzer::{AnalyzeError, ImageSource};

/// Why a job did not complete.
enum Stop {
    /// The image failed to analyze; the queue decides retry/fail/dead.
    Analyze(AnalyzeError),
    /// The job's payload is not an analysis request.
    BadPayload(String),
    /// Our lease is gone: someone else owns the job now.
    LeaseLost,
    /// The store failed for a reason other than connectivity.
    Store(StoreError),
}

impl From<AnalyzeError> for Stop {
    fn from(e: AnalyzeError) -> Self {
        Stop::Analyze(e)
    }
}

/// How a completed job was answered.
enum Done {
    Analyzed,
    Reused,
}

pub(crate) async fn run(ctx: Arc<Ctx>, job: ClaimedJob, mut lost: watch::Receiver<bool>) {
    let metrics = Metrics::get();
    let started = Instant::now();
    let job_id = job.id();
    let host = job
        .payload
        .get("reference")
        .and_then(|r| r.as_str())
        .and_then(host_of);
    // Held until the job ends: the per-host concurrency slot.
    let mut _slot = None;
    if let Some(host) = &host {
        match gate::admit(&ctx, &job, host, &lost).await {
            gate::Gate::Go(slot) => _slot = Some(slot),
            gate::Gate::Done => {
                ctx.held.remove(job_id);
                return;
            }
        }
    }
    let outcome = tokio::select! {
        outcome = work(&ctx, &job, host.as_deref(), started, lost.clone()) => outcome,
        _ = lost.wait_for(|l| *l) => Err(Stop::LeaseLost),
    };
    match outcome {
        Ok(done) => {
            let label = match done {
                Done::Analyzed => "analyzed",
                Done::Reused => "reused",
            };
            metrics.jobs_completed.with_label_values(&[label]).inc();
            metrics
                .analysis_duration
                .observe(started.elapsed().as_secs_f64());
            tracing::info!(job = job_id, outcome = label, elapsed = ?started.elapsed(), "job completed");
        }
        Err(Stop::LeaseLost) => {
            metrics
                .jobs_abandoned
                .with_label_values(&["lease_lost"])
                .inc();
            tracing::warn!(job = job_id, "lease lost; result dropped");
        }
        Err(Stop::Analyze(err)) if gate::defers(&ctx, &job, host.as_deref(), &err, &lost).await => {
        }
        Err(Stop::Analyze(err)) => {
            let failure = if err.is_retryable() {
                Failure::Retryable {
                    retry_after: err.retry_after(),
                }
            } else {
                Failure::Permanent
            };
            fail(&ctx, &job, failure, err.reason(), &err.to_string(), &lost).await;
        }
        Err(Stop::BadPayload(message)) => {
            fail(
                &ctx,
                &job,
                Failure::Permanent,
                "invalid_job",
                &message,
                &lost,
            )
            .await;
        }
        Err(Stop::Store(err)) => {
            let failure = Failure::Retryable { retry_after: None };
            fail(&ctx, &job, failure, "store", &err.to_string(), &lost).await;
        }
    }
    ctx.held.remove(job_id);
}

async fn work(
    ctx: &Ctx,
    job: &ClaimedJob,
    host: Option<&str>,
    started: Instant,
    lost: watch::Receiver<bool>,
) -> Result<Done, Stop> {
    let reference = job
        .payload
        .get("reference")
        .and_then(|r| r.as_str())
        .ok_or_else(|| {
            Stop::BadPayload(format!(
                "job {} has no \"reference\" string in its payload: {}",
                job.id(),
                job.payload
            ))
        })?
        .to_string();
    // A forced job (API `force: true`) re-analyzes: no short cut through a stored image or cached layers.
    let force = job.payload.get("force").and_then(|f| f.as_bool()) == Some(true);
    let source: ImageSource = reference.parse()?;
    // A job for one platform of an index (the webhook queues each platform it checks) picks that one.
    let image = match &job.platform {
        Some(platform) => {
            let platform: Platform = platform.parse()?;
            ctx.analyzer.resolve_platform(&source, &platform).await?
        }
        None => ctx.analyzer.resolve(&source).await?,
    };
    if let Some(host) = host {
        gate::answered(ctx, host).await;
    }
    let digest = image.info.manifest_digest.clone();
    let key = ctx.analyzer.cache_key().to_string();

    let mut retry = DbRetry::new();
    let analyzed = !force
        && loop {
            match ctx.store.is_analyzed(&digest, &key).await {
                Ok(v) => break v,
                Err(e) => retry.wait(e, &lost).await?,
            }
        };
    if analyzed {
        let write = Write::Reference {
            digest: &digest,
            reference: &reference,
        };
        commit(ctx, job, &lost, &write).await?;
        return Ok(Done::Reused);
    }

    let analysis = match analyze_detached(ctx, image.clone(), force, lost.clone()).await? {
        Ok(a) => a,
        Err(err) => {
            if !err.is_retryable() {
                record_failure(ctx, &image.info, &reference, &err, &key).await;
            }
            return Err(Stop::Analyze(err));
        }
    };
    count_layers(&analysis);
    for warning in &analysis.warnings {
        tracing::warn!(job = job.id(), "{warning}");
    }
    let timings = Timings {
        queue_wait: job.queue_wait(),
        analysis: started.elapsed(),
    };
    let write = Write::Analysis {
        analysis: &analysis,
        reference: &reference,
        timings,
    };
    commit(ctx, job, &lost, &write).await?;
    Ok(Done::Analyzed)
}

/// Runs the analysis as a task of its own, so a panic in the engine fails this job instead of the worker.
/// The analysis stops when the lease is lost (or the worker drains), dropping its future.
async fn analyze_detached(
    ctx: &Ctx,
    image: fathom_analyzer::source::ResolvedImage,
    force: bool,
    mut lost: watch::Receiver<bool>,
) -> Result<Result<ImageAnalysis, AnalyzeError>, Stop> {
    let analyzer = ctx.analyzer.clone();
    let store = ctx.store.clone();
    let joined = tokio::spawn(async move {
        tokio::select! {
            result = async {
                if force {
                    analyzer.analyze_resolved(&image, &WriteOnly(store)).await
                } else {
                    analyzer.analyze_resolved(&image, &store).await
                }
            } => Some(result),
            _ = lost.wait_for(|l| *l) => None,
        }
    })
    .await;
    match joined {
        Ok(Some(result)) => Ok(result),
        Ok(None) => Err(Stop::LeaseLost),
        Err(e) => Ok(Err(AnalyzeError::Internal(format!("analysis task: {e}")))),
    }
}

fn count_layers(analysis: &ImageAnalysis) {
    let m = Metrics::get();
    let s = &analysis.stats;
    m.layer_cache_hits.inc_by(s.cache_hits as u64);
    m.layer_cache_misses.inc_by(s.cache_misses as u64);
    m.fetched_bytes.inc_by(s.bytes_fetched);
    m.inflated_bytes.inc_by(s.bytes_inflated);
}

/// What a completed job writes next to its completion.
enum Write<'a> {
    /// The manifest was analyzed before: only record the reference.
    Reference { digest: &'a str, reference: &'a str },
    /// A new analysis.
    Analysis {
        analysis: &'a ImageAnalysis,
        reference: &'a str,
        timings: Timings,
    },
}

impl Write<'_> {
    /// Compressed bytes the job downloaded: recorded with the completion, next to the submitter's
    /// estimate (a reused analysis fetched nothing).
    fn fetched_bytes(&self) -> u64 {
        match self {
            Write::Reference { .. } => 0,
            Write::Analysis { analysis, .. } => analysis.stats.bytes_fetched,
        }
    }

    /// Stores the result and writes its `dev.fathom.image.analyzed` event on the same connection, so the
    /// event commits exactly when the result and the job's completion do.
    async fn apply(&self, conn: &mut PgConnection) -> store::Result<()> {
        let (digest, reference, reused) = match self {
            Write::Reference { digest, reference } => {
                store::add_reference_in(conn, digest, reference).await?;
                (*digest, *reference, true)
            }
            Write::Analysis {
                analysis,
                reference,
                timings,
            } => {
                store::save_analysis_in(conn, analysis, reference, *timings).await?;
                (analysis.image.manifest_digest.as_str(), *reference, false)
            }
        };
        let event = ImageAnalyzed {
            digest: digest.to_string(),
            reference: reference.to_string(),
            references: store::references_in(conn, digest).await?,
            reused,
        };
        fathom_notify::write(conn, &event.event()).await?;
        Ok(())
    }
}

/// Runs `write` and the fenced completion in one transaction, retrying while Postgres is unreachable
/// (the result is kept in memory meanwhile) as long as the lease is still ours.
async fn commit(
    ctx: &Ctx,
    job: &ClaimedJob,
    lost: &watch::Receiver<bool>,
    write: &Write<'_>,
) -> Result<(), Stop> {
    let mut retry = DbRetry::new();
    loop {
        match try_commit(ctx, job, write).await {
            Ok(true) => return Ok(()),
            Ok(false) => return Err(Stop::LeaseLost),
            Err(e) => retry.wait(e, lost).await?,
        }
    }
}

/// One attempt at the transaction; `Ok(false)` when the lease was lost (everything rolled back).
async fn try_commit(ctx: &Ctx, job: &ClaimedJob, write: &Write<'_>) -> store::Result<bool> {
    let mut tx = ctx.store.pool().begin().await?;
    write.apply(&mut tx).await?;
    match fathom_queue::tx::complete_fetched_in(&mut tx, job.lease, write.fetched_bytes()).await {
        Ok(()) => {}
        Err(fathom_queue::Error::LeaseLost { .. }) => return Ok(false),
        Err(e) => return Err(StoreError::from(e)),
    }
    tx.commit().await?;
    Ok(true)
}

/// Backoff for store operations while Postgres is unreachable and the lease is still ours.
struct DbRetry {
    backoff: Backoff,
}

impl DbRetry {
    fn new() -> Self {
        DbRetry {
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// Sleeps before the next try, or says why not to try again.
    async fn wait(&mut self, e: StoreError, lost: &watch::Receiver<bool>) -> Result<(), Stop> {
        if !e.is_connection() {
            return Err(Stop::Store(e));
        }
        Metrics::get()
            .database_errors
            .with_label_values(&["store"])
            .inc();
        if *lost.borrow() {
            return Err(Stop::LeaseLost);
        }
        let delay = self.backoff.next();
        tracing::warn!(err = %e, retry_in = ?delay, "results store unreachable");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// Best effort: the job's own error is what matters; the image row helps `fathom status DIGEST`.
async fn record_failure(
    ctx: &Ctx,
    image: &fathom_analyzer::source::ImageInfo,
    reference: &str,
    err: &AnalyzeError,
    key: &str,
) {
    let message = err.to_string();
    let result = async {
        let mut tx = ctx.store.pool().begin().await?;
        store::save_failure_in(&mut tx, image, reference, &message, key).await?;
        tx.commit().await?;
        Ok::<_, StoreError>(())
    };
    if let Err(e) = result.await {
        tracing::warn!(err = %e, "could not record the failed image");
    }
}

/// Records a failed attempt, retrying while Postgres is unreachable and the lease is ours.
async fn fail(
    ctx: &Ctx,
    job: &ClaimedJob,
    failure: Failure,
    reason: &str,
    message: &str,
    lost: &watch::Receiver<bool>,
) {
    let metrics = Metrics::get();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match ctx
            .queue
            .fail_as(job.lease, failure, Some(reason), message)
            .await
        {
            Ok(outcome) => {
                let label = match outcome.state {
                    JobState::Queued => "retry",
                    JobState::Dead => "dead",
                    _ => "failed",
                };
                metrics
                    .jobs_failed
                    .with_label_values(&[label, reason])
                    .inc();
                tracing::warn!(job = job.id(), outcome = label, reason, "{message}");
                return;
            }
            Err(fathom_queue::Error::LeaseLost { .. }) => {
                metrics
                    .jobs_abandoned
                    .with_label_values(&["lease_lost"])
                    .inc();
                return;
            }
            Err(e) if e.is_connection() && !*lost.borrow() => {
                metrics.database_errors.with_label_values(&["fail"]).inc();
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                metrics.database_errors.with_label_values(&["fail"]).inc();
                tracing::warn!(job = job.id(), err = %e, "could not record the failure; the lease will expire and the job be retried");
                return;
            }
        }
    }
}
