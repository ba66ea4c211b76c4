//! CycloneDX 1.5 JSON (validated against the upstream schema in `tests/sbom.rs`).

use serde_json::{json, Value};

use super::{image_name, timestamp};
use crate::analyze::ImageAnalysis;

/// Builds the CycloneDX document: the image as the metadata component, the distro as an
/// operating-system component, one library component per package.
pub(super) fn document(analysis: &ImageAnalysis) -> Value {
    let mut components = Vec::with_capacity(analysis.packages.len() + 1);
    if let Some(distro) = &analysis.distro {
        let mut os = json!({
            "bom-ref": "os",
            "type": "operating-system",
            "name": distro.id,
        });
        if !distro.version_id.is_empty() {
            os["version"] = json!(distro.version_id);
        }
        if !distro.pretty_name.is_empty() {
            os["description"] = json!(distro.pretty_name);
        }
        components.push(os);
    }
    for (i, p) in analysis.packages.iter().enumerate() {
        let pkg = &p.package;
        let mut properties = vec![
            json!({"name": "fathom:package:type", "value": pkg.package_type.as_str()}),
            json!({"name": "fathom:package:foundBy", "value": pkg.found_by}),
            json!({"name": "fathom:layer:introduced", "value": p.introduced_in.digest}),
            json!({"name": "fathom:layer:lastChanged", "value": p.last_changed_in.digest}),
        ];
        for (n, loc) in pkg.locations.iter().enumerate() {
            properties
                .push(json!({"name": format!("fathom:location:{n}:path"), "value": loc.path}));
            properties.push(
                json!({"name": format!("fathom:location:{n}:layer"), "value": loc.layer_digest}),
            );
        }
        for (k, v) in &pkg.metadata {
            properties.push(json!({"name": format!("fathom:metadata:{k}"), "value": v}));
        }
        let mut c = json!({
            "bom-ref": format!("pkg-{i}"),
            "type": "library",
            "name": pkg.name,
            "version": pkg.version,
            "properties": properties,
        });
        if !pkg.purl.is_empty() {
            c["purl"] = json!(pkg.purl);
        }
        if !pkg.licenses.is_empty() {
            c["licenses"] = Value::Array(
                pkg.licenses
                    .iter()
                    .map(|l| json!({"license": {"name": l}}))
                    .collect(),
            );
        }
        components.push(c);
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "version": 1,
        "metadata": {
            "timestamp": timestamp(),
            "tools": {
                "components": [{
                    "type": "application",
                    "author": "fathom",
                    "name": "fathom",
                    "version": analysis.analyzer.version,
                }]
            },
            "component": {
                "bom-ref": "image",
                "type": "container",
                "name": image_name(analysis),
                "version": analysis.image.manifest_digest,
                "properties": [
                    {"name": "fathom:image:configDigest", "value": analysis.image.config_digest},
                    {"name": "fathom:image:platform", "value": analysis.image.platform.to_string()},
                ],
            },
        },
        "components": components,
    })
}
