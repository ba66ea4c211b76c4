//! Evaluation: mapping precedence and wildcards, image rules, whitelists and expiry, the default bundle.

mod support;

use fathom_policy::{default_bundle, glob, Action, Reason, Severity, Status};
use serde_json::json;
use support::*;

fn mapped(mappings: serde_json::Value) -> fathom_policy::ValidatedBundle {
    load(&json!({
        "id": "b", "version": "1_0",
        "policies": [
            {"id": "stop", "version": "1_0", "rules": [{"id": "s", "gate": "always", "trigger": "always", "action": "STOP"}]},
            {"id": "warn", "version": "1_0", "rules": [{"id": "w", "gate": "always", "trigger": "always", "action": "WARN"}]},
            {"id": "go", "version": "1_0", "rules": []},
        ],
        "mappings": mappings,
    }))
}

fn rule(
    id: &str,
    registry: &str,
    repository: &str,
    kind: &str,
    value: &str,
    policy: &str,
) -> serde_json::Value {
    json!({"id": id, "registry": registry, "repository": repository, "image": {"type": kind, "value": value}, "policy_id": policy})
}

#[test]
fn glob_wildcards_match_whole_strings() {
    for (p, t, want) in [
        ("*", "", true),
        ("*", "anything", true),
        ("CVE-2023-1+*", "CVE-2023-1+openssl", true),
        ("CVE-2023-1+*", "CVE-2023-12+openssl", false),
        ("library/*", "library/nginx", true),
        ("library/*", "other/nginx", false),
        ("*-alpine", "3.20-alpine", true),
        ("a*b*c", "aXbYbZc", true),
        ("a*b*c", "aXbYbZ", false),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(glob(p, t), want, "{p} ~ {t}");
    }
}

#[test]
fn first_matching_mapping_wins_and_no_mapping_is_go() {
    let b = mapped(json!([
        rule("m-digest", "*", "*", "digest", "sha256:aaaa", "warn"),
        rule("m-tag", "docker.io", "library/*", "tag", "1.*", "go"),
        rule("m-all", "*", "*", "tag", "*", "stop"),
    ]));
    let mut facts = image();
    let r = run(&b, &facts);
    assert_eq!(
        (
            r.matched_mapping_rule.and_then(|m| m.id).as_deref(),
            r.final_action
        ),
        (Some("m-digest"), Action::Warn)
    );
    facts.image.digest = "sha256:bbbb".into();
    let r = run(&b, &facts);
    assert_eq!(
        (
            r.matched_mapping_rule.and_then(|m| m.id).as_deref(),
            r.final_action
        ),
        (Some("m-tag"), Action::Go)
    );
    facts.image.tag = Some("2.0".into());
    let r = run(&b, &facts);
    assert_eq!(
        (
            r.matched_mapping_rule.and_then(|m| m.id).as_deref(),
            r.status
        ),
        (Some("m-all"), Status::Fail)
    );
    // anchore: a tag rule also selects the image whose id equals its value.
    let by_id = mapped(json!([rule("m", "*", "*", "tag", "imageid1", "warn")]));
    assert_eq!(run(&by_id, &image()).final_action, Action::Warn);
    // anchore's FallThruPolicyDecision (bundles/decisions.py BundleDecision): no mapping selects the
    // image, so no policy runs and the decision is GO — fathom names the reason.
    let none = mapped(json!([rule("m", "quay.io", "*", "tag", "*", "stop")]));
    let r = run(&none, &image());
    assert_eq!(
        (
            r.matched_mapping_rule.clone(),
            r.final_action,
            r.final_action_reason,
            r.status,
            r.rows.len()
        ),
        (None, Action::Go, Reason::NoMatchingMapping, Status::Pass, 0)
    );
    let value = serde_json::to_value(&r).expect("serializes");
    assert_eq!(value["final_action_reason"], "no_matching_mapping");
}

#[test]
fn policy_ids_take_the_lowest_action() {
    let mut m = rule("m", "*", "*", "tag", "*", "go");
    m.as_object_mut().map(|o| o.remove("policy_id"));
    m["policy_ids"] = json!(["go", "warn"]);
    let r = run(&mapped(json!([m])), &image());
    assert_eq!(r.final_action, Action::Warn);
    assert_eq!(
        r.policy_decisions
            .iter()
            .map(|d| d.action)
            .collect::<Vec<_>>(),
        [Action::Go, Action::Warn]
    );
}

