//! SBOM writers: CycloneDX 1.5 and SPDX 2.3 documents validate with the upstream tools (python3 with
//! cyclonedx-python-lib's bundled schemas, and spdx-tools); our JSON round-trips; the table is aligned.

mod support;

use fathom_analyzer::catalog::default_catalogers;
use fathom_analyzer::sbom::{self, Format};
use fathom_analyzer::{Analyzer, AnalyzerOptions, ImageAnalysis, NoCache};
use fathom_testkit::samples::sample_images;
use fathom_testkit::{validate, BuiltImage, Compress};
use support::*;

fn analyses() -> Vec<ImageAnalysis> {
    let analyzer = Analyzer::new(default_catalogers(), AnalyzerOptions::default());
    let rt = runtime();
    sample_images()
        .iter()
        .map(|sample| {
            let built = BuiltImage::from_sample(sample, Compress::Gzip).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let source = layout(dir.path(), &built);
            rt.block_on(analyzer.analyze(&source, &NoCache)).unwrap()
        })
        .collect()
}

#[test]
fn cyclonedx_and_spdx_validate_against_upstream_tools() {
    let dir = tempfile::tempdir().unwrap();
    for analysis in analyses() {
        let name = analysis.image.reference.clone();
        assert!(!analysis.packages.is_empty(), "{name}");
        let cdx = dir.path().join(format!("{name}.cdx.json"));
        sbom::write(
            &analysis,
            Format::CycloneDxJson,
            std::fs::File::create(&cdx).unwrap(),
        )
        .unwrap();
        if let Err(output) = validate::cyclonedx(&cdx) {
            panic!("{name}: CycloneDX 1.5 schema validation failed: {output}");
        }
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
        let components = doc["components"].as_array().unwrap();
        assert_eq!(
            components.iter().filter(|c| c["type"] == "library").count(),
            analysis.packages.len(),
            "{name}"
        );
        let spdx = dir.path().join(format!("{name}.spdx.json"));
        sbom::write(
            &analysis,
            Format::SpdxJson,
            std::fs::File::create(&spdx).unwrap(),
        )
        .unwrap();
        if let Err(output) = validate::spdx(&spdx) {
            panic!("{name}: SPDX 2.3 validation failed: {output}");
        }
    }
}

#[test]
fn a_broken_document_fails_the_validators() {
    // The validation harness itself must be able to fail.
    let dir = tempfile::tempdir().unwrap();
    let cdx = dir.path().join("bad.cdx.json");
    std::fs::write(
        &cdx,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"nonsense"}]}"#,
    )
    .unwrap();
    let err = validate::cyclonedx(&cdx).unwrap_err();
    assert_ne!(err, validate::INSTALL, "{err}");
    let spdx = dir.path().join("bad.spdx.json");
    std::fs::write(&spdx, r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"x","dataLicense":"CC0-1.0","documentNamespace":"not a uri","creationInfo":{"created":"2024-01-01T00:00:00Z","creators":["Tool: x"]},"packages":[{"SPDXID":"SPDXRef-a","name":"a","downloadLocation":"NOASSERTION","licenseDeclared":"GPL-2+ or whatever"}]}"#).unwrap();
    let err = validate::spdx(&spdx).unwrap_err();
    assert_ne!(err, validate::INSTALL, "{err}");
}

#[test]
fn json_round_trips_and_table_lists_every_package() {
    let analysis = analyses().remove(0);
    let mut json = Vec::new();
    sbom::write(&analysis, Format::Json, &mut json).unwrap();
    let back: ImageAnalysis = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, analysis);
    let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(value["schema"], "fathom.analysis/v1");
    assert!(value["packages"][0]["introduced_in"]["digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let mut table = Vec::new();
    sbom::write(&analysis, Format::Table, &mut table).unwrap();
    let table = String::from_utf8(table).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("VERSION") && lines[0].contains("TYPE")
    );
    assert_eq!(lines.len(), analysis.packages.len() + 1);
    let version_col = lines[0].find("VERSION").unwrap();
    for (line, p) in lines[1..].iter().zip(&analysis.packages) {
        assert!(line.starts_with(&p.package.name));
        assert_eq!(
            &line[version_col..version_col + p.package.version.len()],
            p.package.version
        );
    }
}
