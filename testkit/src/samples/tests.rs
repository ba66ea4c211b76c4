//! Every sample image, squashed the way a container runtime would, cataloged by the default catalogers,
//! gives exactly its expected package list.

use std::collections::BTreeMap;

use super::*;
use fathom_analyzer::catalog::{default_catalogers, EntryMeta, FileInput, Want};

/// The final filesystem: layers applied in order, whiteouts and opaque directories honored.
fn squash(image: &SampleImage) -> BTreeMap<String, SampleEntry> {
    let mut fs: BTreeMap<String, SampleEntry> = BTreeMap::new();
    for layer in &image.layers {
        for e in layer {
            let (parent, name) = e.path.rsplit_once('/').unwrap_or(("", &e.path));
            if name == ".wh..wh..opq" {
                let prefix = format!("{parent}/");
                fs.retain(|p, _| !p.starts_with(&prefix));
            } else if let Some(victim) = name.strip_prefix(".wh.") {
                let gone = format!("{parent}/{victim}");
                let prefix = format!("{gone}/");
                fs.retain(|p, _| p != &gone && !p.starts_with(&prefix));
            }
        }
        for e in layer
            .iter()
            .filter(|e| !e.path.rsplit('/').next().unwrap_or("").starts_with(".wh."))
        {
            fs.insert(e.path.clone(), e.clone());
        }
    }
    fs
}

fn catalog(image: &SampleImage) -> Vec<ExpectedPackage> {
    let catalogers = default_catalogers();
    let mut found = Vec::new();
    for e in squash(image).values() {
        let SampleKind::File(bytes) = &e.kind else {
            continue;
        };
        let meta = EntryMeta {
            path: &e.path,
            mode: e.mode,
            size: bytes.len() as u64,
        };
        for c in &catalogers {
            if let Want::UpTo { max_bytes } = c.wants(&meta) {
                assert!(
                    bytes.len() as u64 <= max_bytes,
                    "{} over {}'s cap",
                    e.path,
                    c.name()
                );
                let out = c
                    .catalog(&FileInput { meta, bytes })
                    .unwrap_or_else(|err| panic!("{err}"));
                found.extend(out.packages.into_iter().map(|p| ExpectedPackage {
                    package_type: p.package_type,
                    name: p.name,
                    version: p.version,
                }));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_sample_image_yields_exactly_its_expected_packages() {
    let images = sample_images();
    assert_eq!(images.len(), 4);
    for image in &images {
        let expected = expected_packages(&image.name);
        assert!(!expected.is_empty(), "{}", image.name);
        assert_eq!(catalog(image), expected, "{}", image.name);
    }
}

#[test]
fn debian_images_share_their_base_layer() {
    let images = sample_images();
    assert_eq!(images[0].layers[0], images[1].layers[0]);
    let base_files = images[0].layers[0]
        .iter()
        .filter(|e| matches!(e.kind, SampleKind::File(_)))
        .count();
    assert!(base_files > 500, "{base_files}");
}

#[test]
fn whiteouts_remove_what_they_name() {
    let fs = squash(&sample_images()[0]);
    assert!(!fs.keys().any(|p| p.contains("rich-13.9.4.dist-info")));
    assert!(!fs.contains_key("/app/node_modules/ms/package.json"));
    assert!(!fs.keys().any(|p| p.starts_with("/usr/share/man/")));
    assert!(fs.contains_key("/app/node_modules/axios/package.json"));
}

#[test]
fn code_like_bytes_are_deterministic_and_compress_like_binaries() {
    use std::io::Write;
    let a = code_like_bytes(1 << 20, 9);
    assert_eq!(a, code_like_bytes(1 << 20, 9));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&a).unwrap();
    let ratio = a.len() as f64 / gz.finish().unwrap().len() as f64;
    assert!((1.5..5.0).contains(&ratio), "gzip ratio {ratio}");
}

#[test]
fn large_image_is_large_and_holds_only_the_base_packages() {
    let img = large_image();
    let files: Vec<usize> = img
        .layers
        .iter()
        .flatten()
        .filter_map(|e| match &e.kind {
            SampleKind::File(b) => Some(b.len()),
            _ => None,
        })
        .collect();
    let total: usize = files.iter().sum();
    assert!(files.len() > 30_000, "{} files", files.len());
    assert!((120_000_000..200_000_000).contains(&total), "{total} bytes");
    // Only the Debian base's packages: the bulk is ordinary files.
    let debs = catalog(&img);
    assert_eq!(debs.len(), super::debian::bookworm_minbase().len());
    assert!(debs.iter().all(|p| p.package_type == PackageType::Deb));
}
