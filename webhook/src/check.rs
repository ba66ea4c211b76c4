//! One image under one mode: resolve (cached), look up its analysis, enqueue or wait if needed, evaluate.
//! An image index is checked platform by platform ([`crate::platforms`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use fathom_reference::ImageRef;

use crate::admission::Admission;
use crate::config::Mode;
use crate::oracle::{AnalysisState, ImageId, IndexPlatforms, OracleError, Resolved};
use crate::verdict::from_verdict;

/// Why an answer is what it is: the `reason` label of `fathom_webhook_decisions_total` and the
/// `reason` audit annotation. For a request of several images, the most severe one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Analyzed and the policy said GO.
    Go,
    /// Analyzed (`analysis` mode).
    Analyzed,
    /// An operation, subresource or object without images to check.
    Skipped,
    /// UPDATE that changed no image.
    Unchanged,
    /// Admitted unchecked under `breakglass`.
    Breakglass,
    /// The policy said WARN.
    Warn,
    /// Undecided now (store unavailable or out of time): answered by a verdict this process computed
    /// within `services.webhook.stale_if_error` (which may deny: a STOP stays a STOP).
    Stale,
    /// Undecided: the oracle was unavailable; answered by failure policy.
    Unavailable,
    /// Undecided: the time budget ran out; answered by failure policy.
    Timeout,
    /// The request could not be read or is of a kind the webhook does not check; by failure policy.
    Invalid,
    /// The body exceeded `max_request_bytes`; by failure policy.
    TooLarge,
    /// The image is queued or being analyzed.
    Queued,
    /// The image was never analyzed (its analysis is now queued unless dry run).
    Unanalyzed,
    /// The image's analysis failed.
    AnalysisFailed,
    /// The tag, repository or registry does not exist, or the policy engine no longer has the bundle
    /// (or the image) to evaluate.
    NotFound,
    /// The registry refused fathom (401, 403, ...): the image cannot be checked, so it is not admitted.
    Refused,
    /// fathom refuses the image as hostile or unsupported, or it has none of the configured platforms.
    Unsupported,
    /// The image reference does not parse.
    BadReference,
    /// No mapping of the bundle selects the image, and `services.webhook.unmapped` is `deny`.
    Unmapped,
    /// The policy said STOP.
    Stop,
}

impl Reason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Go => "go",
            Reason::Analyzed => "analyzed",
            Reason::Skipped => "skipped",
            Reason::Unchanged => "unchanged",
            Reason::Breakglass => "breakglass",
            Reason::Warn => "warn",
            Reason::Stale => "stale",
            Reason::Unavailable => "unavailable",
            Reason::Timeout => "timeout",
            Reason::Invalid => "invalid",
            Reason::TooLarge => "too_large",
            Reason::Queued => "queued",
            Reason::Unanalyzed => "unanalyzed",
            Reason::AnalysisFailed => "analysis_failed",
            Reason::NotFound => "not_found",
            Reason::Refused => "registry_refused",
            Reason::Unsupported => "unsupported",
            Reason::BadReference => "bad_reference",
            Reason::Unmapped => "unmapped",
            Reason::Stop => "stop",
        }
    }
}

/// One image's result.
#[derive(Debug, Clone)]
pub(crate) enum ImageVerdict {
    /// Admit (GO, analyzed, or WARN with warnings).
    Pass {
        reason: Reason,
        warnings: Vec<String>,
    },
    /// Deny, with what the user should read after the image's name.
    Deny { reason: Reason, message: String },
    /// Could not be decided (oracle unavailable).
    Undecided { message: String },
}

/// What a check needs beyond the image.
pub(crate) struct CheckContext<'a> {
    pub mode: Mode,
    pub bundle: Option<&'a str>,
    pub dry_run: bool,
    /// Whose `max_enqueues_per_minute` an enqueue is charged to.
    pub namespace: &'a str,
    /// Image as written → the digest it was checked as (for `POST /mutate`).
    pub resolved: Mutex<BTreeMap<String, String>>,
}

fn undecided(what: &str, e: OracleError) -> ImageVerdict {
    ImageVerdict::Undecided {
        message: format!("could not be checked: {what} failed ({e})"),
    }
}

/// What a reference turned out to name.
enum Target {
    /// One image manifest, with its analysis state when already looked up.
    Manifest(ImageId, Option<AnalysisState>),
    /// An image index (its digest and platforms), checked platform by platform.
    Index(String, IndexPlatforms),
}

