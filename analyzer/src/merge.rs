//! Applies layer results in order (whiteouts, opaque directories, overwrites) to get the image as a
//! container would see it, and dates every visible package: the layer that introduced it and the last
//! layer that changed its record.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use crate::layer::{FileKind, LayerResult};
use crate::model::{Distro, Package, PackageType};

pub mod content;
pub use content::{
    ImageContentMatch, ImageFile, ImageMalwareFinding, ImageRetrievedFile, ImageSecret,
};

/// A layer named by its position (0 = base) and digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Position in the manifest, base first.
    pub index: usize,
    /// Layer digest.
    pub digest: String,
}

/// A package visible in the final image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePackage {
    /// The package as its cataloger reported it; locations name the layer holding the visible record.
    #[serde(flatten)]
    pub package: Package,
    /// The lowest layer of the unbroken run of layers in which this package (same type, name, version and
    /// record path) is visible: where it was installed.
    pub introduced_in: LayerRef,
    /// The last layer whose copy of the record differs from the one below it (equal to `introduced_in`
    /// when the record never changed, even if later layers rewrote the database file around it).
    pub last_changed_in: LayerRef,
}

/// Counts over the final filesystem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesSummary {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Hard links.
    pub hard_links: u64,
    /// Devices, FIFOs and other special files.
    pub other: u64,
    /// Bytes in regular files.
    pub total_bytes: u64,
    /// Regular files with the setuid bit.
    pub setuid: Vec<String>,
    /// Regular files with the setgid bit.
    pub setgid: Vec<String>,
    /// True when a layer had more entries than were recorded, so the counts are lower bounds.
    pub truncated: bool,
    /// The visible file inventory, when the analyzer was asked to put it in the document.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<ImageFile>,
}

/// The merged view of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Visible packages, sorted by type, name, version, path.
    pub packages: Vec<ImagePackage>,
    /// The distro from the visible os-release chain.
    pub distro: Option<Distro>,
    /// Final filesystem counts.
    pub files: FilesSummary,
}

type Key = (PackageType, String, String, String);

fn key(p: &Package) -> Key {
    let path = p
        .locations
        .first()
        .map(|l| l.path.clone())
        .unwrap_or_default();
    (p.package_type, p.name.clone(), p.version.clone(), path)
}

/// Same record apart from where it was found.
fn same_record(a: &Package, b: &Package) -> bool {
    a.purl == b.purl
        && a.licenses == b.licenses
        && a.metadata == b.metadata
        && a.found_by == b.found_by
}

/// Removes `path` and everything below it.
pub(crate) fn remove_tree<K: Borrow<str> + Ord + Clone, V>(map: &mut BTreeMap<K, V>, path: &str) {
    map.remove(path);
    remove_below(map, path);
}

/// Removes everything strictly below directory `dir`.
pub(crate) fn remove_below<K: Borrow<str> + Ord + Clone, V>(map: &mut BTreeMap<K, V>, dir: &str) {
    let prefix = if dir == "/" {
        "/".to_string()
    } else {
        format!("{dir}/")
    };
    let doomed: Vec<K> = map
        .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .take_while(|(k, _)| (*k).borrow().starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        map.remove(k.borrow());
    }
}

/// Every directory that some path added so far lies below (by prefix: `/a` and `/` for `/a/b`).
/// [`remove_below`] can only remove something under a directory in this set, and most entries are files
/// with nothing below them: asking the set first spares the B-tree range walk (the bulk of the merge's
/// time on an image of tens of thousands of files). It only grows, so a "no" is always right.
#[derive(Default)]
pub(crate) struct Parents<'a> {
    dirs: HashSet<&'a str>,
}

impl<'a> Parents<'a> {
    /// Records the directories above `path`.
    pub(crate) fn add(&mut self, path: &'a str) {
        let mut rest = path;
        while let Some(i) = rest.rfind('/') {
            // `remove_below("/")` removes every key starting with `/`.
            let parent = if i == 0 { &rest[..1] } else { &rest[..i] };
            // Present already: so are its own parents (added with it).
            if !self.dirs.insert(parent) || i == 0 {
                break;
            }
            rest = parent;
        }
    }

    /// Whether a path added so far may lie below `dir`.
    pub(crate) fn may_have_below(&self, dir: &str) -> bool {
        dir.is_empty() || self.dirs.contains(dir)
    }
}

