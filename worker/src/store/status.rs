//! Submissions (reference → job) and the status view that joins them with the queue and the images.
//!
//! The status query reads the queue's `fathom_jobs` table (state, attempts, timestamps) in the same
//! statement as the submissions and images: one round trip per page, and a status filter the database
//! can apply, instead of one queue lookup per row. It only reads columns the queue documents as its
//! record ([`fathom_queue::JobRecord`]); every write to the table stays in the queue crate.

use std::time::SystemTime;

use fathom_queue::{Enqueued, NewJob};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use super::images::rfc3339;
use super::{from_epoch, Result, Store};

/// Job kind of image analyses.
pub const ANALYZE_KIND: &str = "analyze";

/// References (of these) whose latest image is analyzed under this catalogers key: submitting them
/// again needs no job.
const ANALYZED_REFERENCES_SQL: &str = r#"
SELECT latest.reference FROM (
    SELECT DISTINCT ON (r.reference) r.reference, i.status, i.cache_key
    FROM fathom_image_references r JOIN fathom_images i ON i.manifest_digest = r.manifest_digest
    WHERE r.reference = ANY($1)
    ORDER BY r.reference, r.last_seen_at DESC
) latest
WHERE latest.status = 'analyzed' AND latest.cache_key = $2
"#;

/// Records submissions in the history and moves each reference's head to its newest job, in one
/// statement. A resubmission answered by the live job keeps the original time in both; twins in one
/// batch are folded first (one head row per reference).
pub(super) const RECORD_SUBMISSIONS_SQL: &str = r#"
WITH history AS (
    INSERT INTO fathom_submissions (reference, job_id)
    SELECT * FROM unnest($1::text[], $2::int8[])
    ON CONFLICT (reference, job_id) DO NOTHING
)
INSERT INTO fathom_submission_heads (reference, job_id, submitted_at)
SELECT DISTINCT ON (t.reference) t.reference, t.job_id, now()
FROM unnest($1::text[], $2::int8[]) AS t(reference, job_id)
ORDER BY t.reference
ON CONFLICT (reference) DO UPDATE SET job_id = EXCLUDED.job_id, submitted_at = EXCLUDED.submitted_at
WHERE fathom_submission_heads.job_id < EXCLUDED.job_id  -- never back to an older job
"#;

/// Where listed submissions come from: every reference's head (optionally only some references), or
/// the one submission a job answers. `$1`..`$3` are bound by every variant in this order.
const HEADS_ALL: &str = "SELECT reference, job_id, submitted_at FROM fathom_submission_heads \
     WHERE ($1::text[] IS NULL) AND ($2::int8 IS NULL)";
const HEADS_OF_REFERENCES: &str =
    "SELECT reference, job_id, submitted_at FROM fathom_submission_heads \
     WHERE reference = ANY($1::text[]) AND ($2::int8 IS NULL)";
const SUBMISSION_OF_JOB: &str = "SELECT reference, job_id, submitted_at FROM fathom_submissions \
     WHERE ($1::text[] IS NULL OR reference = ANY($1::text[])) AND job_id = $2::int8";

