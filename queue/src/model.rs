//! The queue's vocabulary: jobs to enqueue, claimed jobs and their leases, outcomes and statistics.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Lifecycle of a job. `queued → running → succeeded | failed | dead`, `running → queued` on retry,
/// release or rescue, `queued → cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting to be claimed (possibly not before `run_at`).
    Queued,
    /// Claimed by a worker holding a lease.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed with a permanent error; will not be retried.
    Failed,
    /// Failed on every allowed attempt; kept with its last error.
    Dead,
    /// Cancelled while queued.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The name stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a `state` column value.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// Whether the job will never run again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// What the job is (`analyze`); workers claim by kind.
    pub kind: String,
    /// Arguments (image reference, options).
    pub payload: serde_json::Value,
    /// While a job with the same kind and key is queued or running, enqueueing returns that job instead.
    pub dedup_key: Option<String>,
    /// Lower runs first; 0 is the default.
    pub priority: i16,
    /// Not claimable before now + delay (measured on the database server's clock).
    pub delay: Duration,
    /// Attempts before the job goes `dead`.
    pub max_attempts: i32,
    /// The platform (`linux/arm64`) to analyze from a multi-platform index; `None`: the worker's own.
    pub platform: Option<String>,
    /// Estimated work: compressed bytes of the image's layers not in the layer cache, when the submitter
    /// had the manifest at hand (`Some(0)`: everything cached). `None` counts as the recent median.
    pub work_bytes: Option<i64>,
}

impl NewJob {
    /// A job of `kind` with `payload`, default priority, no delay, 5 attempts, no dedup key, the worker's
    /// platform.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            payload,
            dedup_key: None,
            priority: 0,
            delay: Duration::ZERO,
            max_attempts: 5,
            platform: None,
            work_bytes: None,
        }
    }

    /// Records the estimated work (uncached compressed layer bytes; negative values count as 0).
    pub fn work_bytes(mut self, bytes: i64) -> Self {
        self.work_bytes = Some(bytes.max(0));
        self
    }

    /// Asks for one platform of a multi-platform index instead of the worker's configured one.
    pub fn platform(mut self, platform: impl Into<String>) -> Self {
        self.platform = Some(platform.into());
        self
    }

    /// Sets the dedup key.
    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// Sets the priority (lower runs first).
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Delays the first run.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Sets the number of attempts before the job goes dead (at least 1).
    pub fn max_attempts(mut self, attempts: i32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}

/// The outcome of enqueueing one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueued {
    /// The job's id (an existing live job's id when deduplicated).
    pub id: i64,
    /// False when a live job with the same dedup key already existed.
    pub created: bool,
}

/// Proof of ownership of a running job: its id and the fencing token handed out by the claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub job_id: i64,
    /// Fencing token; changes on every claim, cleared on rescue.
    pub token: i64,
}

/// A job handed to a worker by [`crate::Queue::claim`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedJob {
    /// The lease to present to heartbeat/complete/fail/release.
    pub lease: Lease,
    /// Job kind.
    pub kind: String,
    /// Job arguments.
    pub payload: serde_json::Value,
    /// The platform asked for ([`NewJob::platform`]), if any.
    pub platform: Option<String>,
    /// Priority it was claimed at.
    pub priority: i16,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// When the lease runs out unless extended by a heartbeat.
    pub lease_expires_at: SystemTime,
    /// When the job was enqueued.
    pub enqueued_at: SystemTime,
    /// When this claim happened (server clock).
    pub claimed_at: SystemTime,
}

impl ClaimedJob {
    /// The job's id.
    pub fn id(&self) -> i64 {
        self.lease.job_id
    }

    /// Time between enqueue and this claim.
    pub fn queue_wait(&self) -> Duration {
        self.claimed_at
            .duration_since(self.enqueued_at)
            .unwrap_or_default()
    }
}

/// How a job failed, decided where the error was born.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt: capped exponential backoff with jitter, at least `retry_after` if given.
    Retryable {
        /// A delay the remote side asked for (HTTP 429/503 `Retry-After`).
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time: the job goes `failed` at once.
    Permanent,
}

/// What [`crate::Queue::fail`] did with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailOutcome {
    /// `queued` (will retry), `failed` or `dead`.
    pub state: JobState,
    /// When a retry becomes claimable.
    pub run_at: SystemTime,
}

/// What a heartbeat found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// Jobs whose lease was extended.
    pub extended: Vec<i64>,
    /// Jobs whose lease is no longer ours: stop working on them and drop their results.
    pub lost: Vec<i64>,
}

