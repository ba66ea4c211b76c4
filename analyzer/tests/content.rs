//! The content pass on the sample images: setuid files in the inventory, planted secrets found with their
//! values absent from every output format, deb licenses from copyright files, the packages-only switch.

mod support;

use fathom_analyzer::catalog::default_catalogers;
use fathom_analyzer::content::ContentOptions;
use fathom_analyzer::layer::FileKind;
use fathom_analyzer::model::PackageType;
use fathom_analyzer::sbom::{self, Format};
use fathom_analyzer::{Analyzer, AnalyzerOptions, ImageAnalysis, NoCache};
use fathom_testkit::samples::{
    expected_secrets, sample_images, PLANTED_AWS_KEY, PLANTED_PEM_BODY, PLANTED_SETGID,
    PLANTED_SETUID,
};
use fathom_testkit::{BuiltImage, Compress};
use support::*;

fn scan(name: &str, content: ContentOptions) -> ImageAnalysis {
    let sample = sample_images()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    let built = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = layout(dir.path(), &built);
    let options = AnalyzerOptions {
        content,
        ..Default::default()
    };
    let analyzer = Analyzer::new(default_catalogers(), options);
    runtime()
        .block_on(analyzer.analyze(&source, &NoCache))
        .unwrap()
}

#[test]
fn planted_secrets_are_found_and_their_values_never_written() {
    let content = ContentOptions {
        entries_in_document: true,
        ..Default::default()
    };
    let a = scan("debian-python-npm", content);
    let got: Vec<(String, u64, String)> = a
        .secrets
        .iter()
        .map(|s| (s.path.clone(), s.line, s.rule.clone()))
        .collect();
    assert_eq!(got, expected_secrets("debian-python-npm"));
    // The deleted `/app/old.env` held the same key: not visible, not reported.
    assert!(a.secrets.iter().all(|s| s.layer.index == 2));
    for format in [
        Format::Json,
        Format::CycloneDxJson,
        Format::SpdxJson,
        Format::Table,
    ] {
        let mut out = Vec::new();
        sbom::write(&a, format, &mut out).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains(PLANTED_AWS_KEY), "{format:?}");
        assert!(!text.contains(PLANTED_PEM_BODY), "{format:?}");
    }
    assert!(!format!("{:?}", a.warnings).contains(PLANTED_AWS_KEY));
}

#[test]
fn inventory_has_setuid_setgid_and_digests() {
    let content = ContentOptions {
        entries_in_document: true,
        ..Default::default()
    };
    let a = scan("debian-python-npm", content);
    let entries = &a.files.entries;
    let su = entries
        .iter()
        .find(|f| f.entry.path == PLANTED_SETUID)
        .unwrap();
    assert!(su.entry.setuid() && !su.entry.setgid());
    assert_eq!(su.entry.mode, 0o4755);
    assert_eq!(
        su.entry.sha256.as_deref(),
        Some(sha256_hex(b"#!/bin/sh\nexec id\n").as_str())
    );
    let sg = entries
        .iter()
        .find(|f| f.entry.path == PLANTED_SETGID)
        .unwrap();
    assert!(sg.entry.setgid());
    assert!(a.files.setuid.contains(&PLANTED_SETUID.to_string()));
    // Whiteouts apply: the deleted file and the opaque man pages are gone.
    assert!(!entries.iter().any(|f| f.entry.path == "/app/old.env"));
    assert!(!entries
        .iter()
        .any(|f| f.entry.path.starts_with("/usr/share/man/man1/")));
    // The inventory matches the summary's counts.
    let files = entries
        .iter()
        .filter(|f| f.entry.kind == FileKind::File)
        .count() as u64;
    assert_eq!(files, a.files.files);
    assert!(entries
        .iter()
        .filter(|f| f.entry.kind == FileKind::File)
        .all(|f| f.entry.sha256.is_some()));
}

#[test]
fn deb_packages_get_copyright_licenses() {
    let a = scan("debian-java-go", ContentOptions::default());
    let debs: Vec<_> = a
        .packages
        .iter()
        .filter(|p| p.package.package_type == PackageType::Deb)
        .collect();
    assert!(!debs.is_empty());
    for p in &debs {
        assert_eq!(
            p.package.licenses,
            ["GPL-2.0-or-later"],
            "{}",
            p.package.name
        );
    }
    // Without the document entries the inventory stays out of the document.
    assert!(a.files.entries.is_empty());
}

