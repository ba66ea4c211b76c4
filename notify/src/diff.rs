//! The pure decisions behind the events: an image's vulnerabilities diff, the per-round aggregation of
//! newly matched vulnerabilities into one event each (paged), and whether a final action changed. No
//! database here: producers read rows in bulk and hand them over.

use std::collections::{BTreeMap, BTreeSet};

use crate::data::{
    Counts, ImageRef, Previous, UpdatedEntry, VulnEntry, VulnerabilitiesChanged, VulnerabilityNew,
    WorkloadRef,
};

/// Images listed per `dev.fathom.vulnerability.new` event; more make several events (pages).
pub const IMAGES_PER_EVENT: usize = 1000;

/// What changed in one image's matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Matched now, not before.
    pub added: Vec<VulnEntry>,
    /// Matched before, not now.
    pub removed: Vec<VulnEntry>,
    /// Matched both times, with another severity or fix.
    pub updated: Vec<UpdatedEntry>,
}

impl Diff {
    /// Whether nothing a receiver cares about changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.updated.is_empty()
    }
}

/// The diff between an image's matches before (`old`) and after (`new`). An entry is one vulnerability
/// of one package (id, package name, version and type); it is `updated` when its severity or fix moved —
/// other fields (aliases, URLs, scores) changing alone are not news. Output is sorted, duplicates folded.
pub fn diff(old: Vec<VulnEntry>, new: Vec<VulnEntry>) -> Diff {
    let key = |e: &VulnEntry| (e.id.clone(), e.package.clone());
    let old: BTreeMap<_, VulnEntry> = old.into_iter().map(|e| (key(&e), e)).collect();
    let mut out = Diff::default();
    let mut seen = BTreeSet::new();
    for e in new {
        let k = key(&e);
        if !seen.insert(k.clone()) {
            continue;
        }
        match old.get(&k) {
            None => out.added.push(e),
            Some(before) if before.severity != e.severity || before.fix != e.fix => {
                out.updated.push(UpdatedEntry {
                    previous: Previous {
                        severity: before.severity.clone(),
                        fix: before.fix.clone(),
                    },
                    entry: e,
                });
            }
            Some(_) => {}
        }
    }
    out.removed = old
        .into_iter()
        .filter(|(k, _)| !seen.contains(k))
        .map(|(_, e)| e)
        .collect();
    out.added.sort();
    out.updated.sort();
    out
}

/// Severity labels from least to most severe (fathom-vulns' names); anything else ranks lowest.
const SEVERITY_ORDER: [&str; 6] = ["unknown", "negligible", "low", "medium", "high", "critical"];

/// A severity label's rank (higher is more severe).
pub fn severity_rank(severity: &str) -> usize {
    SEVERITY_ORDER
        .iter()
        .position(|s| *s == severity)
        .unwrap_or(0)
}

/// The `dev.fathom.image.vulnerabilities.changed` data of one image's [`Diff`]: each list sorted most
/// severe first and cut at `listed` entries, with the full counts. `None` when the diff is empty and this
/// is not the image's first match (a first match is news even when it found nothing).
pub fn image_event(
    image: ImageRef,
    workloads: Vec<WorkloadRef>,
    first_match: bool,
    mut d: Diff,
    listed: usize,
) -> Option<VulnerabilitiesChanged> {
    if d.is_empty() && !first_match {
        return None;
    }
    let counts = Counts {
        added: d.added.len(),
        removed: d.removed.len(),
        updated: d.updated.len(),
    };
    let by_severity = |a: &VulnEntry, b: &VulnEntry| {
        severity_rank(&b.severity)
            .cmp(&severity_rank(&a.severity))
            .then_with(|| a.cmp(b))
    };
    d.added.sort_by(by_severity);
    d.removed.sort_by(by_severity);
    d.updated.sort_by(|a, b| by_severity(&a.entry, &b.entry));
    d.added.truncate(listed);
    d.removed.truncate(listed);
    d.updated.truncate(listed);
    let truncated = counts.added > listed || counts.removed > listed || counts.updated > listed;
    Some(VulnerabilitiesChanged {
        digest: image.digest,
        references: image.references,
        workloads,
        first_match,
        added: d.added,
        removed: d.removed,
        updated: d.updated,
        counts,
        truncated,
    })
}

/// An image carrying a newly matched vulnerability, with the workloads running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    /// The image.
    pub image: ImageRef,
    /// Workloads running it.
    pub workloads: Vec<WorkloadRef>,
}

/// A vulnerability newly matched in the fleet this round and every image carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVulnerability {
    /// OSV id.
    pub id: String,
    /// Aliases.
    pub aliases: Vec<String>,
    /// The severities it is matched with (the highest is reported).
    pub severities: Vec<String>,
    /// The images carrying it (in any order; twins are folded).
    pub carriers: Vec<Carrier>,
}

/// One `dev.fathom.vulnerability.new` per vulnerability — paged into several when more than
/// `per_event` images carry it (each page lists its images and the workloads running them) — so a new
/// CVE across hundreds of images is one message, not hundreds. A vulnerability no image carries makes
/// none.
pub fn vulnerability_new(v: NewVulnerability, per_event: usize) -> Vec<VulnerabilityNew> {
    let per_event = per_event.max(1);
    let mut carriers: BTreeMap<String, Carrier> = BTreeMap::new();
    for c in v.carriers {
        let entry = carriers.entry(c.image.digest.clone()).or_insert(Carrier {
            image: ImageRef {
                digest: c.image.digest.clone(),
                references: vec![],
            },
            workloads: vec![],
        });
        entry.image.references.extend(c.image.references);
        entry.workloads.extend(c.workloads);
    }
    let severity = v
        .severities
        .iter()
        .max_by_key(|s| severity_rank(s))
        .cloned()
        .unwrap_or_else(|| "unknown".to_string());
    let total = carriers.len();
    let pages = total.div_ceil(per_event);
    let carriers: Vec<Carrier> = carriers.into_values().collect();
    carriers
        .chunks(per_event)
        .enumerate()
        .map(|(n, chunk)| {
            let mut workloads = BTreeSet::new();
            let images = chunk
                .iter()
                .map(|c| {
                    workloads.extend(c.workloads.iter().cloned());
                    let refs: BTreeSet<String> = c.image.references.iter().cloned().collect();
                    ImageRef {
                        digest: c.image.digest.clone(),
                        references: refs.into_iter().collect(),
                    }
                })
                .collect();
            VulnerabilityNew {
                id: v.id.clone(),
                aliases: v.aliases.clone(),
                severity: severity.clone(),
                images,
                workloads: workloads.into_iter().collect(),
                images_total: total,
                page: n + 1,
                pages,
            }
        })
        .collect()
}

/// Whether a new final action is news: it differs from the last one stored for the image and bundle,
/// or there was none (the image's first evaluation in scope). Actions compare case-insensitively
/// (anchore writes `STOP`, fathom stores `stop`).
pub fn final_action_changed(previous: Option<&str>, now: &str) -> bool {
    previous.is_none_or(|p| !p.eq_ignore_ascii_case(now))
}

#[cfg(test)]
#[path = "diff_tests.rs"]
mod tests;