struct FileState {
    kind: FileKind,
    mode: u32,
    size: u64,
}

/// Merges layer results, base first. `digests[i]` names layer `i`.
pub fn merge(layers: &[&LayerResult]) -> Merged {
    let mut files: BTreeMap<&str, FileState> = BTreeMap::new();
    // Package and distro records by the file that holds them, with the layer that wrote that file.
    let mut records: BTreeMap<&str, (usize, Vec<&Package>)> = BTreeMap::new();
    let mut distros: BTreeMap<&str, &Distro> = BTreeMap::new();
    let mut parents = Parents::default();
    let mut visible: HashMap<Key, (usize, usize, &Package)> = HashMap::new();
    let mut truncated = false;
    for (index, layer) in layers.iter().enumerate() {
        truncated |= layer.files_truncated;
        // Whiteouts and opaque directories hide lower layers only, so they apply before this layer's entries.
        for dir in &layer.opaque_dirs {
            remove_below(&mut files, dir);
            remove_below(&mut records, dir);
            remove_below(&mut distros, dir);
        }
        for path in &layer.whiteouts {
            remove_tree(&mut files, path);
            remove_tree(&mut records, path);
            remove_tree(&mut distros, path);
        }
        for entry in &layer.files {
            if entry.kind != FileKind::Dir && parents.may_have_below(&entry.path) {
                // A non-directory replaces whatever tree was there.
                remove_below(&mut files, &entry.path);
                remove_below(&mut records, &entry.path);
            }
            records.remove(entry.path.as_str());
            distros.remove(entry.path.as_str());
            parents.add(&entry.path);
            files.insert(
                &entry.path,
                FileState {
                    kind: entry.kind,
                    mode: entry.mode,
                    size: entry.size,
                },
            );
        }
        for package in &layer.packages {
            let path = package.locations.first().map_or("", |l| l.path.as_str());
            parents.add(path);
            records
                .entry(path)
                .or_insert_with(|| (index, Vec::new()))
                .1
                .push(package);
        }
        for record in &layer.distros {
            parents.add(&record.path);
            distros.insert(&record.path, &record.distro);
        }
        let mut next: HashMap<Key, (usize, usize, &Package)> =
            HashMap::with_capacity(visible.len());
        for (_, packages) in records.values() {
            for &package in packages {
                let k = key(package);
                let dated = match visible.get(&k) {
                    Some(&(introduced, changed, previous)) => {
                        let changed = if same_record(previous, package) {
                            changed
                        } else {
                            index
                        };
                        (introduced, changed, package)
                    }
                    None => (index, index, package),
                };
                next.insert(k, dated);
            }
        }
        visible = next;
    }
    let layer_ref = |i: usize| LayerRef {
        index: i,
        digest: layers[i].digest.clone(),
    };
    let mut packages: Vec<ImagePackage> = visible
        .into_values()
        .map(|(introduced, changed, package)| ImagePackage {
            package: package.clone(),
            introduced_in: layer_ref(introduced),
            last_changed_in: layer_ref(changed),
        })
        .collect();
    packages.sort_by_key(|p| key(&p.package));
    // Lowest rank wins: /etc/os-release, /usr/lib/os-release, lsb-release, ..., debian_version.
    let distro = distros
        .iter()
        .filter_map(|(p, d)| crate::catalog::release_file_rank(p).map(|r| (r, *d)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, d)| d.clone());
    for p in &mut packages {
        crate::catalog::apply_distro(std::slice::from_mut(&mut p.package), distro.as_ref());
    }
    let mut summary = FilesSummary {
        truncated,
        ..Default::default()
    };
    for (path, state) in &files {
        match state.kind {
            FileKind::File => {
                summary.files += 1;
                summary.total_bytes += state.size;
                if state.mode & 0o4000 != 0 {
                    summary.setuid.push(path.to_string());
                }
                if state.mode & 0o2000 != 0 {
                    summary.setgid.push(path.to_string());
                }
            }
            FileKind::Dir => summary.directories += 1,
            FileKind::Symlink => summary.symlinks += 1,
            FileKind::HardLink => summary.hard_links += 1,
            FileKind::Other => summary.other += 1,
        }
    }
    Merged {
        packages,
        distro,
        files: summary,
    }
}

#[cfg(test)]
mod tests;
