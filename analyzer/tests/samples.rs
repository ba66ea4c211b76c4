//! The realistic sample images, built in-process and scanned with the default catalogers, report exactly
//! the packages each sample is known to contain.

mod support;

use std::collections::BTreeSet;

use fathom_analyzer::catalog::default_catalogers;
use fathom_analyzer::{Analyzer, AnalyzerOptions, NoCache};
use fathom_testkit::samples::{expected_packages, sample_images};
use fathom_testkit::{BuiltImage, Compress};
use support::*;

#[test]
fn sample_images_report_their_expected_packages() {
    let analyzer = Analyzer::new(default_catalogers(), AnalyzerOptions::default());
    let rt = runtime();
    let samples = sample_images();
    assert!(samples.len() >= 4);
    for (i, sample) in samples.iter().enumerate() {
        let compress = if i % 2 == 0 {
            Compress::Gzip
        } else {
            Compress::Zstd
        };
        let built = BuiltImage::from_sample(sample, compress).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = layout(dir.path(), &built);
        let analysis = rt.block_on(analyzer.analyze(&source, &NoCache)).unwrap();
        let got: BTreeSet<(String, String, String)> = analysis
            .packages
            .iter()
            .map(|p| {
                (
                    p.package.package_type.as_str().to_string(),
                    p.package.name.clone(),
                    p.package.version.clone(),
                )
            })
            .collect();
        let want: BTreeSet<(String, String, String)> = expected_packages(&sample.name)
            .into_iter()
            .map(|p| (p.package_type.as_str().to_string(), p.name, p.version))
            .collect();
        assert!(!want.is_empty(), "{} has no expected packages", sample.name);
        let missing: Vec<_> = want.difference(&got).collect();
        let extra: Vec<_> = got.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: missing {missing:?}, extra {extra:?}",
            sample.name
        );
        assert!(analysis.distro.is_some(), "{}: no distro", sample.name);
        for p in &analysis.packages {
            assert!(
                !p.package.purl.is_empty(),
                "{}: {} has no purl",
                sample.name,
                p.package.name
            );
            for l in &p.package.locations {
                assert!(
                    analysis
                        .image
                        .layers
                        .iter()
                        .any(|layer| layer.digest == l.layer_digest),
                    "{l:?}"
                );
            }
        }
    }
}

/// Debian's `docker-registry` (`apt-get install docker-registry`, which the registry tests need anyway): a
/// GOPATH build whose build info has only `path` and no `-ldflags`; its version `2.8.2+ds1` is a `-X`
/// string in the binary's data, where Syft finds it.
#[test]
fn debian_docker_registry_main_module_has_syfts_version_in_the_sbom() {
    let binary = std::fs::read("/usr/bin/docker-registry")
        .expect("/usr/bin/docker-registry (apt-get install docker-registry)");
    let mut registry = file("/usr/bin/docker-registry", &binary);
    registry.mode = 0o755;
    let sample = fathom_testkit::samples::SampleImage {
        name: "debian-docker-registry".into(),
        layers: vec![vec![dir("/usr"), dir("/usr/bin"), registry]],
    };
    let built = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = layout(dir.path(), &built);
    let analyzer = Analyzer::new(default_catalogers(), AnalyzerOptions::default());
    let analysis = runtime()
        .block_on(analyzer.analyze(&source, &NoCache))
        .unwrap();
    let main = analysis
        .packages
        .iter()
        .map(|p| &p.package)
        .find(|p| p.name == "github.com/docker/distribution/cmd/registry")
        .unwrap_or_else(|| panic!("no main module: {:#?}", analysis.packages));
    assert_eq!(main.version, "v2.8.2+ds1");
    assert_eq!(
        main.purl,
        "pkg:golang/github.com/docker/distribution@v2.8.2%2Bds1#cmd/registry"
    );
    let mut cdx = Vec::new();
    fathom_analyzer::sbom::write(
        &analysis,
        fathom_analyzer::sbom::Format::CycloneDxJson,
        &mut cdx,
    )
    .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&cdx).unwrap();
    let component = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "github.com/docker/distribution/cmd/registry")
        .unwrap();
    assert_eq!(component["version"], "v2.8.2+ds1", "{component}");
}
