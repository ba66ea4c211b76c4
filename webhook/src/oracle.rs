//! What the webhook asks of the rest of fathom (registry, store, policy engine, queue): one async trait,
//! implemented by the core and by test fakes.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use fathom_reference::ImageRef;

/// A resolved image: the reference as canonicalized and the manifest digest it points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageId {
    /// Canonical reference (`docker.io/library/nginx:1.25`, or `...@sha256:...` for digest references).
    pub reference: String,
    /// `sha256:...`.
    pub digest: String,
}

impl ImageId {
    /// `registry/repository@digest`: the immutable form, as used by `fathom status` and queued. The tag
    /// of `repo:tag@digest` is dropped, never left in the repository. A reference that does not parse
    /// (the webhook only makes canonical ones) is kept whole, so the store refuses it rather than a
    /// wrong repository being queued.
    pub fn pinned(&self) -> String {
        match ImageRef::parse(&self.reference) {
            Ok(r) => r.with_digest(&self.digest).to_string(),
            Err(_) => format!("{}@{}", self.reference, self.digest),
        }
    }
}

/// What a reference names in its registry: one image manifest, or an image index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The digest the reference names: a tag's current target, or the digest as written. For a
    /// multi-platform image, the index's own digest.
    pub digest: String,
    /// `Some` when the digest names an image index.
    pub index: Option<IndexPlatforms>,
}

impl Resolved {
    /// A single-platform image manifest.
    pub fn manifest(digest: impl Into<String>) -> Self {
        Resolved {
            digest: digest.into(),
            index: None,
        }
    }
}

/// The platforms of an image index, as far as the webhook checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPlatforms {
    /// Each platform asked for that the index has, with its manifest digest, in the order asked.
    pub platforms: Vec<PlatformImage>,
    /// Every platform the index lists (`linux/amd64`, ...), for messages.
    pub available: Vec<String>,
}

/// One platform's image manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformImage {
    /// `os/arch[/variant]`, as configured in `services.webhook.platforms`.
    pub platform: String,
    /// The platform's manifest digest (what its analysis is stored under).
    pub digest: String,
}

/// Where an image stands in fathom's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalysisState {
    /// Analyzed: results are in the store.
    Analyzed,
    /// Queued or being analyzed.
    Queued,
    /// The last analysis failed for good.
    Failed {
        /// Why, for the denial message.
        reason: String,
    },
    /// Never submitted.
    Unknown,
}

/// A policy evaluation's final action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Deny.
    Stop,
    /// Admit, with warnings.
    Warn,
    /// Admit.
    Go,
}

/// One reason a bundle gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The trigger (`vulnerabilities.package`, `dockerfile.effective_user`, ...).
    pub trigger: String,
    /// Its action.
    pub outcome: Outcome,
    /// What it found, for the user.
    pub message: String,
    /// The rule could not be evaluated (its data, e.g. vulnerability matches, is unavailable); `outcome`
    /// is then the action it is configured with, which `services.webhook.unevaluable` decides on.
    pub unevaluable: bool,
}

/// The result of evaluating an image against a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The final action.
    pub outcome: Outcome,
    /// The bundle actually evaluated (the active one's name when none was asked for).
    pub bundle: String,
    /// The findings behind a STOP or WARN.
    pub findings: Vec<Finding>,
    /// No mapping of the bundle selects the image: the policy engine's answer is anchore's fall-through
    /// GO, and `services.webhook.unmapped` decides the admission.
    pub unmapped: bool,
}

/// Why the oracle could not answer. Only [`Unavailable`](Self::Unavailable) leaves the answer to the
/// failure policy: the others are answers about the image, and deny it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OracleError {
    /// The image (tag, repository or registry) does not exist: the workload could never run it.
    #[error("not found: {0}")]
    NotFound(String),
    /// The registry refused fathom (401, 403, another 4xx): fathom cannot check the image, so the
    /// webhook does not admit it unchecked.
    #[error("refused by its registry: {0}")]
    Refused(String),
    /// fathom refuses the image as hostile or unsupported (media type, size, malformed manifest).
    #[error("refused by fathom: {0}")]
    Unsupported(String),
    /// A dependency is down, failing or too slow; the webhook answers by its failure policy.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// fathom as the webhook sees it. Calls must be quick (the whole answer has `services.webhook.timeout`);
