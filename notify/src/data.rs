//! The `data` of each event, as serde types: what a receiver reads. Producers build these and turn them
//! into a [`crate::NewEvent`] with [`Event::event`], so the shape of an event is decided here once.

use serde::{Deserialize, Serialize};

use crate::types;
use crate::NewEvent;

/// An event's data and where it goes: its CloudEvents `type` and `subject`.
pub trait Event: Serialize {
    /// The CloudEvents `type` (one of [`crate::types`]).
    const KIND: &'static str;
    /// The CloudEvents `subject`.
    fn subject(&self) -> &str;
    /// The outbox row for this data.
    fn event(&self) -> NewEvent {
        // Serializing plain structs of strings and numbers cannot fail; `Null` would only hide a bug.
        let data = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        NewEvent::new(Self::KIND, self.subject(), data)
    }
}

/// A workload running an image, as the inventory records it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkloadRef {
    /// Namespace.
    pub namespace: String,
    /// Workload kind (`Deployment`, `ReplicaSet`, `Pod`, ...).
    pub kind: String,
    /// Workload name.
    pub name: String,
    /// Container name.
    pub container: String,
}

/// An image: its manifest digest and every reference it was seen under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageRef {
    /// Manifest digest.
    pub digest: String,
    /// References (tags or digest references) it was seen under, sorted.
    pub references: Vec<String>,
}

/// `dev.fathom.image.analyzed`: a job finished and the image is stored under `reference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageAnalyzed {
    /// Manifest digest (the subject).
    pub digest: String,
    /// The reference the finished job asked for.
    pub reference: String,
    /// Every reference the image is known under, sorted.
    pub references: Vec<String>,
    /// True when the manifest was analyzed before and only the reference was recorded.
    pub reused: bool,
}

impl Event for ImageAnalyzed {
    const KIND: &'static str = types::IMAGE_ANALYZED;
    fn subject(&self) -> &str {
        &self.digest
    }
}

/// `dev.fathom.image.analysis_failed`: a job failed for good (permanent error or attempts spent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisFailed {
    /// Manifest digest when the manifest was read before the failure (the subject), else null and the
    /// subject is the reference.
    pub digest: Option<String>,
    /// The reference the job asked for.
    pub reference: String,
    /// Every reference the image is known under (empty without a digest).
    pub references: Vec<String>,
    /// The error kind (`manifest_unknown`, `unauthorized`, `lease_expired`, ...).
    pub error_kind: String,
    /// `failed` (permanent) or `dead` (attempts or deadline spent).
    pub state: String,
    /// Attempts made.
    pub attempts: i32,
    /// The job.
    pub job_id: i64,
}

impl Event for AnalysisFailed {
    const KIND: &'static str = types::IMAGE_ANALYSIS_FAILED;
    fn subject(&self) -> &str {
        self.digest.as_deref().unwrap_or(&self.reference)
    }
}

/// `dev.fathom.tag.moved`: a watched tag points at another digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagMoved {
    /// The tag (the subject), `registry/repository:tag`.
    pub reference: String,
    /// The digest it pointed at.
    pub previous: String,
    /// The digest it points at now.
    pub digest: String,
    /// The analysis queued for it, when one was.
    pub job_id: Option<i64>,
}

impl Event for TagMoved {
    const KIND: &'static str = types::TAG_MOVED;
    fn subject(&self) -> &str {
        &self.reference
    }
}

/// The package a vulnerability entry is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Package {
    /// Name as installed.
    pub name: String,
    /// Version as installed.
    pub version: String,
    /// fathom package type (`deb`, `python`, `npm`, ...).
    #[serde(rename = "type")]
    pub package_type: String,
}

/// A match's fix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fix {
    /// `fixed`, `not-fixed` or `unknown`.
    pub state: String,
    /// Fixed versions above the installed one.
    pub versions: Vec<String>,
}

/// One vulnerability of one package, as the per-image vulnerabilities route shows it (its essentials).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VulnEntry {
    /// OSV record id.
    pub id: String,
    /// Aliases (CVE ids).
    pub aliases: Vec<String>,
    /// The package.
    pub package: Package,
    /// Severity label.
    pub severity: String,
    /// Fix.
    pub fix: Fix,
}

/// An entry whose severity or fix changed: the entry now, and what it was.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UpdatedEntry {
    /// The entry now.
    #[serde(flatten)]
    pub entry: VulnEntry,
    /// What changed, as it was.
    pub previous: Previous,
}

/// An updated entry's previous severity and fix.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Previous {
    /// Severity label before.
    pub severity: String,
    /// Fix before.
    pub fix: Fix,
}

