//! The content pass's image-level reports: content search matches, retrieved files and the malware scan,
//! each present only when it ran, built from the merged layers.

use serde::{Deserialize, Serialize};

use crate::content::ContentOptions;
use crate::layer::LayerResult;
use crate::merge::content::Visible;
use crate::merge::{self, ImageContentMatch, ImageMalwareFinding, ImageRetrievedFile};

/// What content search found, with the rules it ran (a policy's `regex_name` may name a rule or its
/// pattern, as in anchore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentSearchReport {
    /// The rules searched for.
    pub rules: Vec<crate::content::ContentRule>,
    /// Matches in visible files, sorted by path, line and rule.
    pub matches: Vec<ImageContentMatch>,
}

/// The retrieved files of an image (anchore's `retrieve_files`), with what was asked for: a path asked
/// for and absent from `files` was not in the image, over the size cap, or withheld as holding a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievedReport {
    /// The configured paths.
    pub paths: Vec<String>,
    /// The configured size cap.
    pub max_file_bytes: u64,
    /// The visible retrieved files, sorted by path.
    pub files: Vec<ImageRetrievedFile>,
}

/// The image's malware scan: present only when every layer was scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalwareReport {
    /// The scanner (`clamav`).
    pub scanner: String,
    /// Findings in visible files, sorted by path.
    pub findings: Vec<ImageMalwareFinding>,
    /// Files scanned, summed over the layers.
    pub scanned: u64,
    /// Files over the size cap, not scanned, summed over the layers.
    pub skipped_large: u64,
}

/// The three reports of an image from its merged layers (each `None` when it did not run).
pub(super) fn content_reports(
    options: &ContentOptions,
    refs: &[&LayerResult],
    visible: &Visible<'_>,
) -> (
    Option<ContentSearchReport>,
    Option<RetrievedReport>,
    Option<MalwareReport>,
) {
    let content = options.enabled;
    let content_search =
        (content && !options.content_search.is_empty()).then(|| ContentSearchReport {
            rules: options.content_search.clone(),
            matches: merge::content::content_matches(refs, visible),
        });
    let retrieved_files =
        (content && !options.retrieve.paths.is_empty()).then(|| RetrievedReport {
            paths: options.retrieve.paths.clone(),
            max_file_bytes: options.retrieve.max_file_bytes,
            files: merge::content::retrieved(refs, visible, options.entries_in_document),
        });
    // Every layer must carry a scan (they do when scanning is on: it is part of the cache key); one
    // without means the image was not wholly scanned, which the gate must hear as "not run".
    let malware = (content && options.malware.is_some())
        .then(|| {
            let scans: Option<Vec<_>> = refs.iter().map(|r| r.malware.as_ref()).collect();
            scans.map(|scans| MalwareReport {
                scanner: crate::content::clamd::SCANNER.into(),
                findings: merge::content::malware(refs, visible),
                scanned: scans.iter().map(|s| s.scanned).sum(),
                skipped_large: scans.iter().map(|s| s.skipped_large).sum(),
            })
        })
        .flatten();
    (content_search, retrieved_files, malware)
}
