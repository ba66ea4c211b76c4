//! The admission webhook's view of fathom: [`StoreOracle`] answers `fathom_webhook::ImageOracle` from the
//! results store and the queue, resolves tags through the analyzer's registry client, and evaluates
//! policy through [`PolicyCheck`], the one place a policy engine plugs in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::policy::config::PolicyEngineConfig;
use crate::core::policy::fresh::{Freshness, Token};
use crate::core::policy::PolicyEngine;
use crate::core::verdicts::{Lookup, VerdictCache};
use async_trait::async_trait;
use fathom_analyzer::source::registry::DigestResolver;
use fathom_analyzer::source::Platform;
use fathom_analyzer::AnalyzeError;
use fathom_policy::{Action, Evaluation, Reason};
use fathom_webhook::{
    AnalysisState, Finding, ImageId, ImageOracle, IndexPlatforms, OracleError, Outcome,
    PlatformImage, Resolved, Verdict,
};
use fathom_worker::store::{
    ImageStatus, PlatformSubmission, Store, StoreError, SubmissionFilter, SubmitOptions,
};

/// Queue priority of analyses the webhook asks for (lower runs first; submissions default to 0): a
/// deployment is waiting on them, so they overtake bulk submissions.
pub const ADMISSION_PRIORITY: i16 = -100;

/// Digests remembered as analyzed at most (the map is emptied when full: a burst of distinct images
/// costs store lookups again, never unbounded memory).
const ANALYZED_CACHE_ENTRIES: usize = 10_000;

/// The message of the verdict given while no policy engine is wired.
pub const NO_POLICY_ENGINE: &str = "policy engine not configured";

/// Evaluates an analyzed image against a policy bundle (`None`: the active bundle). The policy engine
/// implements this; [`NoPolicyEngine`] stands in when `services.policy_engine` is off.
#[async_trait]
pub trait PolicyCheck: Send + Sync + 'static {
    /// The verdict for `image`.
    async fn evaluate(&self, image: &ImageId, bundle: Option<&str>)
        -> Result<Verdict, OracleError>;
}

/// The stand-in while no policy engine is wired: every analyzed image is GO, with a finding that says
/// why (so `mode: policy` acts like `mode: analysis`, and the audit trail shows it).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPolicyEngine;

#[async_trait]
impl PolicyCheck for NoPolicyEngine {
    async fn evaluate(
        &self,
        _image: &ImageId,
        bundle: Option<&str>,
    ) -> Result<Verdict, OracleError> {
        Ok(Verdict {
            outcome: Outcome::Go,
            bundle: bundle.unwrap_or("none").to_owned(),
            unmapped: false,
            findings: vec![Finding {
                trigger: "policy".into(),
                outcome: Outcome::Go,
                message: NO_POLICY_ENGINE.into(),
                unevaluable: false,
            }],
        })
    }
}

/// The core's policy engine for the webhook, or [`NoPolicyEngine`] when `services.policy_engine` is off.
// Uncached: only the demo uses it (the core caches); without the feature it would be dead code.
#[cfg(feature = "demo")]
pub fn policy_check(engine: Option<Arc<PolicyEngine>>) -> Arc<dyn PolicyCheck> {
    match engine {
        Some(engine) if engine.enabled() => Arc::new(EnginePolicy {
            engine,
            verdicts: None,
        }),
        _ => Arc::new(NoPolicyEngine),
    }
}

/// [`policy_check`] with its verdicts cached in a [`VerdictCache`] (when `config.cache`): an admission
/// of an image already evaluated costs one query.
pub fn cached_policy_check(
    engine: Option<Arc<PolicyEngine>>,
    pool: sqlx::PgPool,
    config: &PolicyEngineConfig,
) -> Arc<dyn PolicyCheck> {
    match engine {
        Some(engine) if engine.enabled() => Arc::new(EnginePolicy {
            verdicts: VerdictCache::new(pool, config, engine.freshness().clone()),
            engine,
        }),
        _ => Arc::new(NoPolicyEngine),
    }
}

/// [`PolicyCheck`] through the core's policy engine: the same bundle choice, facts and evaluation cache
/// as `GET /v1/images/{digest}/check`.
struct EnginePolicy {
    engine: Arc<PolicyEngine>,
    verdicts: Option<VerdictCache>,
}

#[async_trait]
impl PolicyCheck for EnginePolicy {
    async fn evaluate(
        &self,
        image: &ImageId,
        bundle: Option<&str>,
    ) -> Result<Verdict, OracleError> {
        let Some(cache) = &self.verdicts else {
            return self.evaluate_now(image, bundle).await;
        };
        match cache.lookup(image, bundle).await? {
            Lookup::Hit(verdict) => Ok(verdict),
            Lookup::Miss(key) => {
                let verdict = self.evaluate_now(image, bundle).await?;
                cache.insert(*key, verdict.clone());
                Ok(verdict)
            }
        }
    }
}

