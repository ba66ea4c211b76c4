//! Turning per-image results into one AdmissionReview answer: the denial message (which images, why,
//! what to do), warnings and audit annotations.

use crate::admission::{Admission, Answer};
use crate::check::{ImageVerdict, Reason};
use crate::config::Mode;
use crate::images::ImageUse;
use crate::review::{Request, Status};

/// Denied images listed in one message; the rest are counted ("and 3 more").
const SHOWN: usize = 5;
/// The API server truncates longer warnings and long lists of them.
const MAX_WARNINGS: usize = 20;
const MAX_WARNING_CHARS: usize = 256;

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
            a.response.warnings.extend(warnings);
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
        a
    }
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
    if s.len() <= MAX_WARNING_CHARS {
        return s.to_owned();
    }
    let mut end = MAX_WARNING_CHARS - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
