//! Submissions of one platform of a multi-platform image index: the job fetches the index and picks the
//! platform; the submission is recorded under the platform's own manifest, so its status is found by the
//! digest the admission webhook checks.

use fathom_queue::NewJob;

use super::status::{SubmitOptions, Submitted, ANALYZE_KIND, RECORD_SUBMISSIONS_SQL};
use super::{Result, Store};

/// One platform of an index to analyze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSubmission {
    /// `registry/repository@sha256:...` of the index: what the job fetches.
    pub index_reference: String,
    /// `os/arch[/variant]`: the entry the worker picks from it.
    pub platform: String,
    /// The digest of that entry's manifest (what the analysis is stored under).
    pub manifest_digest: String,
}

impl PlatformSubmission {
    /// `registry/repository@<manifest digest>`: the submission's reference and the job's dedup key, so
    /// one manifest has at most one live job whichever way it was asked for.
    pub fn manifest_reference(&self) -> String {
        let repository = self
            .index_reference
            .split_once('@')
            .map_or(self.index_reference.as_str(), |(r, _)| r);
        format!("{repository}@{}", self.manifest_digest)
    }
}

impl Store {
    /// Queues the analysis of one platform of an index, unless its manifest is already analyzed under
    /// `options.cache_key` (and not forced); a live job for the same manifest is reused.
    pub async fn submit_platform(
        &self,
        item: &PlatformSubmission,
        options: &SubmitOptions,
    ) -> Result<Submitted> {
        if let (Some(key), false) = (&options.cache_key, options.force) {
            if self.is_analyzed(&item.manifest_digest, key).await? {
                return Ok(Submitted::AlreadyAnalyzed);
            }
        }
        let reference = item.manifest_reference();
        let mut payload = serde_json::json!({ "reference": item.index_reference });
        if options.force {
            payload["force"] = serde_json::Value::Bool(true);
        }
        let dedup = if options.force {
            format!("{reference}#force")
        } else {
            reference.clone()
        };
        let job = NewJob::new(ANALYZE_KIND, payload)
            .dedup_key(dedup)
            .platform(item.platform.clone())
            .priority(options.priority)
            .max_attempts(options.max_attempts);
        let mut tx = self.pool.begin().await?;
        let enqueued =
            fathom_queue::tx::enqueue_many_in(&mut tx, std::slice::from_ref(&job)).await?;
        let ids: Vec<i64> = enqueued.iter().map(|e| e.id).collect();
        sqlx::query(RECORD_SUBMISSIONS_SQL)
            .bind(vec![reference])
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(enqueued
            .into_iter()
            .next()
            .map_or(Submitted::AlreadyAnalyzed, Submitted::Job))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_submission_names_the_platform_manifest_in_the_index_repository() {
        let item = PlatformSubmission {
            index_reference: "127.0.0.1:5000/shop/app@sha256:aa".into(),
            platform: "linux/arm64".into(),
            manifest_digest: "sha256:bb".into(),
        };
        assert_eq!(
            item.manifest_reference(),
            "127.0.0.1:5000/shop/app@sha256:bb"
        );
    }
}
