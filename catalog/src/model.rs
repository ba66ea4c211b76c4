//! What the watch routes and `fathom watch` show: a watch, its tag history, a repository's look at its
//! tags, and a pass's report.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// A tag or a repository watch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// Its id (`DELETE /v1/watches/{id}`).
    pub id: i64,
    /// `tag` or `repository`.
    pub kind: String,
    /// `registry/repository:tag` for a tag, `registry/repository` for a repository.
    pub reference: String,
    /// `active`, `missing` (the registry says it is not there) or `failing` (it could not be asked).
    pub status: String,
    /// The registry's answer when missing or failing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// A tag's current digest (none until first resolved).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<String>,
    /// A repository's include pattern.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub include: Option<String>,
    /// A repository's exclude pattern.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exclude: Option<String>,
    /// The repository watch that made this tag watch.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repository_watch: Option<i64>,
    /// A repository's tags at its last listing.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tags_listed: Option<i64>,
    /// Tag watches this repository watch made.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tags_watched: Option<i64>,
    /// New tags passing the filters that `services.catalog.max_tags_per_repository` left unwatched.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tags_capped: Option<i64>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When the registry was last asked about it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checked_at: Option<String>,
}

/// One stint of a digest under a watched tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The digest the tag pointed at.
    pub digest: String,
    /// When it was first seen there.
    pub first_seen: String,
    /// When it was last seen there.
    pub last_seen: String,
    /// The analysis queued for it, when one was.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub job_id: Option<i64>,
}

/// A watch with its history, newest first (`GET /v1/watches/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchDetail {
    /// The watch.
    #[serde(flatten)]
    pub watch: Watch,
    /// A tag's digests, newest first (empty for a repository).
    pub history: Vec<HistoryEntry>,
}

/// What a repository watch would add, or added: `POST /v1/watches` with a repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryLook {
    /// `registry/repository`.
    pub repository: String,
    /// Tags the registry listed.
    pub listed: usize,
    /// Tags that are (or would be) watched by this request, sorted.
    pub tags: Vec<String>,
    /// Listed tags the include/exclude filters turned away.
    pub filtered: usize,
    /// Tags passing the filters left unwatched by `services.catalog.max_tags_per_repository`.
    pub capped: usize,
}

/// The outcome of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassReport {
    /// Watches looked at.
    pub watches: usize,
    /// Distinct hosts.
    pub hosts: usize,
    /// Tags that moved (or repositories that gained tags).
    pub changed: usize,
    /// Tags newly missing or failing.
    pub problems: usize,
    /// Requests sent: `HEAD`s, manifest `GET`s, tag list pages.
    pub heads: u64,
    /// Manifest `GET`s (only when a `HEAD` gave no digest).
    pub manifests: u64,
    /// Tag list pages.
    pub tags_pages: u64,
    /// Hosts skipped because their circuit breaker is open.
    pub skipped_hosts: usize,
    /// How long the pass took, in milliseconds.
    pub wall_ms: u64,
}

impl PassReport {
    /// Every request the pass sent.
    pub fn requests(&self) -> u64 {
        self.heads + self.manifests + self.tags_pages
    }
}

/// Microseconds since the Unix epoch as RFC 3339 (`2026-12-04T22:00:00.123456Z`).
pub(crate) fn rfc3339(us: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_micros(u64::try_from(us).unwrap_or(0));
    humantime::format_rfc3339_micros(t).to_string()
}
