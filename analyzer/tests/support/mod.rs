//! Shared helpers of the analyzer's integration tests: a tiny cataloger with a text format, entry
//! builders, and one-call analysis of built images.
#![allow(dead_code)]

pub mod streamed;

use std::path::Path;

use fathom_analyzer::analyze::{Analyzer, AnalyzerOptions, ImageAnalysis};
use fathom_analyzer::catalog::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use fathom_analyzer::model::{Location, Package, PackageType};
use fathom_analyzer::{AnalyzeError, ImageSource, LayerCache, NoCache};
use fathom_testkit::samples::{SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, LayoutEntry};

/// Reads `*.pkglist` files: one `name version [license]` per line. Lines `!panic` and `!error` misbehave on purpose.
pub struct ListCataloger;

impl Cataloger for ListCataloger {
    fn name(&self) -> &'static str {
        "pkglist"
    }
    fn version(&self) -> u32 {
        1
    }
    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        if entry.path.ends_with(".pkglist") {
            Want::UpTo { max_bytes: 1 << 20 }
        } else {
            Want::No
        }
    }
    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let text = std::str::from_utf8(file.bytes).map_err(|e| CatalogError {
            cataloger: "pkglist",
            path: file.meta.path.to_string(),
            message: e.to_string(),
        })?;
        let mut found = Found::default();
        for line in text.lines() {
            if line == "!panic" {
                panic!("pkglist cataloger asked to panic");
            }
            if line == "!error" {
                return Err(CatalogError {
                    cataloger: "pkglist",
                    path: file.meta.path.to_string(),
                    message: "asked to fail".into(),
                });
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(version)) = (words.next(), words.next()) else {
                continue;
            };
            let license = words.next().unwrap_or("MIT");
            found.packages.push(Package {
                name: name.into(),
                version: version.into(),
                package_type: PackageType::Deb,
                purl: format!("pkg:deb/test/{name}@{version}"),
                licenses: vec![license.into()],
                locations: vec![Location {
                    path: file.meta.path.to_string(),
                    layer_digest: String::new(),
                }],
                found_by: "pkglist".into(),
                metadata: Default::default(),
            });
        }
        Ok(found)
    }
}

pub fn file(path: &str, bytes: &[u8]) -> SampleEntry {
    SampleEntry::file(path, bytes)
}

pub fn dir(path: &str) -> SampleEntry {
    SampleEntry::dir(path)
}

pub fn symlink(path: &str, target: &str) -> SampleEntry {
    SampleEntry {
        path: path.into(),
        mode: 0o777,
        kind: SampleKind::Symlink(target.into()),
    }
}

pub fn hardlink(path: &str, target: &str) -> SampleEntry {
    SampleEntry {
        path: path.into(),
        mode: 0o644,
        kind: SampleKind::HardLink(target.into()),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

pub fn list_analyzer(options: AnalyzerOptions) -> Analyzer {
    Analyzer::new(vec![Box::new(ListCataloger)], options)
}

/// Writes `image` as an OCI layout under `dir` (ref name = image name) and returns its source.
pub fn layout(dir: &Path, image: &BuiltImage) -> ImageSource {
    fathom_testkit::image::write_oci_layout(
        dir,
        &[(image.name.as_str(), LayoutEntry::Image(image))],
    )
    .expect("write layout");
    ImageSource::OciDir {
        path: dir.to_path_buf(),
        reference: Some(image.name.clone()),
    }
}

/// Analyzes a built image from a fresh OCI layout with the list cataloger.
pub fn analyze_image(image: &BuiltImage) -> Result<ImageAnalysis, AnalyzeError> {
    analyze_image_with(image, AnalyzerOptions::default(), &NoCache)
}

pub fn analyze_image_with(
    image: &BuiltImage,
    options: AnalyzerOptions,
    cache: &dyn LayerCache,
) -> Result<ImageAnalysis, AnalyzeError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = layout(dir.path(), image);
    runtime().block_on(list_analyzer(options).analyze(&source, cache))
}

/// (name, version, introduced layer, last changed layer) of every package.
pub fn dated(analysis: &ImageAnalysis) -> Vec<(String, String, usize, usize)> {
    analysis
        .packages
        .iter()
        .map(|p| {
            (
                p.package.name.clone(),
                p.package.version.clone(),
                p.introduced_in.index,
                p.last_changed_in.index,
            )
        })
        .collect()
}