/// A snapshot of the queue, from one cheap query (the autoscaler's input).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Queued and claimable now.
    pub ready: i64,
    /// Queued for later (backoff or delay).
    pub scheduled: i64,
    /// Claimed and leased.
    pub running: i64,
    /// Finished successfully (since the last prune).
    pub succeeded: i64,
    /// Failed permanently (since the last prune).
    pub failed: i64,
    /// Out of attempts (since the last prune).
    pub dead: i64,
    /// Cancelled (since the last prune).
    pub cancelled: i64,
    /// Age of the oldest claimable job, in seconds (0 when none).
    pub oldest_ready_age_s: f64,
    /// Work of the ready jobs: their estimated uncached bytes, a job without an estimate at the recent
    /// median ([`RecentWork::median_fetched_bytes`]).
    #[serde(default)]
    pub ready_work: Work,
    /// The same for running jobs (counted whole: the queue does not know how far a job got).
    #[serde(default)]
    pub running_work: Work,
    /// What recently finished jobs fetched and how long they took: the autoscaler learns throughput here.
    #[serde(default)]
    pub recent: RecentWork,
}

impl QueueStats {
    /// All queued jobs, ready or scheduled.
    pub fn queued(&self) -> i64 {
        self.ready + self.scheduled
    }
}

/// The work in a set of jobs, in the three ways a job's work can be known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Work {
    /// Estimated compressed bytes to fetch (jobs with a non-zero estimate, and jobs without one at the
    /// recent median when that is above zero).
    pub bytes: i64,
    /// Jobs expected to fetch nothing (every layer cached): they cost their per-job time, not bytes.
    pub cached_jobs: i64,
    /// Jobs without an estimate while no finished job has reported its bytes yet: nothing is known.
    pub unknown_jobs: i64,
}

impl Work {
    /// Splits jobs by what is known of them: `estimated_bytes` is the sum of the estimates given,
    /// `cached` the jobs estimated at 0, `unestimated` the jobs without one, which count as `median`
    /// (the recent median of fetched bytes) when there is one: bytes if it is above 0, a cached job if 0.
    pub fn of(estimated_bytes: i64, cached: i64, unestimated: i64, median: Option<i64>) -> Work {
        let mut w = Work {
            bytes: estimated_bytes.max(0),
            cached_jobs: cached.max(0),
            unknown_jobs: 0,
        };
        match median {
            Some(m) if m > 0 => {
                w.bytes = w.bytes.saturating_add(m.saturating_mul(unestimated.max(0)))
            }
            Some(_) => w.cached_jobs = w.cached_jobs.saturating_add(unestimated.max(0)),
            None => w.unknown_jobs = unestimated.max(0),
        }
        w
    }
}

/// Finished jobs the throughput is learned from: the most recent [`RECENT_WINDOW`] that reported their
/// fetched bytes (a moving window, so the figures are smoothed over it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentWork {
    /// Jobs in the window that fetched something.
    pub cold_jobs: i64,
    /// Bytes those fetched.
    pub cold_bytes: i64,
    /// Seconds those took, claim to finish, summed (slot-seconds).
    pub cold_seconds: f64,
    /// Jobs in the window that fetched nothing (every layer cached, or the image analyzed before).
    pub cached_jobs: i64,
    /// Seconds those took, summed.
    pub cached_seconds: f64,
    /// Median of the fetched bytes over the window; `None` before any job reported.
    pub median_fetched_bytes: Option<i64>,
    /// Sum of the estimates of the window's jobs that had one.
    pub estimated_bytes: i64,
    /// Sum of the fetched bytes of those same jobs (the estimate's error is the difference).
    pub estimated_fetched_bytes: i64,
    /// Over every job of the window: Σ kB fetched, Σ kB² and Σ kB × milliseconds taken, for a
    /// least-squares fit of job time against bytes.
    pub sum_kb: f64,
    /// See `sum_kb`.
    pub sum_kb2: f64,
    /// See `sum_kb`.
    pub sum_kb_ms: f64,
}

/// How many finished jobs [`RecentWork`] looks back over.
pub const RECENT_WINDOW: i64 = 200;

/// A job row as stored, for status displays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Arguments.
    pub payload: serde_json::Value,
    /// Dedup key, if any.
    pub dedup_key: Option<String>,
    /// The platform asked for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Estimated work (uncached compressed bytes) given at enqueue, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_bytes: Option<i64>,
    /// Bytes the worker actually fetched, recorded at completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetched_bytes: Option<i64>,
    /// State.
    pub state: JobState,
    /// Priority.
    pub priority: i16,
    /// Attempts made.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Worker holding (or that last held) the lease.
    pub lease_owner: Option<String>,
    /// Last error message.
    pub last_error: Option<String>,
    /// Enqueue time.
    pub enqueued_at: SystemTime,
    /// Earliest next run.
    pub run_at: SystemTime,
    /// First claim time.
    pub first_claimed_at: Option<SystemTime>,
    /// Finish time.
    pub finished_at: Option<SystemTime>,
}
