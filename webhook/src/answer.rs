//! Turning per-image results into one AdmissionReview answer: the denial message (which images, why,
//! what to do), warnings and audit annotations.

use crate::admission::{Admission, Answer};
use crate::check::{ImageVerdict, Reason};
use crate::config::Mode;
use crate::images::ImageUse;
use crate::review::{Request, Status};

/// Denied images listed in one message; the rest are counted ("and 3 more").
const SHOWN: usize = 5;
/// The API server truncates warnings longer than 256 characters and drops those past 4096 characters
/// in all; unchecked images come first and get at most this many warnings (the last may say how many
/// more the audit annotation lists).
const MAX_WARNINGS: usize = 20;
const MAX_WARNING_CHARS: usize = 256;
const MAX_UNCHECKED_WARNINGS: usize = 15;
/// The `unchecked-images` audit annotation stays below this (audit events are stored per request).
const MAX_AUDIT_CHARS: usize = 8192;
/// Each image's reason in the annotation is clipped to this.
const MAX_AUDIT_REASON_CHARS: usize = 200;

impl Admission {
    pub(crate) fn aggregate(
        &self,
        req: &Request,
        mode: Mode,
        selector: &str,
        what: &str,
        verdicts: Vec<(ImageUse, ImageVerdict)>,
    ) -> Answer {
        let mut reason = Reason::Go;
        let mut denied = Vec::new();
        let mut undecided = Vec::new();
        let mut unchecked = Vec::new();
        let mut warnings = Vec::new();
        for (u, v) in &verdicts {
            let image = format!("image {:?} ({})", u.image, u.containers.join(", "));
            match v {
                ImageVerdict::Pass {
                    reason: r,
                    warnings: w,
                } => {
                    reason = reason.max(*r);
                    warnings.extend(w.iter().map(|w| clip(&format!("{image}: {w}"))));
                }
                ImageVerdict::Deny { reason: r, message } => {
                    reason = reason.max(*r);
                    denied.push(format!("{image} {message}"));
                }
                ImageVerdict::Undecided { message } => {
                    reason = reason.max(Reason::Unavailable);
                    undecided.push(format!("{image} {message}"));
                    unchecked.push((u.image.clone(), message.clone()));
                }
            }
        }
        warnings.truncate(MAX_WARNINGS);
        if denied.is_empty() && undecided.is_empty() {
            return Self::admit(&req.uid, mode.as_str(), reason, warnings);
        }
        let header = format!(
            "fathom denied {what} (mode {}, selector {selector})",
            mode.as_str()
        );
        if denied.is_empty() {
            let why = format!("fathom could not decide on {what}: {}", list(&undecided));
            let mut a = self.by_failure_policy(
                req.uid.clone(),
                mode.as_str(),
                Reason::Unavailable,
                503,
                why,
            );
            mark_unchecked(&mut a, &unchecked, "by services.webhook.failure_policy");
            a.response.warnings.extend(warnings);
            a.response.warnings.truncate(MAX_WARNINGS);
            return a;
        }
        let mut message = format!("{header}: {}", list(&denied));
        if !undecided.is_empty() {
            message.push_str(&format!("; also unchecked: {}", list(&undecided)));
        }
        let denied_images = verdicts
            .iter()
            .filter(|(_, v)| matches!(v, ImageVerdict::Deny { .. }))
            .map(|(u, _)| u.image.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut a = Self::admit(&req.uid, mode.as_str(), reason, warnings);
        a.response.allowed = false;
        a.response.status = Status { code: 403, message };
        a.response
            .audit_annotations
            .insert("denied-images".into(), clip(&denied_images));
        mark_unchecked(&mut a, &unchecked, "");
        a
    }
}

/// Names every image an answer lets through (or denies) without a check, and why: when admitted, one
/// warning per image (each clipped on its own, replacing any general one), and in any case all of them
/// in the `unchecked-images` audit annotation, a JSON list of `{"image", "reason"}` bounded to
/// [`MAX_AUDIT_CHARS`] (past it, a last `{"more": N}`). `how` says by what they were admitted.
pub(crate) fn mark_unchecked(a: &mut Answer, unchecked: &[(String, String)], how: &str) {
    if unchecked.is_empty() {
        return;
    }
    if a.response.allowed {
        let shown = if unchecked.len() > MAX_UNCHECKED_WARNINGS {
            MAX_UNCHECKED_WARNINGS - 1
        } else {
            unchecked.len()
        };
        let mut warnings: Vec<String> = unchecked[..shown]
            .iter()
            .map(|(image, why)| {
                clip(&format!(
                    "fathom admitted image {image:?} unchecked {how}: {why}"
                ))
            })
            .collect();
        if shown < unchecked.len() {
            warnings.push(format!(
                "fathom admitted {} more images unchecked {how}: the audit annotation unchecked-images \
                 lists them",
                unchecked.len() - shown
            ));
        }
        a.response.warnings = warnings;
    }
    a.response
        .audit_annotations
        .insert("unchecked-images".into(), audit_list(unchecked));
}

fn audit_list(unchecked: &[(String, String)]) -> String {
    let mut items = Vec::new();
    let mut size = 2;
    for (i, (image, why)) in unchecked.iter().enumerate() {
        let item =
            serde_json::json!({"image": image, "reason": clip_to(why, MAX_AUDIT_REASON_CHARS)});
        let len = item.to_string().len() + 1;
        // Room for the `{"more": N}` that ends a cut list.
        if size + len + 24 > MAX_AUDIT_CHARS {
            items.push(serde_json::json!({"more": unchecked.len() - i}));
            break;
        }
        size += len;
        items.push(item);
    }
    serde_json::Value::Array(items).to_string()
}

/// `Deployment shop/web`, or the generateName prefix when the name is not assigned yet.
pub(crate) fn describe(req: &Request) -> String {
    let name = if req.name.is_empty() {
        req.object
            .pointer("/metadata/generateName")
            .and_then(|v| v.as_str())
            .map_or_else(|| "(unnamed)".to_owned(), |g| format!("{g}*"))
    } else {
        req.name.clone()
    };
    match req.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{} {ns}/{name}", req.kind.kind),
        _ => format!("{} {name}", req.kind.kind),
    }
}

fn list(items: &[String]) -> String {
    let mut out = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOWN {
        out.push_str(&format!("; and {} more", items.len() - SHOWN));
    }
    out
}

pub(crate) fn clip(s: &str) -> String {
    clip_to(s, MAX_WARNING_CHARS)
}

fn clip_to(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