/// The answer when the registry cannot tell what the reference names. Only an unavailable registry (or
/// store) is left to the failure policy: a refusal is an answer, and an image fathom cannot check is not
/// admitted unchecked.
fn unresolvable(e: OracleError) -> ImageVerdict {
    match e {
        OracleError::NotFound(m) => ImageVerdict::Deny {
            reason: Reason::NotFound,
            message: format!("was not found in its registry ({m})"),
        },
        OracleError::Refused(m) => ImageVerdict::Deny {
            reason: Reason::Refused,
            message: format!(
                "cannot be checked: its registry refused fathom ({m}); give fathom pull access to \
                 it (registry.credentials)"
            ),
        },
        OracleError::Unsupported(m) => ImageVerdict::Deny {
            reason: Reason::Unsupported,
            message: format!("cannot be checked: fathom refuses it ({m})"),
        },
        e @ OracleError::Unavailable(_) => undecided("resolving it in its registry", e),
    }
}

impl Admission {
    /// Checks one image (`image` as written in the spec).
    pub(crate) async fn check_image(&self, image: &str, ctx: &CheckContext<'_>) -> ImageVerdict {
        let reference = match ImageRef::parse(image) {
            Ok(r) => r,
            Err(e) => {
                return ImageVerdict::Deny {
                    reason: Reason::BadReference,
                    message: format!("is not a valid image reference ({e})"),
                }
            }
        };
        // What a pinning mutation writes: the manifest's digest, or the index's (every node pulls what
        // was checked for its own platform).
        match self.target_of(&reference).await {
            Ok(Target::Manifest(id, state)) => {
                ctx.resolved(image, &id.digest);
                self.check_manifest(&id, state, None, ctx).await
            }
            Ok(Target::Index(digest, index)) => {
                ctx.resolved(image, &digest);
                self.check_index(&reference, &digest, &index, ctx).await
            }
            Err(verdict) => verdict,
        }
    }

    /// Checks one image manifest: its analysis (queued when unknown: for `platform` = (index digest,
    /// platform) as that entry of the index), then its policy. `state` is the analysis state when the
    /// caller already looked it up.
    pub(crate) async fn check_manifest(
        &self,
        id: &ImageId,
        state: Option<AnalysisState>,
        platform: Option<(&str, &str)>,
        ctx: &CheckContext<'_>,
    ) -> ImageVerdict {
        let mut state = match state {
            Some(s) => s,
            None => match self.oracle.analysis_state(id).await {
                Ok(s) => s,
                Err(e) => return undecided("looking up its analysis", e),
            },
        };
        let mut queued_now = None;
        if state == AnalysisState::Unknown && !ctx.dry_run {
            if !self.enqueues.try_take(ctx.namespace) {
                self.metrics.enqueues_limited.inc();
                return crate::limit::denial(id, ctx.namespace, self.enqueues.per_minute());
            }
            let result = match platform {
                Some((index, platform)) => self.oracle.enqueue_platform(id, index, platform).await,
                None => self.oracle.enqueue(id).await,
            };
            if result.is_ok() {
                self.metrics.enqueued.inc();
            }
            queued_now = Some(result);
        }
        let wait = self.settings.config.analysis_wait;
        let waitable = state == AnalysisState::Queued || matches!(queued_now, Some(Ok(())));
        if !wait.is_zero() && waitable {
            state = match self.oracle.wait_analyzed(id, wait).await {
                Ok(s) => s,
                Err(e) => return undecided("waiting for its analysis", e),
            };
        }
        if let Some(deny) = unanalyzed(id, &state, queued_now, ctx.dry_run, wait) {
            return deny;
        }
        if ctx.mode != Mode::Policy {
            return ImageVerdict::Pass {
                reason: Reason::Analyzed,
                warnings: Vec::new(),
            };
        }
        match self.oracle.evaluate(id, ctx.bundle).await {
            Ok(verdict) => from_verdict(
                &verdict,
                self.settings.config.unevaluable,
                self.settings.config.unmapped,
            ),
            Err(e @ OracleError::Unavailable(_)) => undecided("evaluating its policy", e),
            // The bundle (or the stored image) is gone: an answer, not an outage to wait out; admitting
            // by failure policy would let every image through while it lasts.
            Err(e) => ImageVerdict::Deny {
                reason: Reason::NotFound,
                message: format!("cannot be checked: evaluating its policy failed ({e})"),
            },
        }
    }