/// The page: `{source}` rows after the cursor (`$4` µs since the epoch, `$5` job id), joined with their
/// job and the image last seen under the reference, filtered by status (`$3`), newest first (`$6` rows).
/// The cursor condition sits on the source so the (submitted_at, job_id) index serves it.
const SUBMISSIONS_SQL: &str = r#"
WITH source AS ({source}),
joined AS (
    SELECT s.reference, s.job_id, s.submitted_at,
           (extract(epoch FROM s.submitted_at) * 1000000)::int8 AS submitted_us,
           j.state, coalesce(j.attempt, 0) AS attempt, j.last_error,
           extract(epoch FROM j.first_claimed_at)::float8 AS started,
           extract(epoch FROM j.finished_at)::float8 AS finished,
           i.manifest_digest, i.status AS image_status, i.error AS image_error,
           i.analysis_ms, i.queue_wait_ms, i.package_count,
           CASE j.state
               WHEN 'queued' THEN 'queued' WHEN 'running' THEN 'analyzing'
               WHEN 'succeeded' THEN 'analyzed' WHEN 'failed' THEN 'failed' WHEN 'dead' THEN 'failed'
               WHEN 'cancelled' THEN 'cancelled'
               ELSE coalesce(i.status, 'unknown')  -- the job was pruned: the stored image tells
           END AS status
    FROM source s
    LEFT JOIN fathom_jobs j ON j.id = s.job_id
    LEFT JOIN LATERAL (
        SELECT i.manifest_digest, i.status, i.error, i.analysis_ms, i.queue_wait_ms, i.package_count
        FROM fathom_image_references r JOIN fathom_images i ON i.manifest_digest = r.manifest_digest
        WHERE r.reference = s.reference
        ORDER BY r.last_seen_at DESC LIMIT 1
    ) i ON true
    WHERE $4::int8 IS NULL
       OR (s.submitted_at, s.job_id) < (to_timestamp(0) + $4::int8 * interval '1 microsecond', $5::int8)
)
SELECT reference, job_id, submitted_us, state, attempt, last_error, started, finished, manifest_digest,
       image_status, image_error, analysis_ms, queue_wait_ms, package_count, status
FROM joined
WHERE ($3::text IS NULL OR status = $3)
ORDER BY submitted_at DESC, job_id DESC
LIMIT $6
"#;

/// Statuses a submission can be in.
pub const STATUSES: &[&str] = &["queued", "analyzing", "analyzed", "failed", "cancelled"];

/// One submitted reference and where it stands (a line of `fathom status`, an item of `GET /v1/images`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    #[serde(default)]
    pub submitted_at: Option<SystemTime>,
    /// When a worker first picked it up.
    #[serde(with = "rfc3339_opt")]
    #[serde(default)]
    pub started_at: Option<SystemTime>,
    /// When the job finished.
    #[serde(with = "rfc3339_opt")]
    #[serde(default)]
    pub finished_at: Option<SystemTime>,
    /// Milliseconds of analysis of the stored result.
    pub analysis_ms: Option<i64>,
    /// Milliseconds the stored result's job waited in the queue.
    pub queue_wait_ms: Option<i64>,
    /// Visible packages of the stored result.
    pub packages: Option<i32>,
    /// Where the next page starts when this is the last entry of a page.
    #[serde(skip)]
    pub cursor: Option<Cursor>,
}

/// A position in the newest-first list of submissions: (submitted at, in µs since the epoch; job id).
/// Its text form (`<µs>.<id>`) is what list pages hand out as `next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Submission time, µs since the epoch.
    pub submitted_us: i64,
    /// Job id (breaks ties of one instant).
    pub job_id: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.submitted_us, self.job_id)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a cursor this server handed out");
        let (us, id) = s.split_once('.').ok_or_else(bad)?;
        // Within what Postgres timestamps hold (up to year 9999): anything else is not ours.
        let submitted_us = us
            .parse::<i64>()
            .ok()
            .filter(|v| (0..=253_402_300_799_999_999).contains(v))
            .ok_or_else(bad)?;
        Ok(Cursor {
            submitted_us,
            job_id: id.parse().map_err(|_| bad())?,
        })
    }
}

/// Which submissions to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmissionFilter {
    /// Only these references.
    pub references: Option<Vec<String>>,
    /// Only the submission answered by this job.
    pub job_id: Option<i64>,
    /// Only this status (one of [`STATUSES`]).
    pub status: Option<String>,
    /// Only entries after this position (the previous page's last cursor).
    pub after: Option<Cursor>,
    /// Most entries returned.
    pub limit: i64,
}

