//! SPDX 2.3 JSON (validated with spdx-tools in `tests/sbom.rs`).
//!
//! License strings that are not valid SPDX expressions (`GPL-2+`, `BSD`) become `LicenseRef-` identifiers
//! declared in `hasExtractedLicensingInfos` with the original text, as SPDX requires.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{image_name, timestamp};
use crate::analyze::ImageAnalysis;

/// SPDX identifiers allow only `[A-Za-z0-9.-]`.
fn id_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A license string as an SPDX expression, registering a `LicenseRef-` when it is not one.
fn license_expression(license: &str, extracted: &mut BTreeMap<String, String>) -> String {
    let valid = spdx::Expression::parse_mode(license, spdx::ParseMode::STRICT).is_ok();
    if valid {
        return license.to_string();
    }
    let id = format!("LicenseRef-{}", id_safe(license));
    extracted.insert(id.clone(), license.to_string());
    id
}

/// Builds the SPDX document: the image package describes the document and contains every package.
pub(super) fn document(analysis: &ImageAnalysis) -> Value {
    let name = image_name(analysis);
    let mut extracted = BTreeMap::new();
    let mut packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": name,
        "versionInfo": analysis.image.manifest_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    if let Some(distro) = &analysis.distro {
        packages.push(json!({
            "SPDXID": "SPDXRef-OperatingSystem",
            "name": distro.id,
            "versionInfo": distro.version_id,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": "SPDXRef-OperatingSystem",
        }));
    }
    for (i, p) in analysis.packages.iter().enumerate() {
        let pkg = &p.package;
        let id = format!("SPDXRef-Package-{}-{i}", pkg.package_type.as_str());
        let declared = if pkg.licenses.is_empty() {
            "NOASSERTION".to_string()
        } else {
            let parts: Vec<String> = pkg
                .licenses
                .iter()
                .map(|l| license_expression(l, &mut extracted))
                .map(|e| {
                    if pkg.licenses.len() > 1 && e.contains(' ') {
                        format!("({e})")
                    } else {
                        e
                    }
                })
                .collect();
            parts.join(" AND ")
        };
        let locations: Vec<String> = pkg
            .locations
            .iter()
            .map(|l| format!("{} (layer {})", l.path, l.layer_digest))
            .collect();
        let mut entry = json!({
            "SPDXID": id,
            "name": pkg.name,
            "versionInfo": pkg.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("found by fathom {} cataloger in {}", pkg.found_by, locations.join(", ")),
            "primaryPackagePurpose": "LIBRARY",
        });
        if !pkg.purl.is_empty() {
            entry["externalRefs"] = json!([{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": pkg.purl,
            }]);
        }
        packages.push(entry);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!(
            "https://fathom.invalid/spdx/{}-{}",
            id_safe(&name),
            uuid::Uuid::new_v4()
        ),
        "creationInfo": {
            "created": timestamp(),
            "creators": [format!("Tool: fathom-{}", analysis.analyzer.version)],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !extracted.is_empty() {
        doc["hasExtractedLicensingInfos"] = Value::Array(
            extracted
                .into_iter()
                .map(|(id, text)| json!({"licenseId": id, "extractedText": text, "name": text}))
                .collect(),
        );
    }
    doc
}
