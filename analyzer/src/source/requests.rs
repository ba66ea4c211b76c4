//! Registry requests counted per process by host and kind, for the worker to export as metrics.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a registry request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    /// `GET /v2/NAME/manifests/REF`.
    Manifest,
    /// `GET /v2/NAME/blobs/DIGEST` (config or layer).
    Blob,
    /// A bearer token from the registry's token service.
    Token,
    /// `HEAD /v2/NAME/manifests/TAG` (a watcher's digest lookup).
    Head,
    /// `GET /v2/NAME/tags/list` (a watcher's tag listing, one per page).
    Tags,
}

impl RequestKind {
    /// A metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Manifest => "manifest",
            RequestKind::Blob => "blob",
            RequestKind::Token => "token",
            RequestKind::Head => "head",
            RequestKind::Tags => "tags",
        }
    }
}

/// Requests sent to one registry host for one purpose since the process started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    /// Registry host[:port] as referenced (`docker.io`, `127.0.0.1:5000`).
    pub host: String,
    /// What the requests were for.
    pub kind: RequestKind,
    /// How many (every attempt counts, 401 challenges included).
    pub count: u64,
}

static COUNTS: Mutex<BTreeMap<(String, RequestKind), u64>> = Mutex::new(BTreeMap::new());

pub(crate) fn record(host: &str, kind: RequestKind) {
    // A poisoned lock only means another thread panicked mid-increment: keep counting.
    let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    *counts.entry((host.to_string(), kind)).or_default() += 1;
}

/// Every registry request this process has sent, by host and kind (sorted), e.g. for a metrics
/// collector reading them at scrape time.
pub fn registry_requests() -> Vec<RequestCount> {
    let counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    counts
        .iter()
        .map(|((host, kind), count)| RequestCount {
            host: host.clone(),
            kind: *kind,
            count: *count,
        })
        .collect()
}
