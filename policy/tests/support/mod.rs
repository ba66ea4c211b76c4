//! Shared test support: a clock, generated image facts and one-rule bundles.
#![allow(dead_code)]

use fathom_policy::{
    evaluate, Bundle, Cvss, Evaluation, FeedStatus, FileEntry, ImageFacts, Package, Row, Severity,
    ValidatedBundle, VulnMatch,
};
use jiff::Timestamp;
use serde_json::{json, Value};

/// The fixed evaluation clock.
pub fn now() -> Timestamp {
    "2024-06-01T00:00:00Z".parse().expect("valid instant")
}

/// `now` minus `days`.
pub fn days_ago(days: i64) -> Timestamp {
    now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * days))
        .expect("in range")
}

/// A small image with every data source present and empty, and a fresh feed.
pub fn image() -> ImageFacts {
    let mut f = ImageFacts::default();
    f.image.digest = "sha256:aaaa".into();
    f.image.id = "imageid1".into();
    f.image.registry = "docker.io".into();
    f.image.repository = "library/app".into();
    f.image.tag = Some("1.0".into());
    f.image.distro = Some("debian".into());
    f.image.distro_version = Some("12".into());
    f.image.like_distro = Some("debian".into());
    f.image.architecture = Some("amd64".into());
    f.image.os_type = Some("linux".into());
    f.image.size = 50 * 1024 * 1024;
    f.image.layer_count = 3;
    f.files = Some(Vec::new());
    f.content_matches = Some(Vec::new());
    f.secrets = Some(Vec::new());
    f.vulnerabilities = Some(Vec::new());
    f.feed = FeedStatus {
        last_sync: Some(days_ago(0)),
        distro_data: true,
    };
    f
}

pub fn package(pkg_type: &str, name: &str, version: &str) -> Package {
    Package {
        pkg_type: pkg_type.into(),
        name: name.into(),
        version: version.into(),
        ..Package::default()
    }
}

pub fn vuln(id: &str, pkg: &str, pkg_type: &str, severity: Severity) -> VulnMatch {
    VulnMatch {
        id: id.into(),
        package_name: pkg.into(),
        package_type: pkg_type.into(),
        package_version: "1.0".into(),
        severity,
        created_at: Some(days_ago(400)),
        ..VulnMatch::default()
    }
}

pub fn cvss(base: f64) -> Option<Cvss> {
    Some(Cvss {
        base,
        exploitability: base / 3.0,
        impact: base / 2.0,
    })
}

pub fn file(path: &str, mode: u32) -> FileEntry {
    FileEntry {
        path: path.into(),
        mode,
        ..FileEntry::default()
    }
}

/// A bundle document with one policy of the given rules mapped to every image.
pub fn bundle_doc(rules: Value) -> Value {
    json!({
        "id": "b1", "version": "1_0", "name": "test",
        "policies": [{"id": "p1", "version": "1_0", "rules": rules}],
        "whitelists": [],
        "mappings": [{"id": "m1", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"},
                      "policy_ids": ["p1"], "whitelist_ids": []}],
    })
}

/// A validated one-rule bundle; params as (name, value) pairs.
pub fn one_rule(
    gate: &str,
    trigger: &str,
    action: &str,
    params: &[(&str, &str)],
) -> ValidatedBundle {
    let params: Vec<Value> = params
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    let doc = bundle_doc(
        json!([{"id": "r1", "gate": gate, "trigger": trigger, "action": action, "params": params}]),
    );
    load(&doc)
}

pub fn load(doc: &Value) -> ValidatedBundle {
    match Bundle::from_json(&doc.to_string()) {
        Ok(b) => b,
        Err(e) => panic!("bundle refused: {e:#?}"),
    }
}

/// Validation errors of a document that must be refused, as (path, message).
pub fn refused(doc: &Value) -> Vec<(String, String)> {
    match Bundle::from_json(&doc.to_string()) {
        Ok(_) => panic!("bundle accepted: {doc}"),
        Err(e) => e.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

pub fn run(bundle: &ValidatedBundle, facts: &ImageFacts) -> Evaluation {
    evaluate(bundle, facts, now())
}

/// The rows of a one-rule evaluation.
pub fn rows(bundle: &ValidatedBundle, facts: &ImageFacts) -> Vec<Row> {
    run(bundle, facts).rows
}

/// Check_Output of each row.
pub fn outputs(bundle: &ValidatedBundle, facts: &ImageFacts) -> Vec<String> {
    rows(bundle, facts)
        .into_iter()
        .map(|r| r.check_output.to_string())
        .collect()
}

/// Generated facts for snapshots and benches: `packages` packages and `vulns` matches spread over
/// severities, types and fix states, derived from the index only (deterministic).
pub fn generated(packages: usize, vulns: usize) -> ImageFacts {
    let mut f = image();
    let types = ["dpkg", "python", "npm", "java"];
    f.packages = (0..packages)
        .map(|i| {
            let mut p = package(
                types[i % 4],
                &format!("pkg{i}"),
                &format!("1.{}.{}", i % 7, i % 3),
            );
            p.licenses = vec![["MIT", "GPL-2.0", "Apache-2.0", "BSD-3-Clause"][i % 4].into()];
            p
        })
        .collect();
    let severities = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
        Severity::Negligible,
    ];
    f.vulnerabilities = Some(
        (0..vulns)
            .map(|i| {
                let pkg = i * 7 % packages.max(1);
                let mut v = vuln(
                    &format!("CVE-2024-{:05}", i),
                    &format!("pkg{pkg}"),
                    types[pkg % 4],
                    severities[i % 5],
                );
                v.cvss_v3 = cvss((i % 100) as f64 / 10.0);
                if i % 3 == 0 {
                    v.fix_version = Some("9.9".into());
                    v.fix_first_seen = Some(days_ago((i % 60) as i64));
                }
                v
            })
            .collect(),
    );
    f.image.config.exposed_ports = vec!["22/tcp".into(), "8080/tcp".into()];
    f
}
