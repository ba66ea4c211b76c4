//! The merge of the content pass: which files, secrets, content search matches and copyright files are
//! visible in the final image
//! (same whiteout and overwrite rules as packages), and deb package licenses from the visible copyrights.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{remove_below, remove_tree, ImagePackage, LayerRef, Parents};
use crate::content::clamd::MalwareFinding;
use crate::content::{license, ContentMatch, CopyrightRecord, RetrievedFile, SecretFinding};
use crate::layer::{FileEntry, FileKind, LayerResult};
use crate::model::PackageType;

/// A file visible in the final image, with the layer that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFile {
    /// The entry as its layer recorded it.
    #[serde(flatten)]
    pub entry: FileEntry,
    /// The layer holding the visible copy.
    pub layer: LayerRef,
}

/// A secret in a visible file: where and which rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSecret {
    /// File path.
    pub path: String,
    /// 1-based line.
    pub line: u64,
    /// Rule name.
    pub rule: String,
    /// Layer holding the file.
    pub layer: LayerRef,
}

/// A content search match in a visible file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageContentMatch {
    /// File path.
    pub path: String,
    /// 1-based line.
    pub line: u64,
    /// Rule name.
    pub rule: String,
    /// The matched text (capped), only when the rule says `store_match`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Layer holding the file.
    pub layer: LayerRef,
}

/// What the content pass leaves visible in the final image.
#[derive(Debug, Default)]
pub struct Visible<'a> {
    /// Files by path (only when asked for: building it costs a map of every path).
    pub files: BTreeMap<&'a str, (usize, &'a FileEntry)>,
    /// Secret findings by file.
    pub secrets: BTreeMap<&'a str, (usize, Vec<&'a SecretFinding>)>,
    /// Content search matches by file.
    pub matches: BTreeMap<&'a str, (usize, Vec<&'a ContentMatch>)>,
    /// Copyright records by file.
    pub copyrights: BTreeMap<&'a str, &'a CopyrightRecord>,
    /// Retrieved files' contents by path.
    pub retrieved: BTreeMap<&'a str, (usize, &'a RetrievedFile)>,
    /// Malware findings by file.
    pub malware: BTreeMap<&'a str, (usize, Vec<&'a MalwareFinding>)>,
}

/// A retrieved file visible in the final image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRetrievedFile {
    /// File path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Layer holding the visible version (its stored result keeps the contents).
    pub layer: LayerRef,
    /// The contents (base64 in JSON), only in documents that carry the file inventory too (`fathom
    /// scan`); a worker's document names the layer and the store keeps the contents once per layer.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::content::retrieve::optional_base64"
    )]
    pub content: Option<Vec<u8>>,
}

/// A malware finding in a visible file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMalwareFinding {
    /// File path.
    pub path: String,
    /// The signature the scanner named.
    pub signature: String,
    /// Layer holding the file.
    pub layer: LayerRef,
}

/// Applies the layers in order, keeping the file map only when `with_files`.
pub fn visible<'a>(layers: &[&'a LayerResult], with_files: bool) -> Visible<'a> {
    let mut v = Visible::default();
    let mut parents = Parents::default();
    for (index, layer) in layers.iter().enumerate() {
        for dir in &layer.opaque_dirs {
            remove_below(&mut v.files, dir);
            remove_below(&mut v.secrets, dir);
            remove_below(&mut v.matches, dir);
            remove_below(&mut v.copyrights, dir);
            remove_below(&mut v.retrieved, dir);
            remove_below(&mut v.malware, dir);
        }
        for path in &layer.whiteouts {
            remove_tree(&mut v.files, path);
            remove_tree(&mut v.secrets, path);
            remove_tree(&mut v.matches, path);
            remove_tree(&mut v.copyrights, path);
            remove_tree(&mut v.retrieved, path);
            remove_tree(&mut v.malware, path);
        }
        for entry in &layer.files {
            if entry.kind != FileKind::Dir && parents.may_have_below(&entry.path) {
                remove_below(&mut v.files, &entry.path);
                remove_below(&mut v.secrets, &entry.path);
                remove_below(&mut v.matches, &entry.path);
                remove_below(&mut v.copyrights, &entry.path);
                remove_below(&mut v.retrieved, &entry.path);
                remove_below(&mut v.malware, &entry.path);
            }
            v.secrets.remove(entry.path.as_str());
            v.matches.remove(entry.path.as_str());
            v.copyrights.remove(entry.path.as_str());
            v.retrieved.remove(entry.path.as_str());
            v.malware.remove(entry.path.as_str());
            parents.add(&entry.path);
            if with_files {
                v.files.insert(&entry.path, (index, entry));
            }
        }
        for s in &layer.secrets {
            parents.add(&s.path);
            v.secrets
                .entry(&s.path)
                .or_insert_with(|| (index, Vec::new()))
                .1
                .push(s);
        }
        for m in &layer.content_matches {
            parents.add(&m.path);
            v.matches
                .entry(&m.path)
                .or_insert_with(|| (index, Vec::new()))
                .1
                .push(m);
        }
        for c in &layer.copyrights {
            parents.add(&c.path);
            v.copyrights.insert(&c.path, c);
        }
        for r in &layer.retrieved {
            parents.add(&r.path);
            v.retrieved.insert(&r.path, (index, r));
        }
        for f in layer.malware.iter().flat_map(|m| &m.findings) {
            parents.add(&f.path);
            v.malware
                .entry(&f.path)
                .or_insert_with(|| (index, Vec::new()))
                .1
                .push(f);
        }
    }
    v
}