/// the webhook caches `resolve` and `namespace_labels` itself, calls `resolve` for a digest reference
/// only when the store does not know the digest, and never calls `enqueue` for a dry run.
#[async_trait]
pub trait ImageOracle: Send + Sync + 'static {
    /// What a canonical reference (`docker.io/library/nginx:1.25`, or `...@sha256:...`) names: an image
    /// manifest, or an index with the manifests of those `platforms` (`os/arch[/variant]`) it has.
    async fn resolve(&self, reference: &str, platforms: &[String])
        -> Result<Resolved, OracleError>;

    /// The image's analysis state.
    async fn analysis_state(&self, image: &ImageId) -> Result<AnalysisState, OracleError>;

    /// Evaluates an analyzed image against `bundle`, or the active bundle when none is named.
    async fn evaluate(&self, image: &ImageId, bundle: Option<&str>)
        -> Result<Verdict, OracleError>;

    /// Queues the image's analysis at high priority (a deployment is waiting for it). Enqueuing an image
    /// already queued must be harmless.
    async fn enqueue(&self, image: &ImageId) -> Result<(), OracleError>;

    /// Queues the analysis of one platform of an index: `image` is the platform's manifest (under the
    /// admitted reference), `index` the index's digest and `platform` the entry to pick from it. The
    /// default queues the manifest by its own digest (the same analysis, without the index recorded).
    async fn enqueue_platform(
        &self,
        image: &ImageId,
        index: &str,
        platform: &str,
    ) -> Result<(), OracleError> {
        let _ = (index, platform);
        self.enqueue(image).await
    }

    /// Records what an admitted, non-dry-run request runs (fathom's inventory). Called after the answer
    /// is decided; it must not block (an implementation queues the sightings and writes them later).
    /// The default records nothing.
    fn record_use(&self, sightings: Vec<crate::inventory::Sighting>) {
        let _ = sightings;
    }

    /// Waits up to `budget` for the image to leave the queue; returns the state then. The default polls
    /// [`analysis_state`](Self::analysis_state); an implementation may listen for completion instead.
    async fn wait_analyzed(
        &self,
        image: &ImageId,
        budget: Duration,
    ) -> Result<AnalysisState, OracleError> {
        let deadline = tokio::time::Instant::now() + budget;
        let step = (budget / 10).clamp(Duration::from_millis(10), Duration::from_millis(250));
        loop {
            let state = self.analysis_state(image).await?;
            if state != AnalysisState::Queued || tokio::time::Instant::now() + step > deadline {
                return Ok(state);
            }
            tokio::time::sleep(step).await;
        }
    }

    /// The namespace's labels, for selectors with `namespace_labels`; `None` when unknown (then such
    /// selectors do not match). The default knows none.
    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, OracleError> {
        let _ = namespace;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_drops_the_tag_but_not_the_port() {
        let (ab, cd) = (
            format!("sha256:{}", "ab".repeat(32)),
            format!("sha256:{}", "cd".repeat(32)),
        );
        let id = |r: &str| {
            ImageId {
                reference: r.into(),
                digest: ab.clone(),
            }
            .pinned()
        };
        assert_eq!(
            id("docker.io/library/nginx:1.25"),
            format!("docker.io/library/nginx@{ab}")
        );
        assert_eq!(id("127.0.0.1:5000/app"), format!("127.0.0.1:5000/app@{ab}"));
        assert_eq!(
            id("127.0.0.1:5000/app:1"),
            format!("127.0.0.1:5000/app@{ab}")
        );
        assert_eq!(
            id(&format!("ghcr.io/o/app@{cd}")),
            format!("ghcr.io/o/app@{ab}")
        );
        // `repo:tag@digest`: the tag is dropped, not left in the repository (it was queued as
        // `docker.io/lib/nginx:1.25@…`, whose repository `lib/nginx:1.25` no blacklist names).
        assert_eq!(
            id(&format!("docker.io/lib/nginx:1.25@{cd}")),
            format!("docker.io/lib/nginx@{ab}")
        );
        assert_eq!(
            id(&format!("127.0.0.1:5000/app:1@{cd}")),
            format!("127.0.0.1:5000/app@{ab}")
        );
    }
}