impl EnginePolicy {
    async fn evaluate_now(
        &self,
        image: &ImageId,
        bundle: Option<&str>,
    ) -> Result<Verdict, OracleError> {
        let unavailable = |e: crate::core::api::ApiError| match e.status.as_u16() {
            404 => OracleError::NotFound(e.message),
            _ => OracleError::Unavailable(e.message),
        };
        let compiled = self.engine.bundle(bundle).await.map_err(unavailable)?;
        // Mappings and image rules select by registry/repository/tag: always those of the reference
        // being admitted, never of another reference that shares the digest (whichever was seen last).
        let checked = self
            .engine
            .check(&image.digest, Some(&image.reference), &compiled)
            .await
            .map_err(unavailable)?;
        Ok(verdict(&checked.evaluation))
    }
}

fn outcome(action: Action) -> Outcome {
    match action {
        Action::Stop => Outcome::Stop,
        Action::Warn => Outcome::Warn,
        Action::Go => Outcome::Go,
    }
}

/// The webhook's view of an evaluation: the final action and the rows that were not whitelisted.
fn verdict(evaluation: &Evaluation) -> Verdict {
    Verdict {
        outcome: outcome(evaluation.final_action),
        bundle: evaluation.bundle_id.clone(),
        unmapped: evaluation.final_action_reason == Reason::NoMatchingMapping,
        findings: evaluation
            .rows
            .iter()
            .filter(|r| r.whitelisted.is_none() && r.gate_action != Action::Go)
            .map(|r| Finding {
                trigger: format!("{}.{}", r.gate, r.trigger),
                // An unevaluable rule carries its configured action: the webhook decides how it counts.
                outcome: outcome(r.unevaluable_action.unwrap_or(r.gate_action)),
                message: r.check_output.to_string(),
                unevaluable: r.unevaluable_action.is_some(),
            })
            .collect(),
    }
}

/// `ImageOracle` over the store, the queue (through the store's submissions) and the registry.
pub struct StoreOracle {
    store: Store,
    resolver: DigestResolver,
    policy: Arc<dyn PolicyCheck>,
    /// Submissions: the current catalogers key (an image analyzed under it needs no job) and attempts.
    cache_key: String,
    max_attempts: i32,
    /// Digests seen analyzed, when, and under which change token: admissions of the images a cluster
    /// runs answer without a store round trip for `analyzed_ttl` — while nothing changed the image (a
    /// deleted image is forgotten at once when `fresh` follows changes).
    analyzed: Mutex<HashMap<String, (Instant, Option<Token>)>>,
    analyzed_ttl: Duration,
    /// Committed changes to stored images (`None`: trust the TTL alone).
    fresh: Option<Freshness>,
    /// Where admitted containers' images go (the inventory of what runs), when wired.
    inventory: Option<fathom_catalog::inventory::Recorder>,
    /// The layers of image manifests `resolve` just fetched, by digest: the analysis `enqueue` queues
    /// next carries its estimated work without asking the registry again.
    layers: Mutex<HashMap<String, Vec<(String, u64)>>>,
}

impl StoreOracle {
    /// An oracle on `store`, resolving tags with `resolver`, evaluating with `policy`; analyses it queues
    /// get `max_attempts` attempts and skip images analyzed under `cache_key`. An image found analyzed
    /// is remembered for `analyzed_ttl` (0: always ask the store).
    pub fn new(
        store: Store,
        resolver: DigestResolver,
        policy: Arc<dyn PolicyCheck>,
        cache_key: String,
        max_attempts: i32,
        analyzed_ttl: Duration,
    ) -> Self {
        StoreOracle {
            store,
            resolver,
            policy,
            cache_key,
            max_attempts,
            analyzed: Mutex::new(HashMap::new()),
            analyzed_ttl,
            fresh: None,
            inventory: None,
            layers: Mutex::new(HashMap::new()),
        }
    }

    /// The same oracle, recording admitted containers' images through `recorder`.
    pub fn with_inventory(mut self, recorder: fathom_catalog::inventory::Recorder) -> Self {
        self.inventory = Some(recorder);
        self
    }

    /// The same oracle, trusting an image seen analyzed only while `fresh` says nothing changed it (a
    /// deletion or re-analysis moves its token); with the listener down, every admission asks the store.
    pub fn with_freshness(mut self, fresh: Freshness) -> Self {
        if fresh.follows_changes() {
            self.fresh = Some(fresh);
        }
        self
    }

    /// The token an image's state is read under (read before the read, see [`Freshness`]).
    fn token(&self, digest: &str) -> Option<Token> {
        self.fresh.as_ref().and_then(|f| f.token(Some(digest)))
    }