/// Visible retrieved files, sorted by path; with `content`, their bytes too.
pub fn retrieved(
    layers: &[&LayerResult],
    v: &Visible<'_>,
    content: bool,
) -> Vec<ImageRetrievedFile> {
    v.retrieved
        .values()
        .map(|(i, r)| ImageRetrievedFile {
            path: r.path.clone(),
            size: r.content.len() as u64,
            layer: layer_ref(layers, *i),
            content: content.then(|| r.content.clone()),
        })
        .collect()
}

/// Visible malware findings, sorted by path.
pub fn malware(layers: &[&LayerResult], v: &Visible<'_>) -> Vec<ImageMalwareFinding> {
    v.malware
        .values()
        .flat_map(|(i, found)| {
            found.iter().map(move |f| ImageMalwareFinding {
                path: f.path.clone(),
                signature: f.signature.clone(),
                layer: layer_ref(layers, *i),
            })
        })
        .collect()
}

fn layer_ref(layers: &[&LayerResult], index: usize) -> LayerRef {
    LayerRef {
        index,
        digest: layers[index].digest.clone(),
    }
}

/// The visible file inventory, sorted by path.
pub fn inventory(layers: &[&LayerResult]) -> Vec<ImageFile> {
    visible(layers, true)
        .files
        .into_values()
        .map(|(i, entry)| ImageFile {
            entry: entry.clone(),
            layer: layer_ref(layers, i),
        })
        .collect()
}

/// Visible secrets, sorted by path and line.
pub fn secrets(layers: &[&LayerResult], v: &Visible<'_>) -> Vec<ImageSecret> {
    v.secrets
        .values()
        .flat_map(|(i, found)| {
            found.iter().map(move |s| ImageSecret {
                path: s.path.clone(),
                line: s.line,
                rule: s.rule.clone(),
                layer: layer_ref(layers, *i),
            })
        })
        .collect()
}

/// Visible content search matches, sorted by path, line and rule.
pub fn content_matches(layers: &[&LayerResult], v: &Visible<'_>) -> Vec<ImageContentMatch> {
    v.matches
        .values()
        .flat_map(|(i, found)| {
            found.iter().map(move |m| ImageContentMatch {
                path: m.path.clone(),
                line: m.line,
                rule: m.rule.clone(),
                text: m.text.clone(),
                layer: layer_ref(layers, *i),
            })
        })
        .collect()
}

/// Fills deb packages' licenses from their visible `copyright` file (dpkg records none) and writes every
/// package's licenses in SPDX form where they parse.
pub fn apply_licenses(packages: &mut [ImagePackage], v: &Visible<'_>) {
    for p in packages {
        let pkg = &mut p.package;
        if pkg.package_type == PackageType::Deb && pkg.licenses.is_empty() {
            let path = format!("/usr/share/doc/{}/copyright", pkg.name);
            if let Some(c) = v.copyrights.get(path.as_str()) {
                pkg.licenses = c.licenses.clone();
            }
        }
        for l in &mut pkg.licenses {
            *l = license::normalize(l);
        }
    }
}

/// The visible files that satisfy a predicate, merged one layer at a time: the caller can load, apply and
/// drop each layer result in turn, so memory holds one layer plus the kept files, never the whole
/// inventory (what a policy rule over a few paths needs on an image of millions of files).
pub struct FilteredInventory<F> {
    keep: F,
    files: BTreeMap<String, (LayerRef, FileEntry)>,
    truncated: bool,
}

impl<F: Fn(&FileEntry) -> bool> FilteredInventory<F> {
    /// An empty inventory keeping the files `keep` accepts.
    pub fn new(keep: F) -> Self {
        FilteredInventory {
            keep,
            files: BTreeMap::new(),
            truncated: false,
        }
    }

    /// Applies the layer at `index` (layers must come base first), with the same whiteout, opaque
    /// directory and overwrite rules as [`visible`]: an upper entry that is not kept still hides a kept one.
    pub fn apply(&mut self, index: usize, layer: &LayerResult) {
        self.truncated |= layer.files_truncated;
        for dir in &layer.opaque_dirs {
            remove_below(&mut self.files, dir);
        }
        for path in &layer.whiteouts {
            remove_tree(&mut self.files, path);
        }
        for entry in &layer.files {
            if entry.kind != FileKind::Dir {
                remove_below(&mut self.files, &entry.path);
            }
            if (self.keep)(entry) {
                let at = LayerRef {
                    index,
                    digest: layer.digest.clone(),
                };
                self.files.insert(entry.path.clone(), (at, entry.clone()));
            } else {
                self.files.remove(&entry.path);
            }
        }
    }

    /// Whether a layer applied so far recorded only part of its entries.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The kept visible files, sorted by path.
    pub fn finish(self) -> Vec<ImageFile> {
        self.files
            .into_values()
            .map(|(layer, entry)| ImageFile { entry, layer })
            .collect()
    }
}
