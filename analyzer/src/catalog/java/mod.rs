//! Java archives (jar, war, ear, ...): the main package from `META-INF/MANIFEST.MF` (named after
//! `pom.properties` when exactly one matches the file name), one package per other `pom.properties`, and
//! the same recursively for nested archives, under a depth and size budget.

mod meta;

use std::io::{Cursor, Read};

use zip::ZipArchive;

use self::meta::{FileName, Manifest, PomProperties};
use super::util::{basename, error, package, purl, sort};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::{Package, PackageType};

const NAME: &str = "java";

/// Archive extensions Syft treats as Java archives.
const EXTENSIONS: &[&str] = &[
    ".jar", ".war", ".ear", ".par", ".sar", ".nar", ".jpi", ".hpi", ".lpkg",
];

/// The outer archive is buffered whole; Spring Boot fat jars run to ~100 MiB, but memory is the budget.
const MAX_ARCHIVE: u64 = 64 * 1024 * 1024;
/// Nested archives are inflated into memory; each one and all of them together stay under these caps,
/// which also bounds zip bombs.
const MAX_NESTED: u64 = 32 * 1024 * 1024;
const MAX_NESTED_TOTAL: u64 = 128 * 1024 * 1024;
/// How deep archives inside archives are followed (a war's jar's jar is depth 2).
const MAX_DEPTH: usize = 4;
/// Manifests and pom.properties are tiny; anything larger is not read.
const MAX_TEXT: u64 = 1024 * 1024;

/// Reads Java archives.
#[derive(Debug, Default, Clone, Copy)]
pub struct JavaCataloger;

fn is_archive(path: &str) -> bool {
    let lower_ends = |ext: &str| {
        path.len() >= ext.len() && path[path.len() - ext.len()..].eq_ignore_ascii_case(ext)
    };
    EXTENSIONS.iter().any(|e| lower_ends(e))
}

impl Cataloger for JavaCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        if is_archive(entry.path) {
            Want::UpTo {
                max_bytes: MAX_ARCHIVE,
            }
        } else {
            Want::No
        }
    }

    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let path = file.meta.path;
        let mut walk = Walk {
            path,
            budget: MAX_NESTED_TOTAL,
            packages: Vec::new(),
        };
        walk.archive(file.bytes, basename(path), 0)
            .map_err(|m| error(NAME, path, m))?;
        let mut packages = walk.packages;
        sort(&mut packages);
        Ok(Found {
            packages,
            distro: None,
        })
    }
}

/// State of one outer archive's traversal.
struct Walk<'a> {
    /// The outer archive's path in the image: every package found inside is located there.
    path: &'a str,
    /// Bytes nested archives may still inflate.
    budget: u64,
    packages: Vec<Package>,
}

/// Reads a whole zip entry, refusing entries larger than `cap` whatever their header claims.
fn read_entry(
    zip: &mut ZipArchive<Cursor<&[u8]>>,
    index: usize,
    cap: u64,
) -> Result<Vec<u8>, String> {
    let entry = zip
        .by_index(index)
        .map_err(|e| format!("zip entry {index}: {e}"))?;
    let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
    let mut out = Vec::with_capacity(entry.size().min(cap) as usize);
    entry
        .take(cap + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{name}: {e}"))?;
    if out.len() as u64 > cap {
        return Err(format!("{name}: larger than {cap} bytes"));
    }
    Ok(out)
}

impl Walk<'_> {
    /// Catalogs one archive. Only a corrupt outer archive is an error; a corrupt nested one is skipped (the
    /// outer archive is still a valid package), as Syft does.
    fn archive(&mut self, bytes: &[u8], file_name: &str, depth: usize) -> Result<(), String> {
        let mut zip = ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| format!("not a readable zip archive: {e}"))?;
        // Raw names, lossily decoded: a name in an odd encoding must not hide the rest of the archive.
        let names: Vec<String> = zip
            .file_names_raw()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        let mut manifest_idx = None;
        let mut poms = Vec::new();
        let mut nested = Vec::new();
        for (i, n) in names.iter().enumerate() {
            let n = n.trim_start_matches('/');
            if n == "META-INF/MANIFEST.MF" {
                manifest_idx = Some(i);
            } else if n.ends_with("pom.properties") && n.starts_with("META-INF/maven/") {
                poms.push(i);
            } else if is_archive(n) && depth < MAX_DEPTH {
                nested.push(i);
            }
        }
        // Index order is the zip's own order, which is stable; Syft iterates a map, so ties may differ.
        let mut props = Vec::new();
        for i in &poms {
            let bytes = read_entry(&mut zip, *i, MAX_TEXT)?;
            let p = PomProperties::parse(&String::from_utf8_lossy(&bytes));
            if !p.artifact_id.is_empty() && !p.version.is_empty() {
                props.push(p);
            }
        }
        let manifest = match manifest_idx {
            Some(i) => {
                let bytes = read_entry(&mut zip, i, MAX_TEXT)?;
                // A manifest that does not parse yields no main package (Syft logs and moves on).
                Manifest::parse(&String::from_utf8_lossy(&bytes)).ok()
            }
            None => None,
        };
        if let Some(manifest) = manifest {
            self.main_and_poms(&manifest, &props, &FileName::parse(file_name), poms.len());
        }
        for i in nested {
            let Ok(inner) = read_entry(&mut zip, i, MAX_NESTED.min(self.budget)) else {
                continue;
            };
            self.budget = self.budget.saturating_sub(inner.len() as u64);
            let inner_name = basename(&names[i]).to_owned();
            // A corrupt nested archive is skipped, not fatal.
            let _ = self.archive(&inner, &inner_name, depth + 1);
        }
        Ok(())
    }

    /// The main package (needs a manifest) and one package per pom.properties that is not the main one.
    fn main_and_poms(
        &mut self,
        manifest: &Manifest,
        props: &[PomProperties],
        file: &FileName,
        pom_count: usize,
    ) {
        // With exactly one pom.properties whose artifactId extends the file name, it names the archive.
        let matching = (pom_count == 1 && !file.name.is_empty())
            .then(|| props.iter().find(|p| p.artifact_id.starts_with(&file.name)))
            .flatten();
        let mut name = matching
            .map(|p| p.artifact_id.clone())
            .unwrap_or_else(|| manifest.select_name(file));
        let mut version = matching
            .map(|p| p.version.clone())
            .unwrap_or_else(|| manifest.select_version(file));
        let mut group = matching
            .map(|p| p.group_id.clone())
            .or_else(|| manifest.group_id());
        let mut others = Vec::new();
        for p in props {
            // Same identity as the main package: it only refines the main package's name, version and group.
            if p.artifact_id == name {
                name.clone_from(&p.artifact_id);
                version.clone_from(&p.version);
                group = Some(p.group_id.clone());
                continue;
            }
            others.push(self.maven_package(&p.group_id, &p.artifact_id, &p.version, vec![]));
        }
        if !name.is_empty() {
            let g = group
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| name.clone());
            let pkg = self.maven_package(&g, &name, &version, manifest.licenses());
            self.packages.push(pkg);
        }
        self.packages.extend(others);
    }

    fn maven_package(
        &self,
        group: &str,
        artifact: &str,
        version: &str,
        licenses: Vec<String>,
    ) -> Package {
        let purl = purl("maven", Some(group), artifact, version, &[]);
        let mut p = package(
            NAME,
            PackageType::JavaArchive,
            artifact,
            version,
            purl,
            licenses,
            self.path,
        );
        if !group.is_empty() {
            p.metadata.insert("group_id".into(), group.to_owned());
        }
        p
    }
}

#[cfg(test)]
mod tests;