    fn known_analyzed(&self, digest: &str) -> bool {
        let Ok(map) = self.analyzed.lock() else {
            return false;
        };
        map.get(digest).is_some_and(|(seen, token)| {
            seen.elapsed() < self.analyzed_ttl
                && (self.fresh.is_none() || (token.is_some() && *token == self.token(digest)))
        })
    }

    /// Keeps what `resolve` fetched for the `enqueue` that may follow (bounded: a full map starts over;
    /// a lost entry only means a job without an estimate).
    fn remember_layers(&self, digest: &str, layers: &[(String, u64)]) {
        if let Ok(mut map) = self.layers.lock() {
            if map.len() >= ANALYZED_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(digest.to_owned(), layers.to_vec());
        }
    }

    /// The layers `resolve` saw for `digest`, if it still has them (kept: the webhook's tag cache may
    /// answer the next admission of the same image without a `resolve`).
    fn layers_of(&self, digest: &str) -> Option<Vec<(String, u64)>> {
        self.layers.lock().ok()?.get(digest).cloned()
    }

    fn remember_analyzed(&self, digest: &str, token: Option<Token>) {
        if self.analyzed_ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.analyzed.lock() {
            if map.len() >= ANALYZED_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(digest.to_owned(), (Instant::now(), token));
        }
    }
}

fn unavailable(what: &str, e: StoreError) -> OracleError {
    OracleError::Unavailable(format!("{what}: {e}"))
}

/// A registry failure as the webhook decides on it: what may pass (unreachable, timed out, 5xx, rate
/// limited: the analyzer retries those) is left to the failure policy; what will not (the image does
/// not exist, the registry refuses fathom, the image is one fathom refuses) is an answer.
fn registry_error(e: AnalyzeError) -> OracleError {
    if e.is_retryable() {
        return OracleError::Unavailable(e.to_string());
    }
    match e {
        // The workload names an image that does not exist: it could never start.
        AnalyzeError::ManifestUnknown { .. } => OracleError::NotFound(e.to_string()),
        AnalyzeError::Unauthorized { .. } | AnalyzeError::RegistryStatus { .. } => {
            OracleError::Refused(e.to_string())
        }
        other => OracleError::Unsupported(other.to_string()),
    }
}

#[async_trait]
impl ImageOracle for StoreOracle {
    async fn resolve(
        &self,
        reference: &str,
        platforms: &[String],
    ) -> Result<Resolved, OracleError> {
        let resolution = self
            .resolver
            .resolve(reference)
            .await
            .map_err(registry_error)?;
        let Some(index) = &resolution.index else {
            if let Some(layers) = &resolution.layers {
                self.remember_layers(&resolution.digest, layers);
            }
            return Ok(Resolved::manifest(resolution.digest));
        };
        let wanted = platforms
            .iter()
            .map(|p| p.parse::<Platform>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OracleError::Unavailable(format!("services.webhook.platforms: {e}")))?;
        let platforms = resolution
            .platform_manifests(&wanted)
            .map_err(registry_error)?
            .into_iter()
            .map(|(platform, digest)| PlatformImage {
                platform: platform.to_string(),
                digest,
            })
            .collect();
        Ok(Resolved {
            index: Some(IndexPlatforms {
                platforms,
                available: index.platforms(),
            }),
            digest: resolution.digest,
        })
    }

    async fn analysis_state(&self, image: &ImageId) -> Result<AnalysisState, OracleError> {
        if self.known_analyzed(&image.digest) {
            return Ok(AnalysisState::Analyzed);
        }
        let token = self.token(&image.digest);
        // Stored results are keyed by manifest digest, whatever reference they were submitted under.
        if let Some(stored) = self
            .store
            .image(&image.digest)
            .await
            .map_err(|e| unavailable("reading the store", e))?
        {
            return Ok(match stored.status {
                ImageStatus::Analyzed => {
                    self.remember_analyzed(&image.digest, token);
                    AnalysisState::Analyzed
                }
                ImageStatus::Failed => AnalysisState::Failed {
                    reason: stored.error.unwrap_or_else(|| "no reason recorded".into()),
                },
            });
        }
        // Not stored: a live job for the pinned reference (ours) or the tag (a user's) answers soon.
        let pinned = image.pinned();
        let mut references = vec![pinned.clone()];
        if image.reference != pinned {
            references.push(image.reference.clone());
        }
        let entries = self
            .store
            .submissions(&SubmissionFilter {
                references: Some(references),
                limit: 2,
                ..SubmissionFilter::default()
            })
            .await
            .map_err(|e| unavailable("reading submissions", e))?;
        for entry in &entries {
            match entry.status.as_str() {
                "queued" | "analyzing" => return Ok(AnalysisState::Queued),
                // Only a failure of this very digest says something about it; a tag's failed job may
                // have been another digest. Failed jobs are not retried from here: the user resubmits.
                "failed" if entry.reference == pinned => {
                    return Ok(AnalysisState::Failed {
                        reason: entry
                            .error
                            .clone()
                            .unwrap_or_else(|| "no reason recorded".into()),
                    })
                }
                _ => {}
            }
        }
        Ok(AnalysisState::Unknown)
    }