    /// What the reference names. A digest the store knows is an image manifest as is (no registry
    /// request); any other is asked of the registry, through the TTL cache.
    async fn target_of(&self, reference: &ImageRef) -> Result<Target, ImageVerdict> {
        // Canonical, as written: `repo:tag@digest` keeps its tag for the policy and its digest here.
        let whole = reference.to_string();
        let Some(digest) = reference.digest.as_deref() else {
            let resolved = self.resolution(&whole).await.map_err(unresolvable)?;
            return Ok(match resolved.index {
                Some(index) => Target::Index(resolved.digest, index),
                None => Target::Manifest(
                    ImageId {
                        reference: whole,
                        digest: resolved.digest,
                    },
                    None,
                ),
            });
        };
        let id = ImageId {
            digest: digest.to_owned(),
            reference: whole.clone(),
        };
        let state = match self.oracle.analysis_state(&id).await {
            Ok(s) => s,
            Err(e) => return Err(undecided("looking up its analysis", e)),
        };
        if state != AnalysisState::Unknown {
            return Ok(Target::Manifest(id, Some(state)));
        }
        // Unknown as a manifest: an index digest (what Helm charts pin) or an image never analyzed.
        match self.resolution(&whole).await {
            Ok(Resolved {
                index: Some(index),
                digest,
            }) => Ok(Target::Index(digest, index)),
            Ok(_) => Ok(Target::Manifest(id, Some(state))),
            // Whatever it is, fathom never analyzed this digest: denied as unanalyzed (and queued),
            // not left to the failure policy.
            Err(OracleError::Unavailable(_)) => Ok(Target::Manifest(id, Some(state))),
            Err(e) => Err(unresolvable(e)),
        }
    }

    /// What `whole` names, from the TTL cache or the oracle.
    async fn resolution(&self, whole: &str) -> Result<Resolved, OracleError> {
        if let Some(resolved) = self.tags.get(&whole.to_owned()) {
            self.metrics.tag_cache.with_label_values(&["hit"]).inc();
            return Ok(resolved);
        }
        self.metrics.tag_cache.with_label_values(&["miss"]).inc();
        let resolved = self
            .oracle
            .resolve(whole, &self.settings.config.platforms)
            .await?;
        self.tags.insert(whole.to_owned(), resolved.clone());
        Ok(resolved)
    }
}

/// The denial for an image that is not (yet) analyzed, or none when it is.
fn unanalyzed(
    id: &ImageId,
    state: &AnalysisState,
    queued_now: Option<Result<(), OracleError>>,
    dry_run: bool,
    wait: Duration,
) -> Option<ImageVerdict> {
    let pinned = id.pinned();
    let waited = if wait.is_zero() {
        String::new()
    } else {
        format!(" (waited {} for it)", humantime::format_duration(wait))
    };
    let (reason, message) = match (state, queued_now) {
        (AnalysisState::Analyzed, _) => return None,
        (AnalysisState::Failed { reason }, _) => (
            Reason::AnalysisFailed,
            format!(
                "could not be analyzed by fathom ({reason}); fix the image or resubmit it with \
                 `fathom submit --force {pinned}`"
            ),
        ),
        (_, Some(Ok(()))) => (
            Reason::Unanalyzed,
            format!(
                "has not been analyzed by fathom yet; its analysis was queued at high priority{waited}: \
                 retry when `fathom status {pinned}` reports it analyzed"
            ),
        ),
        (_, Some(Err(e))) => (
            Reason::Unanalyzed,
            format!(
                "has not been analyzed by fathom yet and queueing its analysis failed ({e}); submit it \
                 with `fathom submit {pinned}`"
            ),
        ),
        (AnalysisState::Unknown, None) if dry_run => (
            Reason::Unanalyzed,
            format!(
                "has not been analyzed by fathom yet (dry run: no analysis was queued; submit it with \
                 `fathom submit {pinned}`)"
            ),
        ),
        _ => (
            Reason::Queued,
            format!(
                "is queued for analysis or being analyzed by fathom{waited}: retry when `fathom status \
                 {pinned}` reports it analyzed"
            ),
        ),
    };
    Some(ImageVerdict::Deny { reason, message })
}
