//! `services.webhook.stale_if_error`: when the store cannot answer in time, the verdict this process
//! computed for the same image less than that long ago answers instead of the failure policy, naming its
//! age. Only decided verdicts are kept (admitted, or stopped by policy), and any other fresh denial
//! forgets the kept one, so a stale answer never turns a deny into an allow.

use std::time::Duration;

use fathom_reference::ImageRef;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::check::{CheckContext, ImageVerdict, Reason};
use crate::config::Mode;

/// Of the time budget, what an image check leaves for answering from a kept verdict when the store
/// has not answered: a tenth of `services.webhook.timeout`, at most this.
const MAX_MARGIN: Duration = Duration::from_millis(250);

/// What a kept verdict answers for. The platform set (`services.webhook.platforms`) is fixed for the
/// process's life, and an index digest names the manifests of its platforms, so the digest the image
/// was checked as stands for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StaleKey {
    /// The image as written in the pod spec (the reference policy mappings saw).
    image: String,
    /// The manifest or index digest it was checked as.
    digest: String,
    mode: Mode,
    /// The bundle asked for (`None`: the active one).
    bundle: Option<String>,
}

impl Admission {
    /// Checks `image` like [`check_image`](Self::check_image) and keeps what it decided. When the check
    /// is undecided, or has not ended a margin before `deadline`, a verdict kept for the same image
    /// within `stale_if_error` answers; without one the check goes on and the failure policy answers
    /// as it always did.
    pub(crate) async fn check_or_stale(
        &self,
        image: &str,
        ctx: &CheckContext<'_>,
        deadline: Instant,
    ) -> ImageVerdict {
        if self.settings.config.stale_if_error.is_zero() {
            return self.check_image(image, ctx).await;
        }
        let timeout = self.settings.config.timeout;
        let cutoff = deadline.checked_sub(margin(timeout)).unwrap_or(deadline);
        let check = self.check_image(image, ctx);
        tokio::pin!(check);
        let verdict = tokio::select! {
            biased;
            verdict = &mut check => verdict,
            () = tokio::time::sleep_until(cutoff) => {
                let why = format!(
                    "not checked within services.webhook.timeout ({})",
                    humantime::format_duration(timeout)
                );
                if let Some(stale) = self.stale_answer(image, ctx, &why) {
                    return stale;
                }
                check.await
            }
        };
        match verdict {
            ImageVerdict::Undecided { message } => self
                .stale_answer(image, ctx, &message)
                .unwrap_or(ImageVerdict::Undecided { message }),
            decided => {
                self.keep(image, ctx, &decided);
                decided
            }
        }
    }

    /// Keeps a fresh verdict that decided the image (GO, WARN, analyzed, STOP); any other denial (not
    /// analyzed any more, analysis failed, ...) forgets what was kept, which no longer holds.
    fn keep(&self, image: &str, ctx: &CheckContext<'_>, verdict: &ImageVerdict) {
        let Some(key) = key(image, ctx) else {
            return;
        };
        if remembered(verdict) {
            self.kept.insert(key, verdict.clone());
        } else {
            self.kept.remove(&key);
        }
    }

    /// The kept verdict for `image` as a stale answer, `why` being what kept the store from answering.
    fn stale_answer(&self, image: &str, ctx: &CheckContext<'_>, why: &str) -> Option<ImageVerdict> {
        let (kept, age) = self.kept.get_aged(&key(image, ctx)?)?;
        let age = shown(age);
        tracing::warn!(image, %age, "answering from a verdict of {age} ago (services.webhook.stale_if_error): {why}");
        let source = |reason: Reason| {
            format!(
                "fathom's {} verdict of {age} ago (services.webhook.stale_if_error)",
                reason.as_str()
            )
        };
        match kept {
            ImageVerdict::Pass { reason, warnings } => {
                let first = format!("admitted on {}: {why}", source(reason));
                Some(ImageVerdict::Pass {
                    reason: Reason::Stale,
                    warnings: std::iter::once(first).chain(warnings).collect(),
                })
            }
            ImageVerdict::Deny { reason, message } => Some(ImageVerdict::Deny {
                reason: Reason::Stale,
                message: format!("{message} ({}: {why})", source(reason)),
            }),
            ImageVerdict::Undecided { .. } => None,
        }
    }
}

/// Whether a fresh verdict is one to answer with later: it decided the image.
fn remembered(verdict: &ImageVerdict) -> bool {
    matches!(
        verdict,
        ImageVerdict::Pass {
            reason: Reason::Go | Reason::Warn | Reason::Analyzed,
            ..
        } | ImageVerdict::Deny {
            reason: Reason::Stop,
            ..
        }
    )
}

/// The key of `image` in this request: the digest it was checked as, or for a digest reference whose
/// check did not get that far, the digest it names (a digest reference is checked as itself). A tag
/// whose digest is unknown has none: it may have moved.
fn key(image: &str, ctx: &CheckContext<'_>) -> Option<StaleKey> {
    let checked_as = ctx
        .resolved
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(image)
        .cloned();
    let digest = match checked_as {
        Some(digest) => digest,
        None => ImageRef::parse(image).ok()?.digest?,
    };
    Some(StaleKey {
        image: image.to_owned(),
        digest,
        mode: ctx.mode,
        bundle: ctx.bundle.map(str::to_owned),
    })
}

fn margin(timeout: Duration) -> Duration {
    (timeout / 10).min(MAX_MARGIN)
}

/// An age as people read it: milliseconds below a second, whole seconds above.
fn shown(age: Duration) -> String {
    let rounded = if age < Duration::from_secs(1) {
        Duration::from_millis(age.as_millis() as u64)
    } else {
        Duration::from_secs(age.as_secs())
    };
    humantime::format_duration(rounded).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_decisions_are_remembered_and_ages_read_plainly() {
        let pass = |reason| ImageVerdict::Pass {
            reason,
            warnings: Vec::new(),
        };
        let deny = |reason| ImageVerdict::Deny {
            reason,
            message: String::new(),
        };
        for kept in [
            pass(Reason::Go),
            pass(Reason::Warn),
            pass(Reason::Analyzed),
            deny(Reason::Stop),
        ] {
            assert!(remembered(&kept), "{kept:?}");
        }
        for not in [
            deny(Reason::Unanalyzed),
            deny(Reason::Queued),
            deny(Reason::AnalysisFailed),
            deny(Reason::Stale),
            pass(Reason::Stale),
            ImageVerdict::Undecided {
                message: String::new(),
            },
        ] {
            assert!(!remembered(&not), "{not:?}");
        }
        assert_eq!(shown(Duration::from_millis(1234)), "1s");
        assert_eq!(shown(Duration::from_micros(2500)), "2ms");
        assert_eq!(shown(Duration::from_secs(125)), "2m 5s");
        assert_eq!(margin(Duration::from_secs(3)), MAX_MARGIN);
        assert_eq!(
            margin(Duration::from_millis(300)),
            Duration::from_millis(30)
        );
    }
}
