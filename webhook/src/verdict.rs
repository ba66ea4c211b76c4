//! The admission's reading of a policy verdict: GO admits, WARN admits with warnings, STOP denies naming
//! the bundle and its triggers, and a STOP rule that could not be evaluated counts as
//! `services.webhook.unevaluable` says.

use crate::check::{ImageVerdict, Reason};
use crate::config::{Unevaluable, Unmapped};
use crate::oracle::{Outcome, Verdict};

/// The admission's reading of a verdict. A STOP rule that could not be evaluated counts as `unevaluable`
/// says (the policy engine reports it as WARN).
///
/// An image no mapping of the bundle selects (anchore's fall-through GO) is decided by `unmapped`.
pub(crate) fn from_verdict(
    v: &Verdict,
    unevaluable: Unevaluable,
    unmapped: Unmapped,
) -> ImageVerdict {
    if v.unmapped {
        return match unmapped {
            Unmapped::Deny => ImageVerdict::Deny {
                reason: Reason::Unmapped,
                message: format!(
                    "is selected by no mapping of policy bundle {:?}, and services.webhook.unmapped \
                     is deny",
                    v.bundle
                ),
            },
            Unmapped::Allow => ImageVerdict::Pass {
                reason: Reason::Go,
                warnings: vec![format!(
                    "policy bundle {:?} has no mapping for this image: admitted unevaluated \
                     (services.webhook.unmapped: allow)",
                    v.bundle
                )],
            },
        };
    }
    let described = |wanted: Outcome| {
        v.findings
            .iter()
            .filter(|f| f.outcome == wanted)
            .map(|f| format!("{}: {}", f.trigger, f.message))
            .collect::<Vec<_>>()
    };
    let unevaluable_stops = v
        .findings
        .iter()
        .filter(|f| f.unevaluable && f.outcome == Outcome::Stop)
        .map(|f| format!("{}: {}", f.trigger, f.message))
        .collect::<Vec<_>>();
    if v.outcome != Outcome::Stop && !unevaluable_stops.is_empty() {
        return match unevaluable {
            Unevaluable::Stop => ImageVerdict::Deny {
                reason: Reason::Stop,
                message: format!(
                    "is stopped by policy bundle {:?}: a STOP rule could not be evaluated, and \
                     services.webhook.unevaluable is stop: {}",
                    v.bundle,
                    clip_list(&unevaluable_stops)
                ),
            },
            Unevaluable::Warn => ImageVerdict::Pass {
                reason: Reason::Warn,
                warnings: unevaluable_stops
                    .iter()
                    .map(|f| {
                        format!(
                            "policy bundle {:?} STOP rule not evaluated \
                             (services.webhook.unevaluable: warn): {f}",
                            v.bundle
                        )
                    })
                    .chain(
                        described(Outcome::Warn)
                            .into_iter()
                            .map(|f| format!("policy bundle {:?} WARN {f}", v.bundle)),
                    )
                    .collect(),
            },
        };
    }
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
        Outcome::Stop => ImageVerdict::Deny {
            reason: Reason::Stop,
            message: format!(
                "is stopped by policy bundle {:?}: {}",
                v.bundle,
                clip_list(&described(Outcome::Stop))
            ),
        },
    }
}

/// The first five findings joined, and how many more there are.
fn clip_list(items: &[String]) -> String {
    let shown = items.iter().take(5).cloned().collect::<Vec<_>>().join("; ");
    match items.len() {
        0 => "no trigger named".to_owned(),
        n if n > 5 => format!("{shown}; and {} more", n - 5),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oracle::Finding;

    /// What the policy engine answers when the vulnerability data is missing: WARN overall, with the
    /// STOP rule that could not be evaluated carried as such.
    fn missing_data() -> Verdict {
        Verdict {
            outcome: Outcome::Warn,
            bundle: "strict".into(),
            unmapped: false,
            findings: vec![
                Finding {
                    trigger: "vulnerabilities.package".into(),
                    outcome: Outcome::Stop,
                    message: "rule could not be evaluated: vulnerability data unavailable".into(),
                    unevaluable: true,
                },
                Finding {
                    trigger: "dockerfile.effective_user".into(),
                    outcome: Outcome::Warn,
                    message: "runs as root".into(),
                    unevaluable: false,
                },
            ],
        }
    }

    #[test]
    fn an_unevaluable_stop_rule_denies_unless_configured_to_warn() {
        match from_verdict(&missing_data(), Unevaluable::Stop, Unmapped::Deny) {
            ImageVerdict::Deny { reason, message } => {
                assert_eq!(reason, Reason::Stop);
                assert!(
                    message.contains("services.webhook.unevaluable"),
                    "{message}"
                );
                assert!(message.contains("vulnerabilities.package"), "{message}");
                assert!(
                    !message.contains("  "),
                    "one sentence, no run of spaces: {message}"
                );
            }
            other => panic!("admitted: {other:?}"),
        }
        match from_verdict(&missing_data(), Unevaluable::Warn, Unmapped::Deny) {
            ImageVerdict::Pass { reason, warnings } => {
                assert_eq!(reason, Reason::Warn);
                assert_eq!(warnings.len(), 2, "{warnings:?}");
                assert!(
                    warnings[0].contains("vulnerabilities.package"),
                    "{warnings:?}"
                );
                assert!(warnings[1].contains("runs as root"), "{warnings:?}");
            }
            other => panic!("not admitted with warnings: {other:?}"),
        }
    }

    #[test]
    fn an_unevaluable_warn_rule_stays_a_warning() {
        let mut v = missing_data();
        v.findings[0].outcome = Outcome::Warn;
        match from_verdict(&v, Unevaluable::Stop, Unmapped::Deny) {
            ImageVerdict::Pass { reason, warnings } => {
                assert_eq!(reason, Reason::Warn);
                assert_eq!(warnings.len(), 2, "{warnings:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// Issue 31: the policy engine answers an image no mapping selects with anchore's fall-through GO;
    /// the admission follows `services.webhook.unmapped` instead.
    #[test]
    fn an_unmapped_image_is_decided_by_unmapped() {
        let v = Verdict {
            outcome: Outcome::Go,
            bundle: "strict".into(),
            unmapped: true,
            findings: Vec::new(),
        };
        match from_verdict(&v, Unevaluable::Stop, Unmapped::Deny) {
            ImageVerdict::Deny { reason, message } => {
                assert_eq!(reason, Reason::Unmapped);
                assert!(message.contains("services.webhook.unmapped"), "{message}");
                assert!(message.contains("\"strict\""), "{message}");
                assert!(!message.contains("  "), "{message}");
            }
            other => panic!("admitted: {other:?}"),
        }
        match from_verdict(&v, Unevaluable::Stop, Unmapped::Allow) {
            ImageVerdict::Pass { reason, warnings } => {
                assert_eq!(reason, Reason::Go);
                assert_eq!(warnings.len(), 1, "{warnings:?}");
                assert!(warnings[0].contains("no mapping"), "{warnings:?}");
            }
            other => panic!("not admitted: {other:?}"),
        }
        // A mapped GO is a GO, whatever `unmapped` says.
        let mapped = Verdict {
            unmapped: false,
            ..v
        };
        assert!(matches!(
            from_verdict(&mapped, Unevaluable::Stop, Unmapped::Deny),
            ImageVerdict::Pass {
                reason: Reason::Go,
                ..
            }
        ));
    }
}