/// `dev.fathom.image.vulnerabilities.changed`: one image's matches changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnerabilitiesChanged {
    /// Manifest digest (the subject).
    pub digest: String,
    /// References the image is known under.
    pub references: Vec<String>,
    /// Workloads running it (inventory).
    pub workloads: Vec<WorkloadRef>,
    /// True for the first match of this analysis of the image: `added` lists every match it has.
    pub first_match: bool,
    /// Entries matched now and not before.
    pub added: Vec<VulnEntry>,
    /// Entries matched before and not now (a record withdrawn or changed, a fix reached).
    pub removed: Vec<VulnEntry>,
    /// Entries whose severity or fix changed.
    pub updated: Vec<UpdatedEntry>,
    /// How many entries each list has in full.
    pub counts: Counts,
    /// True when a list holds fewer entries than its count (the most severe first, at most
    /// [`VulnerabilitiesChanged::LISTED`] each): `GET /v1/images/{digest}/vulnerabilities` has them all.
    pub truncated: bool,
}

impl VulnerabilitiesChanged {
    /// Entries listed per list (an image's first match can carry thousands; the event stays small).
    pub const LISTED: usize = 100;
}

/// Sizes of a [`VulnerabilitiesChanged`]'s lists in full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Entries added.
    pub added: usize,
    /// Entries removed.
    pub removed: usize,
    /// Entries updated.
    pub updated: usize,
}

impl Event for VulnerabilitiesChanged {
    const KIND: &'static str = types::IMAGE_VULNERABILITIES_CHANGED;
    fn subject(&self) -> &str {
        &self.digest
    }
}

/// `dev.fathom.vulnerability.new`: a vulnerability matched somewhere in the fleet for the first time in
/// one round; one event per vulnerability, paged past [`crate::diff::IMAGES_PER_EVENT`] images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnerabilityNew {
    /// OSV record id (the subject).
    pub id: String,
    /// Aliases (CVE ids).
    pub aliases: Vec<String>,
    /// The highest severity it is matched with.
    pub severity: String,
    /// This page's images carrying it.
    pub images: Vec<ImageRef>,
    /// Workloads running this page's images.
    pub workloads: Vec<WorkloadRef>,
    /// Images carrying it in the whole fleet (all pages).
    pub images_total: usize,
    /// This page, from 1.
    pub page: usize,
    /// Pages for this vulnerability in this round.
    pub pages: usize,
}

impl Event for VulnerabilityNew {
    const KIND: &'static str = types::VULNERABILITY_NEW;
    fn subject(&self) -> &str {
        &self.id
    }
}

/// `dev.fathom.feed.synced`: a feed sync stored a new generation that changed something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedSynced {
    /// Feed (OSV ecosystem directory; the subject).
    pub feed: String,
    /// The new generation.
    pub generation: i64,
    /// The generation it replaced (null on the first sync).
    pub previous_generation: Option<i64>,
    /// Records in the new generation.
    pub records: u64,
    /// (ecosystem, package name) pairs whose records were added, changed, removed or withdrawn.
    pub changed_names: u64,
    /// The first of those names (`ecosystem/name`), at most [`FeedSynced::NAMES_LISTED`].
    pub names: Vec<String>,
}

impl FeedSynced {
    /// How many changed names an event lists (the count is always whole).
    pub const NAMES_LISTED: usize = 100;
}

impl Event for FeedSynced {
    const KIND: &'static str = types::FEED_SYNCED;
    fn subject(&self) -> &str {
        &self.feed
    }
}

/// A policy rule that fired, as the check's rows show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trigger {
    /// Gate.
    pub gate: String,
    /// Trigger.
    pub trigger: String,
    /// Its action (`stop`, `warn`, `go`).
    pub action: String,
    /// What it said.
    pub output: String,
}

/// `dev.fathom.image.policy.changed`: an in-scope image's final action (under the active bundle) changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyChanged {
    /// Manifest digest (the subject).
    pub digest: String,
    /// The reference it was evaluated under.
    pub tag: String,
    /// Bundle id.
    pub bundle_id: String,
    /// Bundle digest.
    pub bundle_digest: String,
    /// The final action before, under whichever bundle was active then (null: first evaluation in
    /// scope).
    pub previous: Option<String>,
    /// The final action now (`go`, `warn`, `stop`).
    pub final_action: String,
    /// The rules that fired (non-`go`), at most [`PolicyChanged::TRIGGERS_LISTED`].
    pub triggers: Vec<Trigger>,
}

impl PolicyChanged {
    /// How many triggers an event lists.
    pub const TRIGGERS_LISTED: usize = 200;
}

impl Event for PolicyChanged {
    const KIND: &'static str = types::IMAGE_POLICY_CHANGED;
    fn subject(&self) -> &str {
        &self.digest
    }
}
