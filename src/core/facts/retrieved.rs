//! Retrieved files and the malware scan in a stored image's policy facts. The document names the layer
//! holding each visible retrieved file; the contents come from that layer's rows (stored once per layer,
//! however many images share it). The malware findings are in the document.

use fathom_analyzer::ImageAnalysis;
use fathom_policy::{Bundle, ImageFacts, MalwareFinding, MalwareScan, RetrievedFile};
use fathom_worker::store::{Store, StoreError};

/// The gates that read retrieved files' contents.
const READERS: [&str; 2] = ["retrieved_files", "passwd_file"];

/// Fills `facts.retrieved_files` with the contents of the image's visible retrieved files, when a rule
/// of `bundle` (any policy, mapped or not) reads them: a bundle without such rules costs no query.
pub async fn add_retrieved(
    store: &Store,
    bundle: &Bundle,
    doc: &ImageAnalysis,
    facts: &mut ImageFacts,
) -> Result<(), StoreError> {
    let read = bundle
        .policies
        .iter()
        .flat_map(|p| &p.rules)
        .any(|r| READERS.contains(&r.gate.as_str()));
    let Some(report) = doc.retrieved_files.as_ref().filter(|_| read) else {
        return Ok(());
    };
    // A document that carries the contents (written by `fathom scan`) needs no query.
    if report.files.iter().all(|f| f.content.is_some()) {
        facts.retrieved_files = local(doc);
        return Ok(());
    }
    let wanted: Vec<(&str, &str)> = report
        .files
        .iter()
        .map(|f| (f.layer.digest.as_str(), f.path.as_str()))
        .collect();
    let rows = store
        .retrieved_contents(&doc.analyzer.cache_key, &wanted)
        .await?;
    facts.retrieved_files = rows
        .into_iter()
        .map(|(path, content)| RetrievedFile { path, content })
        .collect();
    Ok(())
}

/// The retrieved files a document carries itself (`fathom scan`, `fathom check --policy`).
pub(crate) fn local(doc: &ImageAnalysis) -> Vec<RetrievedFile> {
    doc.retrieved_files
        .iter()
        .flat_map(|r| &r.files)
        .filter_map(|f| {
            f.content.as_ref().map(|content| RetrievedFile {
                path: f.path.clone(),
                content: content.clone(),
            })
        })
        .collect()
}

/// The malware scan as the `malware` gate reads it; `None` when the image was not scanned.
pub(crate) fn malware(doc: &ImageAnalysis) -> Option<MalwareScan> {
    doc.malware.as_ref().map(|m| MalwareScan {
        scanner: m.scanner.clone(),
        findings: m
            .findings
            .iter()
            .map(|f| MalwareFinding {
                path: f.path.clone(),
                signature: f.signature.clone(),
            })
            .collect(),
    })
}