#[test]
fn blacklisted_image_beats_whitelisted_image_beats_policy() {
    let base = |white: bool, black: bool| {
        let sel = json!({"registry": "docker.io", "repository": "library/app", "image": {"type": "tag", "value": "*"}});
        load(&json!({
            "id": "b", "version": "1_0",
            "policies": [{"id": "p", "version": "1_0", "rules": [{"gate": "always", "trigger": "always", "action": "WARN"}]}],
            "mappings": [rule("m", "*", "*", "tag", "*", "p")],
            "whitelisted_images": if white { vec![sel.clone()] } else { vec![] },
            "blacklisted_images": if black { vec![sel] } else { vec![] },
        }))
    };
    let cases = [
        (false, false, Action::Warn, Reason::PolicyEvaluation),
        (true, false, Action::Go, Reason::Whitelisted),
        (false, true, Action::Stop, Reason::Blacklisted),
        (true, true, Action::Stop, Reason::Blacklisted),
    ];
    for (white, black, action, reason) in cases {
        let r = run(&base(white, black), &image());
        assert_eq!(
            (r.final_action, r.final_action_reason),
            (action, reason),
            "white={white} black={black}"
        );
    }
}

fn with_whitelist(items: serde_json::Value) -> fathom_policy::ValidatedBundle {
    load(&json!({
        "id": "b", "version": "1_0",
        "policies": [{"id": "p", "version": "1_0", "rules": [{"gate": "vulnerabilities", "trigger": "package", "action": "STOP",
                       "params": [{"name": "package_type", "value": "all"}]}]}],
        "whitelists": [{"id": "w", "version": "1_0", "name": "Team", "items": items}],
        "mappings": [{"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p", "whitelist_ids": ["w"]}],
    }))
}

fn vuln_facts() -> fathom_policy::ImageFacts {
    let mut f = image();
    let mut aliased = vuln("GHSA-1234", "requests", "python", Severity::High);
    aliased.aliases = vec!["CVE-2023-32681".into()];
    f.vulnerabilities = Some(vec![
        vuln("CVE-2023-1234", "openssl", "dpkg", Severity::High),
        aliased,
    ]);
    f
}

#[test]
fn whitelist_items_match_trigger_ids_with_wildcards_and_aliases() {
    let b = with_whitelist(json!([
        {"id": "i1", "gate": "vulnerabilities", "trigger_id": "CVE-2023-1234+*"},
        {"id": "i2", "gate": "vulnerabilities", "trigger_id": "CVE-2023-32681+requests"},
    ]));
    let r = run(&b, &vuln_facts());
    let by: Vec<Option<String>> = r
        .rows
        .iter()
        .map(|r| {
            r.whitelisted
                .as_ref()
                .map(|w| w.matched_rule_id.to_string())
        })
        .collect();
    assert_eq!(by, [Some("i1".to_string()), Some("i2".to_string())]);
    assert_eq!(r.final_action, Action::Go);
    assert_eq!(
        r.table().rows[0][7],
        json!({"whitelist_id": "w", "whitelist_name": "Team", "matched_rule_id": "i1"})
    );
    // A whitelist item of another gate does not apply.
    let other = with_whitelist(json!([{"id": "i", "gate": "dockerfile", "trigger_id": "*"}]));
    assert_eq!(run(&other, &vuln_facts()).final_action, Action::Stop);
}

#[test]
fn whitelist_expiry_at_the_boundary_as_anchore_expired_means_now_ge_expires_on() {
    let at = |expires: &str| {
        with_whitelist(json!([
            {"id": "i", "gate": "vulnerabilities", "trigger_id": "*", "expires_on": expires},
        ]))
    };
    // now() is 2024-06-01T00:00:00Z.
    assert_eq!(
        run(&at("2024-06-01T00:00:01Z"), &vuln_facts()).final_action,
        Action::Go,
        "one second before expiry"
    );
    assert_eq!(
        run(&at("2024-06-01T00:00:00Z"), &vuln_facts()).final_action,
        Action::Stop,
        "at the instant"
    );
    assert_eq!(
        run(&at("2024-05-31T23:59:59Z"), &vuln_facts()).final_action,
        Action::Stop,
        "after"
    );
    assert_eq!(
        run(&at("2024-06-01T02:00:00+02:00"), &vuln_facts()).final_action,
        Action::Stop,
        "offsets honoured"
    );
}

#[test]
fn rows_are_ordered_independently_of_fact_order() {
    let mut facts = generated(60, 80);
    let a = run(default_bundle(), &facts);
    if let Some(v) = facts.vulnerabilities.as_mut() {
        v.reverse();
    }
    assert_eq!(a, run(default_bundle(), &facts));
}