#[test]
fn packages_only_collects_no_content() {
    let a = scan("debian-python-npm", ContentOptions::off());
    assert!(a.secrets.is_empty());
    assert!(a
        .packages
        .iter()
        .filter(|p| p.package.package_type == PackageType::Deb)
        .all(|p| p.package.licenses.is_empty()));
    let on = Analyzer::new(default_catalogers(), AnalyzerOptions::default());
    let off = Analyzer::new(
        default_catalogers(),
        AnalyzerOptions {
            content: ContentOptions::off(),
            ..Default::default()
        },
    );
    assert_ne!(on.cache_key(), off.cache_key());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// What the store pays for the inventory: each layer result is stored as zstd(JSON) at level 3 (as the
/// worker's store does), so the cost per file is the compressed size with the inventory minus without.
#[test]
fn the_inventory_stays_compact_in_stored_layer_results() {
    let mut files = 0usize;
    let (mut with, mut without) = (0usize, 0usize);
    for sample in sample_images() {
        let built = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = layout(dir.path(), &built);
        let cache = fathom_analyzer::MemoryCache::new();
        let analyzer = Analyzer::new(default_catalogers(), AnalyzerOptions::default());
        let a = runtime()
            .block_on(analyzer.analyze(&source, &cache))
            .unwrap();
        for layer in &a.image.layers {
            let mut r = runtime()
                .block_on(fathom_analyzer::LayerCache::get(
                    &cache,
                    &layer.digest,
                    analyzer.cache_key(),
                ))
                .unwrap()
                .unwrap();
            let size = |r: &fathom_analyzer::layer::LayerResult| {
                zstd::bulk::compress(&serde_json::to_vec(r).unwrap(), 3)
                    .unwrap()
                    .len()
            };
            files += r.files.len();
            with += size(&r);
            r.files.clear();
            without += size(&r);
        }
    }
    let per_file = (with - without) as f64 / files as f64;
    eprintln!(
        "inventory: {files} files, {per_file:.1} bytes/file compressed ({:.1} MB per million files)",
        per_file
    );
    assert!(files > 2000, "{files}");
    // A sha256 alone is 32 incompressible bytes; path, mode, owner and size compress to a few more.
    assert!(per_file < 80.0, "{per_file} bytes per file");
}

#[test]
fn image_config_facts_reach_the_document_without_env_values() {
    let sample = sample_images().remove(3);
    let mut built = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&built.config).unwrap();
    config["config"] = serde_json::json!({
        "User": "1000:1000",
        "ExposedPorts": {"8443/tcp": {}},
        "Env": ["PATH=/usr/bin", "DB_PASSWORD=s3cr3t-value-xyz"],
        "Healthcheck": {"Test": ["CMD-SHELL", "wget -q -O- localhost:8443/health"]},
        "Entrypoint": ["/entry.sh"],
        "Labels": {"org.opencontainers.image.source": "https://example.com/app"}
    });
    config["history"] = serde_json::json!([
        {"created_by": "/bin/sh -c #(nop) ADD file:123 in / "},
        {"created_by": "/bin/sh -c #(nop)  USER 1000:1000", "empty_layer": true}
    ]);
    built.config = config.to_string().into_bytes();
    built.set_manifest(|_| {});
    let dir = tempfile::tempdir().unwrap();
    let source = layout(dir.path(), &built);
    let analyzer = Analyzer::new(default_catalogers(), AnalyzerOptions::default());
    let a = runtime()
        .block_on(analyzer.analyze(&source, &NoCache))
        .unwrap();
    let facts = &a.image.config;
    assert_eq!(facts.user, "1000:1000");
    assert_eq!(facts.exposed_ports, ["8443/tcp"]);
    assert_eq!(facts.env_names, ["PATH", "DB_PASSWORD"]);
    assert_eq!(facts.entrypoint, ["/entry.sh"]);
    assert_eq!(
        facts.history[1].created_by,
        "/bin/sh -c #(nop)  USER 1000:1000"
    );
    assert!(facts.healthcheck.is_some());
    assert_eq!(facts.architecture, "amd64");
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains("s3cr3t-value-xyz"));
}
