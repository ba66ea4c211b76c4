//! Work estimates of API submissions by digest: a digest reference names an immutable manifest, so one
//! cheap manifest `GET` gives the layers the job will fetch and the job is queued with the bytes of those
//! not in the layer cache (what `scale_on: work` sizes the fleet by). A tag is left to the job (what it
//! names may change before it runs). Never holds a submission up: every lookup shares one short deadline,
//! and a reference the registry did not describe in time is queued without an estimate.

use std::time::Duration;

use fathom_analyzer::source::registry::DigestResolver;
use futures_util::StreamExt;

/// How long a submission waits at most for the registry to describe its digests.
pub const ESTIMATE_TIMEOUT: Duration = Duration::from_secs(1);

/// Manifest lookups at once for one batch.
const AT_ONCE: usize = 8;

/// Reads the manifests of submitted digests for their work estimates.
pub struct Estimator {
    resolver: DigestResolver,
    timeout: Duration,
}

impl Estimator {
    /// An estimator asking registries through `resolver`, giving up after `timeout` per submission.
    pub fn new(resolver: DigestResolver, timeout: Duration) -> Self {
        Estimator { resolver, timeout }
    }

    /// The layers (`(digest, compressed size)`) of each reference that names a digest, in order; `None`
    /// for a tag, an index, a failed lookup and whatever was not answered before the deadline.
    pub async fn layers(&self, references: &[String]) -> Vec<Option<Vec<(String, u64)>>> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        // Owned references: the lookups' futures borrow only `self`.
        let lookups = references
            .iter()
            .cloned()
            .map(|reference| self.lookup(reference, deadline));
        futures_util::stream::iter(lookups)
            .buffered(AT_ONCE)
            .collect()
            .await
    }

    async fn lookup(
        &self,
        reference: String,
        deadline: tokio::time::Instant,
    ) -> Option<Vec<(String, u64)>> {
        if !reference.contains("@sha256:") {
            return None;
        }
        match tokio::time::timeout_at(deadline, self.resolver.resolve(&reference)).await {
            Ok(Ok(resolution)) => resolution.layers,
            Ok(Err(e)) => {
                tracing::debug!(%reference, error = %e, "no work estimate: the manifest could not be read");
                None
            }
            Err(_) => {
                tracing::debug!(%reference, "no work estimate: the registry did not answer in time");
                None
            }
        }
    }
}