    async fn evaluate(
        &self,
        image: &ImageId,
        bundle: Option<&str>,
    ) -> Result<Verdict, OracleError> {
        self.policy.evaluate(image, bundle).await
    }

    fn record_use(&self, sightings: Vec<fathom_webhook::inventory::Sighting>) {
        if let Some(recorder) = &self.inventory {
            recorder.record(
                sightings
                    .into_iter()
                    .map(crate::core::inventory_sync::workload_use)
                    .collect(),
            );
        }
    }

    async fn enqueue(&self, image: &ImageId) -> Result<(), OracleError> {
        // The pinned reference: the analysis is of the digest the workload was checked against, even
        // if the tag moves meanwhile. The store deduplicates against live jobs of the same reference.
        let options = SubmitOptions {
            priority: ADMISSION_PRIORITY,
            max_attempts: self.max_attempts,
            force: false,
            cache_key: Some(self.cache_key.clone()),
        };
        // The manifest `resolve` fetched for this digest gives the job its work estimate.
        let layers = self.layers_of(&image.digest);
        self.store
            .submit_estimated(&[image.pinned()], &[layers], &self.cache_key, &options)
            .await
            .map_err(|e| unavailable("queueing the analysis", e))?;
        Ok(())
    }

    async fn enqueue_platform(
        &self,
        image: &ImageId,
        index: &str,
        platform: &str,
    ) -> Result<(), OracleError> {
        // The job fetches the index (immutable, by digest) and picks the platform, so the stored image
        // records the index it came from; the submission is the platform's manifest, whose status
        // `analysis_state` finds under `image.pinned()`.
        let repository = image.pinned();
        let repository = repository.split_once('@').map_or("", |(r, _)| r);
        let item = PlatformSubmission {
            index_reference: format!("{repository}@{index}"),
            platform: platform.to_owned(),
            manifest_digest: image.digest.clone(),
        };
        let options = SubmitOptions {
            priority: ADMISSION_PRIORITY,
            max_attempts: self.max_attempts,
            force: false,
            cache_key: Some(self.cache_key.clone()),
        };
        self.store
            .submit_platform(&item, &options)
            .await
            .map_err(|e| unavailable("queueing the analysis", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_policy_engine_every_image_is_go_and_says_why() {
        let id = ImageId {
            reference: "r.test/app:1".into(),
            digest: "sha256:ab".into(),
        };
        let v = NoPolicyEngine.evaluate(&id, Some("strict")).await.unwrap();
        assert_eq!(v.outcome, Outcome::Go);
        assert_eq!(v.bundle, "strict");
        assert_eq!(v.findings[0].message, NO_POLICY_ENGINE);
    }

    #[test]
    fn only_what_may_pass_is_left_to_the_failure_policy() {
        let s = || "x".to_owned();
        let status = |status| AnalyzeError::RegistryStatus {
            status,
            url: s(),
            message: s(),
            retry_after: None,
        };
        let kind = |e: AnalyzeError| match registry_error(e) {
            OracleError::NotFound(_) => "not_found",
            OracleError::Refused(_) => "refused",
            OracleError::Unsupported(_) => "unsupported",
            OracleError::Unavailable(_) => "unavailable",
        };
        let cases = [
            (
                AnalyzeError::ManifestUnknown {
                    reference: s(),
                    message: s(),
                },
                "not_found",
            ),
            (
                AnalyzeError::Unauthorized {
                    registry: s(),
                    message: s(),
                },
                "refused",
            ),
            (status(400), "refused"),
            (
                AnalyzeError::UnsupportedMediaType {
                    what: s(),
                    media_type: s(),
                },
                "unsupported",
            ),
            (
                AnalyzeError::InvalidImage {
                    what: s(),
                    message: "larger than 16777216 bytes".into(),
                },
                "unsupported",
            ),
            (
                AnalyzeError::DigestMismatch {
                    what: s(),
                    expected: s(),
                    actual: s(),
                },
                "unsupported",
            ),
            (status(503), "unavailable"),
            (status(429), "unavailable"),
            (
                AnalyzeError::Connect {
                    registry: s(),
                    message: s(),
                },
                "unavailable",
            ),
            (
                AnalyzeError::Timeout {
                    registry: s(),
                    message: s(),
                },
                "unavailable",
            ),
        ];
        for (error, want) in cases {
            let text = error.to_string();
            assert_eq!(kind(error), want, "{text}");
        }
    }
}
