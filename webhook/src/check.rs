//! One image under one mode: resolve (cached), look up its analysis, enqueue or wait if needed, evaluate.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use oci_spec::distribution::Reference;

use crate::admission::Admission;
use crate::config::Mode;
use crate::oracle::{AnalysisState, ImageId, OracleError, Outcome, Verdict};

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
    /// The tag, repository or registry does not exist.
    NotFound,
    /// The image reference does not parse.
    BadReference,
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
            Reason::Unavailable => "unavailable",
            Reason::Timeout => "timeout",
            Reason::Invalid => "invalid",
            Reason::TooLarge => "too_large",
            Reason::Queued => "queued",
            Reason::Unanalyzed => "unanalyzed",
            Reason::AnalysisFailed => "analysis_failed",
            Reason::NotFound => "not_found",
            Reason::BadReference => "bad_reference",
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

impl Admission {
    /// Checks one image (`image` as written in the spec).
    pub(crate) async fn check_image(&self, image: &str, ctx: &CheckContext<'_>) -> ImageVerdict {
        let reference: Reference = match image.parse() {
            Ok(r) => r,
            Err(e) => {
                return ImageVerdict::Deny {
                    reason: Reason::BadReference,
                    message: format!("is not a valid image reference ({e})"),
                }
            }
        };
        let id = match self.digest_of(&reference).await {
            Ok(id) => id,
            Err(OracleError::NotFound(m)) => {
                return ImageVerdict::Deny {
                    reason: Reason::NotFound,
                    message: format!("was not found in its registry ({m})"),
                }
            }
            Err(e) => return undecided("resolving its tag", e),
        };
        ctx.resolved(image, &id.digest);
        let mut state = match self.oracle.analysis_state(&id).await {
            Ok(s) => s,
            Err(e) => return undecided("looking up its analysis", e),
        };
        let mut queued_now = None;
        if state == AnalysisState::Unknown && !ctx.dry_run {
            if !self.enqueues.try_take(ctx.namespace) {
                self.metrics.enqueues_limited.inc();
                return crate::limit::denial(&id, ctx.namespace, self.enqueues.per_minute());
            }
            let result = self.oracle.enqueue(&id).await;
            if result.is_ok() {
                self.metrics.enqueued.inc();
            }
            queued_now = Some(result);
        }
        let wait = self.settings.config.analysis_wait;
        let waitable = state == AnalysisState::Queued || matches!(queued_now, Some(Ok(())));
        if !wait.is_zero() && waitable {
            state = match self.oracle.wait_analyzed(&id, wait).await {
                Ok(s) => s,
                Err(e) => return undecided("waiting for its analysis", e),
            };
        }
        if let Some(deny) = unanalyzed(&id, &state, queued_now, ctx.dry_run, wait) {
            return deny;
        }
        if ctx.mode != Mode::Policy {
            return ImageVerdict::Pass {
                reason: Reason::Analyzed,
                warnings: Vec::new(),
            };
        }
        match self.oracle.evaluate(&id, ctx.bundle).await {
            Ok(verdict) => from_verdict(&verdict),
            Err(e) => undecided("evaluating its policy", e),
        }
    }

    /// The digest: from a digest reference as is, else from the TTL cache or the oracle.
    async fn digest_of(&self, reference: &Reference) -> Result<ImageId, OracleError> {
        let whole = reference.whole();
        if let Some(digest) = reference.digest() {
            return Ok(ImageId {
                digest: digest.to_owned(),
                reference: whole,
            });
        }
        if let Some(digest) = self.tags.get(&whole) {
            self.metrics.tag_cache.with_label_values(&["hit"]).inc();
            return Ok(ImageId {
                reference: whole,
                digest,
            });
        }
        self.metrics.tag_cache.with_label_values(&["miss"]).inc();
        let digest = self.oracle.resolve(&whole).await?;
        self.tags.insert(whole.clone(), digest.clone());
        Ok(ImageId {
            reference: whole,
            digest,
        })
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

fn from_verdict(v: &Verdict) -> ImageVerdict {
    let described = |wanted: Outcome| {
        v.findings
            .iter()
            .filter(|f| f.outcome == wanted)
            .map(|f| format!("{}: {}", f.trigger, f.message))
            .collect::<Vec<_>>()
    };
    match v.outcome {
        Outcome::Go => ImageVerdict::Pass {
            reason: Reason::Go,
            warnings: Vec::new(),
        },
        Outcome::Warn => ImageVerdict::Pass {
            reason: Reason::Warn,
            warnings: described(Outcome::Warn)
                .into_iter()
                .map(|f| format!("policy bundle {:?} WARN {f}", v.bundle))
                .collect(),
        },
        Outcome::Stop => {
            let stops = described(Outcome::Stop);
            let shown = stops.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
            let more = match stops.len() {
                0 => "no trigger named".to_owned(),
                n if n > 5 => format!("{shown}; and {} more", n - 5),
                _ => shown,
            };
            ImageVerdict::Deny {
                reason: Reason::Stop,
                message: format!("is stopped by policy bundle {:?}: {more}", v.bundle),
            }
        }
    }
}