/// How to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Lower runs first; 0 is the default, negative is urgent.
    pub priority: i16,
    /// Attempts before a job with retryable errors is given up.
    pub max_attempts: i32,
    /// Analyze again even when the reference is analyzed under `cache_key` (the job then also bypasses
    /// the worker's image and layer caches).
    pub force: bool,
    /// The current catalogers key: a reference whose image was analyzed under it needs no new job.
    /// `None` always enqueues (deduplicated against live jobs only).
    pub cache_key: Option<String>,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        SubmitOptions {
            priority: 0,
            max_attempts: 5,
            force: false,
            cache_key: None,
        }
    }
}

/// What one submitted reference became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// A job (new when `created`, else the live job with the same reference).
    Job(Enqueued),
    /// Already analyzed with the current catalogers: nothing enqueued.
    AlreadyAnalyzed,
}

type SubmissionRow = (
    String,
    i64,
    i64,
    Option<String>,
    i32,
    Option<String>,
    Option<f64>,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i32>,
    String,
);

fn entry(row: SubmissionRow) -> StatusEntry {
    let (reference, job_id, submitted_us, state, attempt, last_error, started, finished) =
        (row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7);
    let status = row.14;
    // A stored result from an older analysis says nothing about a job still in flight.
    let has_result = matches!(status.as_str(), "analyzed" | "failed") && row.8.is_some();
    let error = match state.as_deref() {
        Some("succeeded") => None,
        Some(_) => last_error,
        None => row.10,
    };
    let result = |v: Option<i64>| v.filter(|_| has_result);
    StatusEntry {
        reference,
        digest: row.8.filter(|_| has_result),
        error,
        job_id: Some(job_id),
        attempts: attempt,
        submitted_at: Some(SystemTime::UNIX_EPOCH + micros(submitted_us)),
        started_at: started.map(from_epoch),
        finished_at: finished.map(from_epoch),
        analysis_ms: result(row.11),
        queue_wait_ms: result(row.12),
        packages: row
            .13
            .filter(|_| has_result && row.9.as_deref() == Some("analyzed")),
        cursor: Some(Cursor {
            submitted_us,
            job_id,
        }),
        status,
    }
}

