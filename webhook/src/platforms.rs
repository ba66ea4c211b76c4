//! A multi-platform image (an index, by tag or by digest): admitted only when every configured platform
//! it has (`services.webhook.platforms`) is analyzed and passes, each checked as an image of its own and
//! queued as a job for its platform; one answer for the whole index.

use fathom_reference::ImageRef;
use futures_util::future::join_all;

use crate::admission::Admission;
use crate::check::{CheckContext, ImageVerdict, Reason};
use crate::oracle::{ImageId, IndexPlatforms, PlatformImage};

impl Admission {
    /// Checks the platforms of the index `digest` that `reference` names.
    pub(crate) async fn check_index(
        &self,
        reference: &ImageRef,
        digest: &str,
        index: &IndexPlatforms,
        ctx: &CheckContext<'_>,
    ) -> ImageVerdict {
        if index.platforms.is_empty() {
            return ImageVerdict::Deny {
                reason: Reason::Unsupported,
                message: format!(
                    "is a multi-platform image ({digest}) for none of the platforms in \
                     services.webhook.platforms ({}); it has: {}",
                    self.settings.config.platforms.join(", "),
                    if index.available.is_empty() {
                        "none".to_owned()
                    } else {
                        index.available.join(", ")
                    }
                ),
            };
        }
        let checks = index.platforms.iter().map(|p| async move {
            // Policy sees the admitted registry, repository and tag, pinned to the platform's own
            // manifest: a reference naming the index digest is, to the policy engine, a question about
            // another image unless the stored manifest happens to record this very index (one analyzed
            // on its own or from another index that shares it would be left to the failure policy).
            let id = ImageId {
                reference: ImageRef {
                    digest: Some(p.digest.clone()),
                    ..reference.clone()
                }
                .to_string(),
                digest: p.digest.clone(),
            };
            let verdict = self
                .check_manifest(&id, None, Some((digest, &p.platform)), ctx)
                .await;
            (p, verdict)
        });
        combine(join_all(checks).await)
    }
}

/// One verdict for the index: denied when any platform is (naming each), undecided when any is, else
/// admitted with the platforms' warnings (a warning every platform gave is said once).
fn combine(results: Vec<(&PlatformImage, ImageVerdict)>) -> ImageVerdict {
    let total = results.len();
    let mut denied: Option<Reason> = None;
    let mut denials = Vec::new();
    let mut undecided = Vec::new();
    let mut passed = Reason::Go;
    let mut warnings: Vec<(String, Vec<&str>)> = Vec::new();
    for (p, verdict) in &results {
        let on = format!("for platform {} ({})", p.platform, p.digest);
        match verdict {
            ImageVerdict::Deny { reason, message } => {
                denied = denied.max(Some(*reason));
                denials.push(format!("{on} {message}"));
            }
            ImageVerdict::Undecided { message } => undecided.push(format!("{on} {message}")),
            ImageVerdict::Pass {
                reason,
                warnings: w,
            } => {
                passed = passed.max(*reason);
                for w in w {
                    match warnings.iter_mut().find(|(text, _)| text == w) {
                        Some((_, platforms)) => platforms.push(&p.platform),
                        None => warnings.push((w.clone(), vec![&p.platform])),
                    }
                }
            }
        }
    }
    if let Some(reason) = denied {
        return ImageVerdict::Deny {
            reason,
            message: denials.join("; "),
        };
    }
    if !undecided.is_empty() {
        return ImageVerdict::Undecided {
            message: undecided.join("; "),
        };
    }
    ImageVerdict::Pass {
        reason: passed,
        warnings: warnings
            .into_iter()
            .map(|(text, platforms)| {
                if platforms.len() == total {
                    text
                } else {
                    format!("{}: {text}", platforms.join(", "))
                }
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(platform: &str) -> PlatformImage {
        PlatformImage {
            platform: platform.into(),
            digest: format!("sha256:{}", platform.replace('/', "")),
        }
    }

    fn pass(reason: Reason, warnings: &[&str]) -> ImageVerdict {
        ImageVerdict::Pass {
            reason,
            warnings: warnings.iter().map(|w| w.to_string()).collect(),
        }
    }

    #[test]
    fn one_denied_platform_denies_the_index_and_is_named() {
        let (amd, arm) = (image("linux/amd64"), image("linux/arm64"));
        let denied = ImageVerdict::Deny {
            reason: Reason::Stop,
            message: "is stopped by policy bundle \"strict\"".into(),
        };
        match combine(vec![(&amd, pass(Reason::Go, &[])), (&arm, denied)]) {
            ImageVerdict::Deny { reason, message } => {
                assert_eq!(reason, Reason::Stop);
                assert!(
                    message.starts_with("for platform linux/arm64 (sha256:linuxarm64) is stopped"),
                    "{message}"
                );
                assert!(!message.contains("amd64"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn undecided_platforms_leave_the_index_undecided_and_warnings_are_merged() {
        let (amd, arm) = (image("linux/amd64"), image("linux/arm64"));
        let undecided = ImageVerdict::Undecided {
            message: "could not be checked".into(),
        };
        assert!(matches!(
            combine(vec![(&amd, pass(Reason::Go, &[])), (&arm, undecided)]),
            ImageVerdict::Undecided { .. }
        ));
        match combine(vec![
            (&amd, pass(Reason::Warn, &["both", "amd only"])),
            (&arm, pass(Reason::Go, &["both"])),
        ]) {
            ImageVerdict::Pass { reason, warnings } => {
                assert_eq!(reason, Reason::Warn);
                assert_eq!(warnings, ["both", "linux/amd64: amd only"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
