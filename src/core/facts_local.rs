//! What the policy engine knows about an image analyzed just now, without a database (`fathom check
//! SOURCE --policy BUNDLE`): identity, packages, config facts, file inventory, secret findings and
//! content search matches from the analysis, vulnerability matches from a feed loaded for this image
//! ([`fathom_vulns::local`]).

use fathom_analyzer::layer::FileKind;
use fathom_analyzer::ImageAnalysis;
use fathom_policy::{FeedStatus, FileEntry, FileType, ImageFacts};
use fathom_vulns::core::ecosystem::{distro_ecosystem, DistroRef};
use fathom_vulns::core::matching::feed_of;
use fathom_vulns::local::{LocalFeed, LocalMatches};
use jiff::Timestamp;

use super::facts::{identity_and_packages, identity_of, vuln_match};

/// Which content data the analysis was asked for: a pass that did not run is "unavailable" to the gates,
/// not "nothing found".
#[derive(Debug, Clone, Copy)]
pub struct ContentRan {
    /// The file inventory is in the document (`files.entries`).
    pub files: bool,
    /// Secret search ran.
    pub secrets: bool,
}

/// Facts from an analysis and, when a feed was loaded, its matches (else vulnerability data is `None`,
/// so `vulnerability_data_unavailable` fires). The feed's "last sync" is the time of its download.
pub fn from_analysis(
    doc: &ImageAnalysis,
    content: ContentRan,
    vulns: Option<(&LocalFeed, &LocalMatches)>,
) -> ImageFacts {
    let distro = doc.distro.as_ref();
    let (image, packages) = identity_and_packages(
        doc,
        &doc.image.manifest_digest,
        &doc.image.config_digest,
        identity(&doc.image.reference),
    );
    let files = content.files.then(|| {
        doc.files
            .entries
            .iter()
            .map(|f| {
                let e = &f.entry;
                FileEntry {
                    path: e.path.clone(),
                    file_type: match e.kind {
                        FileKind::File => FileType::File,
                        FileKind::Dir => FileType::Dir,
                        FileKind::Symlink => FileType::Symlink,
                        FileKind::HardLink | FileKind::Other => FileType::Other,
                    },
                    mode: e.mode,
                    uid: u32::try_from(e.uid).unwrap_or(u32::MAX),
                    gid: u32::try_from(e.gid).unwrap_or(u32::MAX),
                    size: e.size,
                    suid: e.setuid(),
                    sgid: e.setgid(),
                    sha256: e.sha256.clone(),
                }
            })
            .collect()
    });
    let secrets = content.secrets.then(|| super::facts::secret_findings(doc));
    let mut facts = ImageFacts {
        image,
        packages,
        files,
        content_matches: super::facts::content_matches(doc),
        secrets,
        retrieved_files: super::facts::retrieved::local(doc),
        malware: super::facts::retrieved::malware(doc),
        vulnerabilities: None,
        feed: FeedStatus::default(),
    };
    if let Some((feed, matches)) = vulns {
        facts.feed.last_sync = Timestamp::try_from(feed.loaded_at).ok();
        facts.feed.distro_data = distro
            .and_then(|d| {
                distro_ecosystem(&DistroRef {
                    id: d.id.clone(),
                    version_id: d.version_id.clone(),
                })
            })
            .is_some_and(|eco| feed.has_feed(feed_of(&eco)));
        facts.vulnerabilities = Some(
            matches
                .matches
                .iter()
                .map(|m| vuln_match(m.vuln.clone()))
                .collect(),
        );
    }
    facts
}

/// Registry, repository and tag for the mappings: a registry reference or a docker-archive's repo tag in
/// canonical form (`docker.io/library/debian:12`); an oci-dir's bare ref name (`v1`) is a tag alone.
fn identity(reference: &str) -> (String, String, Option<String>) {
    let r = reference.trim();
    if r.is_empty() {
        return (String::new(), String::new(), None);
    }
    if !r.contains('/') && !r.contains(':') {
        return (String::new(), String::new(), Some(r.to_string()));
    }
    match fathom_policy::ImageRef::parse(r) {
        Ok(parsed) => identity_of(Some(&parsed)),
        Err(_) => (String::new(), String::new(), None),
    }
}