fn micros(us: i64) -> std::time::Duration {
    std::time::Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

impl Store {
    /// Enqueues one analysis job per reference (deduplicated by the reference: resubmitting an image that
    /// is queued or running returns the live job) and records the submissions, in one transaction.
    pub async fn submit(&self, references: &[String], max_attempts: i32) -> Result<Vec<Enqueued>> {
        let options = SubmitOptions {
            max_attempts,
            ..SubmitOptions::default()
        };
        let submitted = self.submit_with(references, &options).await?;
        Ok(submitted
            .into_iter()
            .filter_map(|s| match s {
                Submitted::Job(e) => Some(e),
                Submitted::AlreadyAnalyzed => None,
            })
            .collect())
    }

    /// Submits references: those already analyzed under `options.cache_key` (unless forced) are left
    /// alone; the rest get a job (a live job with the same reference is reused) and a submission row, all
    /// in one transaction. Returns one outcome per reference, in order.
    pub async fn submit_with(
        &self,
        references: &[String],
        options: &SubmitOptions,
    ) -> Result<Vec<Submitted>> {
        let mut tx = self.pool.begin().await?;
        let submitted = submit_in(&mut tx, references, options).await?;
        tx.commit().await?;
        Ok(submitted)
    }

    /// Submissions matching `filter`, newest first, in one query (plus one image lookup per named
    /// reference that has no submission).
    pub async fn submissions(&self, filter: &SubmissionFilter) -> Result<Vec<StatusEntry>> {
        let source = match (&filter.job_id, &filter.references) {
            (Some(_), _) => SUBMISSION_OF_JOB,
            (None, Some(_)) => HEADS_OF_REFERENCES,
            (None, None) => HEADS_ALL,
        };
        let sql = SUBMISSIONS_SQL.replace("{source}", source);
        let rows: Vec<SubmissionRow> = sqlx::query_as(&sql)
            .bind(&filter.references)
            .bind(filter.job_id)
            .bind(&filter.status)
            .bind(filter.after.map(|c| c.submitted_us))
            .bind(filter.after.map(|c| c.job_id))
            .bind(filter.limit.max(1))
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<StatusEntry> = rows.into_iter().map(entry).collect();
        // A named reference a worker analyzed without a submission through us (another producer
        // enqueued it) is reported from its stored image, on the first page only.
        if filter.after.is_none() && filter.job_id.is_none() {
            for reference in filter.references.iter().flatten() {
                if out.iter().any(|e| &e.reference == reference) {
                    continue;
                }
                if let Some(image) = self.image_by_reference(reference).await? {
                    let known = unsubmitted_entry(reference.clone(), &image);
                    if filter.status.as_deref().is_none_or(|s| s == known.status) {
                        out.push(known);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Status of submitted references: all of them (most `limit`), one reference, or every reference of
    /// one manifest digest (`sha256:...`).
    pub async fn status(&self, filter: Option<&str>, limit: i64) -> Result<Vec<StatusEntry>> {
        let references = match filter {
            Some(f) if f.starts_with("sha256:") => match self.image(f).await? {
                Some(image) => Some(image.references),
                None => return Ok(Vec::new()),
            },
            Some(reference) => Some(vec![reference.to_string()]),
            None => None,
        };
        let out = self
            .submissions(&SubmissionFilter {
                references,
                limit,
                ..SubmissionFilter::default()
            })
            .await?;
        Ok(out)
    }
}

/// Compressed bytes of the given layers (`(digest, size)`, each digest counted once) not in the layer
/// cache under `$3`: the work a job for that manifest is estimated at.
const UNCACHED_BYTES_SQL: &str = r#"
SELECT coalesce(sum(t.size), 0)::int8
FROM (SELECT DISTINCT ON (digest) digest, size FROM unnest($1::text[], $2::int8[]) AS u(digest, size)) t
WHERE NOT EXISTS (SELECT 1 FROM fathom_layers l WHERE l.digest = t.digest AND l.cache_key = $3)
"#;

/// The estimated work of analyzing a manifest with these layers (`(digest, compressed size)`): the bytes
/// of those not in the layer cache under `cache_key`.
pub async fn uncached_bytes_in(
    conn: &mut PgConnection,
    layers: &[(String, u64)],
    cache_key: &str,
) -> Result<i64> {
    let digests: Vec<&str> = layers.iter().map(|(d, _)| d.as_str()).collect();
    let sizes: Vec<i64> = layers
        .iter()
        .map(|&(_, s)| i64::try_from(s).unwrap_or(i64::MAX))
        .collect();
    Ok(sqlx::query_scalar(UNCACHED_BYTES_SQL)
        .bind(&digests)
        .bind(&sizes)
        .bind(cache_key)
        .fetch_one(&mut *conn)
        .await?)
}

/// [`Store::submit_with`] on the caller's connection, so a submission commits together with the caller's
/// own record of why (the catalog's history row of a tag's new digest).
pub async fn submit_in(
    conn: &mut PgConnection,
    references: &[String],
    options: &SubmitOptions,
) -> Result<Vec<Submitted>> {
    submit_estimated_in(conn, references, &[], "", options).await
}

/// [`submit_in`] for submitters that have the manifests at hand: `layers[i]` (when given) lists the
/// `(digest, compressed size)` of `references[i]`'s layers, and its job is queued with the estimated work
/// (the bytes not in the layer cache under `cache_key`; all of them when forced, since a forced job
/// bypasses the cache). A reference without layers is queued without an estimate (it counts as the
/// recent median).
pub async fn submit_estimated_in(
    conn: &mut PgConnection,
    references: &[String],
    layers: &[Option<Vec<(String, u64)>>],
    cache_key: &str,
    options: &SubmitOptions,
) -> Result<Vec<Submitted>> {
    let analyzed: Vec<String> = match (&options.cache_key, options.force) {
        (Some(key), false) => {
            sqlx::query_scalar(ANALYZED_REFERENCES_SQL)
                .bind(references)
                .bind(key)
                .fetch_all(&mut *conn)
                .await?
        }
        _ => Vec::new(),
    };
    let to_enqueue: Vec<&String> = references
        .iter()
        .filter(|r| !analyzed.contains(r))
        .collect();
    let mut estimates = Vec::with_capacity(to_enqueue.len());
    for r in &to_enqueue {
        let at = references.iter().position(|x| x == *r);
        let estimate = match at.and_then(|i| layers.get(i)).and_then(Option::as_ref) {
            Some(l) if !options.force => Some(uncached_bytes_in(conn, l, cache_key).await?),
            Some(l) => Some(
                l.iter()
                    .map(|&(_, s)| i64::try_from(s).unwrap_or(i64::MAX))
                    .fold(0i64, i64::saturating_add),
            ),
            None => None,
        };
        estimates.push(estimate);
    }
    let jobs: Vec<NewJob> = to_enqueue
        .iter()
        .zip(&estimates)
        .map(|(r, estimate)| {
            let mut payload = serde_json::json!({ "reference": r });
            if options.force {
                payload["force"] = serde_json::Value::Bool(true);
            }
            // A forced analysis must not be swallowed by a normal job of the same reference that is
            // queued or running (it would reuse what force is meant to bypass): its own dedup key.
            let dedup = if options.force {
                format!("{r}#force")
            } else {
                r.to_string()
            };
            let job = NewJob::new(ANALYZE_KIND, payload)
                .dedup_key(dedup)
                .priority(options.priority)
                .max_attempts(options.max_attempts);
            match estimate {
                Some(bytes) => job.work_bytes(*bytes),
                None => job,
            }
        })
        .collect();
    let enqueued = fathom_queue::tx::enqueue_many_in(&mut *conn, &jobs).await?;
    let ids: Vec<i64> = enqueued.iter().map(|e| e.id).collect();
    // A live job answered the submission: it gets the estimate if it was queued without one.
    let (known_ids, known_bytes): (Vec<i64>, Vec<i64>) = enqueued
        .iter()
        .zip(&estimates)
        .filter_map(|(e, b)| b.filter(|_| !e.created).map(|b| (e.id, b)))
        .unzip();
    super::estimate::fill_missing(conn, &known_ids, &known_bytes).await?;
    sqlx::query(RECORD_SUBMISSIONS_SQL)
        .bind(&to_enqueue)
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    let mut jobs = enqueued.into_iter();
    Ok(references
        .iter()
        .map(|r| {
            if analyzed.contains(r) {
                Submitted::AlreadyAnalyzed
            } else {
                jobs.next()
                    .map_or(Submitted::AlreadyAnalyzed, Submitted::Job)
            }
        })
        .collect())
}

/// The status of a reference known only from its stored image.
pub fn unsubmitted_entry(reference: String, image: &super::ImageRecord) -> StatusEntry {
    let analyzed = image.status == super::ImageStatus::Analyzed;
    StatusEntry {
        reference,
        digest: Some(image.manifest_digest.clone()),
        status: if analyzed { "analyzed" } else { "failed" }.to_string(),
        error: image.error.clone(),
        job_id: None,
        attempts: 0,
        submitted_at: None,
        started_at: None,
        finished_at: Some(image.analyzed_at),
        analysis_ms: image.analysis_ms,
        queue_wait_ms: image.queue_wait_ms,
        packages: analyzed.then_some(image.package_count),
        cursor: None,
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

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let text: Option<String> = serde::Deserialize::deserialize(d)?;
        text.map(|t| humantime::parse_rfc3339_weak(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            submitted_us: 1_764_000_000_123_456,
            job_id: 42,
        };
        assert_eq!(c.to_string().parse::<Cursor>(), Ok(c));
        for bad in [
            "",
            "12",
            "a.b",
            "1.2.3",
            "1.",
            "-5.1",
            "9223372036854775807.1",
            "99999999999999999999.1",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }
}
