//! Submissions (reference → job) and the status view that joins them with the queue and the images.

use std::time::SystemTime;

use fathom_queue::{Enqueued, JobRecord, JobState, NewJob, Queue};
use serde::Serialize;

use super::images::{rfc3339, ImageRecord, ImageStatus};
use super::{from_epoch, Result, Store};

/// Job kind of image analyses.
pub const ANALYZE_KIND: &str = "analyze";

const RECORD_SUBMISSION_SQL: &str = r#"
INSERT INTO fathom_submissions (reference, job_id)
SELECT * FROM unnest($1::text[], $2::int8[])
ON CONFLICT (reference, job_id) DO NOTHING
"#;

/// The latest submission of each reference (or of one).
const LATEST_SUBMISSIONS_SQL: &str = r#"
SELECT DISTINCT ON (reference) reference, job_id, extract(epoch FROM submitted_at)::float8
FROM fathom_submissions
WHERE $1::text IS NULL OR reference = $1
ORDER BY reference, submitted_at DESC, job_id DESC
LIMIT $2
"#;

/// One line of `fathom status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusEntry {
    /// The reference as submitted.
    pub reference: String,
    /// Manifest digest, once known.
    pub digest: Option<String>,
    /// `queued`, `analyzing`, `analyzed`, `failed` or `cancelled`.
    pub status: String,
    /// Why it failed (or the last retryable error while it is queued for a retry).
    pub error: Option<String>,
    /// The job answering the latest submission.
    pub job_id: Option<i64>,
    /// Attempts made so far.
    pub attempts: i32,
    /// When it was submitted.
    #[serde(with = "rfc3339_opt")]
    pub submitted_at: Option<SystemTime>,
    /// When a worker first picked it up.
    #[serde(with = "rfc3339_opt")]
    pub started_at: Option<SystemTime>,
    /// When the job finished.
    #[serde(with = "rfc3339_opt")]
    pub finished_at: Option<SystemTime>,
    /// Milliseconds of analysis of the stored result.
    pub analysis_ms: Option<i64>,
    /// Milliseconds the stored result's job waited in the queue.
    pub queue_wait_ms: Option<i64>,
    /// Visible packages of the stored result.
    pub packages: Option<i32>,
}

fn status_of(job: Option<&JobRecord>, image: Option<&ImageRecord>) -> &'static str {
    match job.map(|j| j.state) {
        Some(JobState::Queued) => "queued",
        Some(JobState::Running) => "analyzing",
        Some(JobState::Succeeded) => "analyzed",
        Some(JobState::Failed | JobState::Dead) => "failed",
        Some(JobState::Cancelled) => "cancelled",
        // The job was pruned: the stored image tells.
        None => match image.map(|i| i.status) {
            Some(ImageStatus::Analyzed) => "analyzed",
            Some(ImageStatus::Failed) => "failed",
            None => "unknown",
        },
    }
}

impl Store {
    /// Enqueues one analysis job per reference (deduplicated by the reference: resubmitting an image that
    /// is queued or running returns the live job) and records the submissions, in one transaction.
    pub async fn submit(&self, references: &[String], max_attempts: i32) -> Result<Vec<Enqueued>> {
        let jobs: Vec<NewJob> = references
            .iter()
            .map(|r| {
                NewJob::new(ANALYZE_KIND, serde_json::json!({ "reference": r }))
                    .dedup_key(r.clone())
                    .max_attempts(max_attempts)
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        let enqueued = fathom_queue::tx::enqueue_many_in(&mut tx, &jobs).await?;
        let ids: Vec<i64> = enqueued.iter().map(|e| e.id).collect();
        sqlx::query(RECORD_SUBMISSION_SQL)
            .bind(references)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(enqueued)
    }

    /// Status of submitted references: all of them (most `limit`), one reference, or every reference of
    /// one manifest digest (`sha256:...`).
    pub async fn status(
        &self,
        queue: &Queue,
        filter: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StatusEntry>> {
        let references: Vec<Option<String>> = match filter {
            Some(f) if f.starts_with("sha256:") => match self.image(f).await? {
                Some(image) => image.references.into_iter().map(Some).collect(),
                None => Vec::new(),
            },
            other => vec![other.map(str::to_string)],
        };
        let mut out = Vec::new();
        for reference in references {
            let rows: Vec<(String, i64, f64)> = sqlx::query_as(LATEST_SUBMISSIONS_SQL)
                .bind(&reference)
                .bind(limit.max(1))
                .fetch_all(&self.pool)
                .await?;
            if rows.is_empty() {
                // Seen by a worker (e.g. enqueued by another producer) but never submitted through us.
                if let Some(reference) = &reference {
                    if let Some(image) = self.image_by_reference(reference).await? {
                        out.push(entry(reference.clone(), None, None, Some(&image)));
                    }
                }
            }
            for (reference, job_id, submitted) in rows {
                let job = queue.job(job_id).await?;
                let image = self.image_by_reference(&reference).await?;
                out.push(entry(
                    reference,
                    Some((job_id, from_epoch(submitted))),
                    job.as_ref(),
                    image.as_ref(),
                ));
            }
        }
        Ok(out)
    }
}

fn entry(
    reference: String,
    submission: Option<(i64, SystemTime)>,
    job: Option<&JobRecord>,
    image: Option<&ImageRecord>,
) -> StatusEntry {
    let status = status_of(job, image);
    // A stored result from an older analysis says nothing about a job still in flight.
    let result = image.filter(|_| matches!(status, "analyzed" | "failed"));
    let error = match job {
        Some(j) if j.state != JobState::Succeeded => j.last_error.clone(),
        Some(_) => None,
        None => image.and_then(|i| i.error.clone()),
    };
    StatusEntry {
        reference,
        digest: result.map(|i| i.manifest_digest.clone()),
        status: status.to_string(),
        error,
        job_id: submission.map(|s| s.0),
        attempts: job.map(|j| j.attempt).unwrap_or(0),
        submitted_at: submission.map(|s| s.1),
        started_at: job.and_then(|j| j.first_claimed_at),
        finished_at: job.and_then(|j| j.finished_at),
        analysis_ms: result.and_then(|i| i.analysis_ms),
        queue_wait_ms: result.and_then(|i| i.queue_wait_ms),
        packages: result
            .filter(|i| i.status == ImageStatus::Analyzed)
            .map(|i| i.package_count),
    }
}

mod rfc3339_opt {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }
}
