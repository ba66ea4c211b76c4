//! License parity with Syft on the sample images: every package both tools report carries the same
//! licenses (Syft's `spdxExpression`, else its raw `value`), except the differences DIFFERENCES.md lists.
//! Needs Syft: `FATHOM_SYFT=/path/to/syft` or `syft` on PATH; without it the test says so and passes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use fathom_analyzer::catalog::default_catalogers;
use fathom_analyzer::{Analyzer, AnalyzerOptions, NoCache};
use fathom_testkit::samples::sample_images;
use fathom_testkit::{BuiltImage, Compress};
use support::{layout, runtime};

type Licenses = BTreeMap<(String, String), BTreeSet<String>>;

fn syft() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FATHOM_SYFT") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("syft"))
        .find(|p| p.is_file())
}

/// `(name, version)` → licenses of every package in a `syft -o json` document.
fn syft_licenses(doc: &serde_json::Value) -> Licenses {
    let mut out = Licenses::new();
    for a in doc["artifacts"].as_array().into_iter().flatten() {
        let key = (
            a["name"].as_str().unwrap_or_default().to_string(),
            a["version"].as_str().unwrap_or_default().to_string(),
        );
        let licenses = a["licenses"].as_array().into_iter().flatten().map(|l| {
            let spdx = l["spdxExpression"].as_str().unwrap_or_default();
            let raw = l["value"].as_str().unwrap_or_default();
            if spdx.is_empty() { raw } else { spdx }.to_string()
        });
        out.entry(key).or_default().extend(licenses);
    }
    out
}

/// Packages (by name) whose licenses differ from Syft's on purpose; see DIFFERENCES.md.
const KNOWN: &[&str] = &[];

#[test]
fn licenses_match_syft_on_the_sample_images() {
    let Some(syft) = syft() else {
        eprintln!("skipped: Syft not found (set FATHOM_SYFT or put syft on PATH)");
        return;
    };
    let mut unexpected = Vec::new();
    let mut compared = 0;
    for sample in sample_images() {
        let built = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let source = layout(dir.path(), &built);
        let out = Command::new(&syft)
            .arg("scan")
            .arg(format!("oci-dir:{}", dir.path().display()))
            .args(["-o", "json", "-q"])
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
            .env("SYFT_CACHE_DIR", dir.path().join("syft-cache"))
            .output()
            .expect("run syft");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs = syft_licenses(&serde_json::from_slice(&out.stdout).unwrap());
        let analyzer = Analyzer::new(default_catalogers(), AnalyzerOptions::default());
        let ours = runtime()
            .block_on(analyzer.analyze(&source, &NoCache))
            .unwrap();
        for p in &ours.packages {
            let p = &p.package;
            let Some(want) = theirs.get(&(p.name.clone(), p.version.clone())) else {
                continue;
            };
            compared += 1;
            let have: BTreeSet<String> = p.licenses.iter().cloned().collect();
            if &have != want {
                let line = format!(
                    "{}: {} {} {}: fathom {have:?}, syft {want:?}",
                    sample.name,
                    p.package_type.as_str(),
                    p.name,
                    p.version
                );
                eprintln!("{line}");
                if !KNOWN.contains(&p.name.as_str()) {
                    unexpected.push(line);
                }
            }
        }
    }
    assert!(compared > 0, "no package in common with Syft");
    assert!(unexpected.is_empty(), "{unexpected:#?}");
}
