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
