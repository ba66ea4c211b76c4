//! SBOM writers: CycloneDX 1.5 and SPDX 2.3 documents validate with the upstream tools (python3 with
//! cyclonedx-python-lib's bundled schemas, and spdx-tools); our JSON round-trips; the table is aligned.

mod support;

use std::path::Path;
use std::process::Command;

use fathom_worker::catalog::default_catalogers;
use fathom_worker::samples::sample_images;
use fathom_worker::sbom::{self, Format};
use fathom_worker::testkit::{BuiltImage, Compress};
use fathom_worker::{Analyzer, AnalyzerOptions, ImageAnalysis, NoCache};
use support::*;

const INSTALL: &str = "SBOM validators missing: run `python3 -m pip install 'cyclonedx-python-lib[json-validation]' spdx-tools` (scripts/deps.d/20-analyzer.sh does it)";

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

fn python(script: &str, file: &Path) -> (bool, String) {
    let check = Command::new("python3")
        .args([
            "-c",
            "import cyclonedx.validation.json, spdx_tools, jsonschema",
        ])
        .output();
    match check {
        Ok(out) if out.status.success() => {}
        _ => panic!("{INSTALL}"),
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(file)
        .output()
        .expect("python3");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const CYCLONEDX: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())
if errors:
    print(errors)
    sys.exit(1)
"#;

const SPDX: &str = r#"
import sys
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
messages = validate_full_spdx_document(parse_file(sys.argv[1]))
for m in messages:
    print(m.validation_message, m.context)
sys.exit(1 if messages else 0)
"#;

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
        let (ok, output) = python(CYCLONEDX, &cdx);
        assert!(
            ok,
            "{name}: CycloneDX 1.5 schema validation failed: {output}"
        );
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
        let (ok, output) = python(SPDX, &spdx);
        assert!(ok, "{name}: SPDX 2.3 validation failed: {output}");
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
    assert!(!python(CYCLONEDX, &cdx).0);
    let spdx = dir.path().join("bad.spdx.json");
    std::fs::write(&spdx, r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"x","dataLicense":"CC0-1.0","documentNamespace":"not a uri","creationInfo":{"created":"2024-01-01T00:00:00Z","creators":["Tool: x"]},"packages":[{"SPDXID":"SPDXRef-a","name":"a","downloadLocation":"NOASSERTION","licenseDeclared":"GPL-2+ or whatever"}]}"#).unwrap();
    assert!(!python(SPDX, &spdx).0);
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
