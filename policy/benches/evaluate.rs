//! Evaluation throughput of the pure engine: the default bundle and a 1,000-rule bundle with a 1,000-item
//! whitelist over generated images of 500 packages / 200 matches and 2,000 packages / 500 matches.
//! Two lines each: the contract line `policy image=NAME rules=R matches=M eval_ms=X` (p50) and the detail
//! line. Run: `cargo bench -p fathom-policy --bench evaluate`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use fathom_policy::{default_bundle, evaluate, ImageFacts, ValidatedBundle};
use serde_json::json;

fn measure(
    name: &str,
    bundle: &ValidatedBundle,
    facts: &ImageFacts,
    packages: usize,
    vulns: usize,
) {
    for _ in 0..20 {
        black_box(evaluate(bundle, facts, support::now()));
    }
    let mut samples = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) || samples.len() < 200 {
        let t = Instant::now();
        let result = black_box(evaluate(bundle, facts, support::now()));
        samples.push(t.elapsed());
        black_box(result.rows.len());
    }
    let total: Duration = samples.iter().sum();
    let image = format!("generated-p{packages}-m{vulns}");
    samples.sort();
    let p99 = samples[samples.len() * 99 / 100];
    let rows = evaluate(bundle, facts, support::now()).rows.len();
    println!(
        "policy image={image} rules={} matches={vulns} eval_ms={:.3}",
        bundle.rule_count(),
        samples[samples.len() / 2].as_secs_f64() * 1000.0
    );
    println!(
        "policy bundle={name} rules={} packages={packages} vulns={vulns} rows={rows} evaluations_per_s={:.0} p50_us={} p99_us={}",
        bundle.rule_count(),
        samples.len() as f64 / total.as_secs_f64(),
        samples[samples.len() / 2].as_micros(),
        p99.as_micros(),
    );
}

fn big_bundle(rules: usize) -> ValidatedBundle {
    let severities = ["low", "medium", "high", "critical"];
    let rules: Vec<_> = (0..rules)
        .map(|i| match i % 4 {
            0 => json!({"id": format!("r{i}"), "gate": "vulnerabilities", "trigger": "package", "action": "WARN",
                        "params": [{"name": "package_type", "value": "all"}, {"name": "severity_comparison", "value": ">="},
                                   {"name": "severity", "value": severities[i / 4 % 4]},
                                   {"name": "cvss_v3_base_score", "value": format!("{}", i % 10)}]}),
            1 => json!({"id": format!("r{i}"), "gate": "metadata", "trigger": "attribute", "action": "WARN",
                        "params": [{"name": "attribute", "value": "size"}, {"name": "check", "value": ">"},
                                   {"name": "value", "value": format!("{i}MB")}]}),
            2 => json!({"id": format!("r{i}"), "gate": "packages", "trigger": "blacklist", "action": "STOP",
                        "params": [{"name": "name", "value": format!("pkg{i}")}]}),
            _ => json!({"id": format!("r{i}"), "gate": "dockerfile", "trigger": "exposed_ports", "action": "STOP",
                        "params": [{"name": "ports", "value": format!("{}", 1000 + i)}, {"name": "type", "value": "blacklist"}]}),
        })
        .collect();
    let items: Vec<_> = (0..1000)
        .map(|i| json!({"id": format!("i{i}"), "gate": "vulnerabilities",
                        "trigger_id": if i % 2 == 0 { format!("CVE-2024-{i:05}+*") } else { format!("CVE-2024-{i:05}+pkg{}", i * 7 % 2000) }}))
        .collect();
    support::load(&json!({
        "id": "big", "version": "1_0",
        "policies": [{"id": "p", "version": "1_0", "rules": rules}],
        "whitelists": [{"id": "w", "version": "1_0", "items": items}],
        "mappings": [{"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p", "whitelist_ids": ["w"]}],
    }))
}

fn main() {
    let big = big_bundle(1000);
    for (packages, vulns) in [(500, 200), (2000, 500)] {
        let facts = support::generated(packages, vulns);
        measure("default", default_bundle(), &facts, packages, vulns);
        measure("rules1000", &big, &facts, packages, vulns);
    }
}