#[test]
fn default_bundle_on_generated_facts_matches_snapshot() {
    let facts = generated(200, 60);
    let result = run(default_bundle(), &facts);
    let text = serde_json::to_string_pretty(&result).expect("serializes") + "\n";
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/default_bundle_evaluation.json"
    );
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &text).expect("write snapshot");
    }
    let want =
        std::fs::read_to_string(path).expect("snapshot exists (UPDATE_SNAPSHOTS=1 writes it)");
    assert_eq!(
        text, want,
        "evaluation changed; review and rerun with UPDATE_SNAPSHOTS=1"
    );
    // What the snapshot must show, independent of its text: exposed 22 and high/critical stop.
    assert_eq!(result.final_action, Action::Stop);
    assert!(result
        .rows
        .iter()
        .any(|r| r.check_output.contains("(22/tcp)")));
    assert!(result
        .rows
        .iter()
        .any(|r| r.gate_action == Action::Warn && r.check_output.starts_with("MEDIUM")));
    assert!(
        result.rows.iter().any(|r| r.trigger == "instruction"),
        "no HEALTHCHECK warns"
    );
}

/// Rules sharing matches share their messages and whitelist answers within one evaluation: each rule's
/// rows must still be what it gives alone, whatever other rules ran before it.
#[test]
fn rules_on_the_same_matches_give_what_they_give_alone() {
    let rules = json!([
        {"id": "a", "gate": "vulnerabilities", "trigger": "package", "action": "STOP",
         "params": [{"name": "package_type", "value": "all"}, {"name": "severity_comparison", "value": ">="}, {"name": "severity", "value": "low"}]},
        {"id": "b", "gate": "vulnerabilities", "trigger": "package", "action": "WARN",
         "params": [{"name": "package_type", "value": "all"}, {"name": "severity_comparison", "value": ">="}, {"name": "severity", "value": "low"},
                    {"name": "cvss_v3_base_score", "value": "1"}, {"name": "max_days_since_creation", "value": "10"}]},
        {"id": "c", "gate": "vulnerabilities", "trigger": "package", "action": "WARN",
         "params": [{"name": "package_type", "value": "non-os"}, {"name": "severity_comparison", "value": ">="}, {"name": "severity", "value": "low"},
                    {"name": "vendor_cvss_v3_impact_score", "value": "-1"}]},
    ]);
    let facts = generated(300, 120);
    let together = run(&load(&bundle_doc(rules.clone())), &facts);
    let alone: Vec<_> = rules
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| run(&load(&bundle_doc(json!([r]))), &facts).rows)
        .collect();
    assert!(together.rows.len() > 120, "{}", together.rows.len());
    assert_eq!(together.rows, alone);
    let messages: std::collections::HashSet<_> =
        together.rows.iter().map(|r| &r.check_output).collect();
    assert!(messages.iter().any(|m| m.contains("cvss_v3_base_score=")));
    assert!(messages
        .iter()
        .any(|m| m.contains("vendor_cvss_v3_impact_score=")));
}

/// The serialized evaluation carries anchore's table built from the rows, and reads back.
#[test]
fn serialized_evaluation_has_the_table_and_round_trips() {
    let r = run(
        &with_whitelist(
            json!([{"id": "i1", "gate": "vulnerabilities", "trigger_id": "CVE-2023-1234+*"}]),
        ),
        &vuln_facts(),
    );
    let value = serde_json::to_value(&r).expect("serializes");
    assert_eq!(
        value["table"],
        serde_json::to_value(r.table()).expect("table")
    );
    assert_eq!(
        value["table"]["rows"].as_array().map(Vec::len),
        Some(r.rows.len())
    );
    assert_eq!(value["table"]["rows"][0][7]["matched_rule_id"], "i1");
    let back: fathom_policy::Evaluation = serde_json::from_value(value).expect("reads back");
    assert_eq!(back, r);
}

#[test]
fn a_blacklisted_repository_is_hit_by_every_spelling_of_its_references() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let b = load(&json!({
        "id": "b", "version": "1_0",
        "policies": [{"id": "go", "version": "1_0", "rules": []}],
        "mappings": [rule("all", "*", "*", "tag", "*", "go")],
        "blacklisted_images": [{"id": "no-nginx", "registry": "*", "repository": "lib/nginx",
                                "image": {"type": "tag", "value": "*"}}],
    }));
    for text in [
        format!("lib/nginx:1.25@{digest}"),
        "lib/nginx:1.25".to_string(),
        format!("lib/nginx@{digest}"),
        "lib/nginx".to_string(),
        format!("docker.io/lib/nginx:1.25@{digest}"),
    ] {
        let mut facts = image();
        facts.image.digest.clone_from(&digest);
        facts
            .image
            .set_reference(&fathom_policy::ImageRef::parse(&text).unwrap());
        let r = run(&b, &facts);
        assert_eq!(r.final_action, Action::Stop, "{text}");
        assert_eq!(r.final_action_reason, Reason::Blacklisted, "{text}");
    }
    // Another repository is not blacklisted, whatever its tag looks like.
    let mut facts = image();
    facts
        .image
        .set_reference(&fathom_policy::ImageRef::parse("lib/nginx2:lib").unwrap());
    assert_eq!(run(&b, &facts).final_action, Action::Go);
}
