//! Bundle loading: validation names the JSON path of every problem; synonyms; JSON and YAML equivalence.

mod support;

use fathom_policy::{default_bundle, Bundle, DEFAULT_BUNDLE_JSON};
use serde_json::json;
use support::*;

fn paths(doc: &serde_json::Value) -> Vec<String> {
    let mut p: Vec<String> = refused(doc).into_iter().map(|(p, _)| p).collect();
    p.sort();
    p
}

#[test]
fn default_bundle_validates_and_has_anchores_six_rules() {
    let b = default_bundle();
    assert_eq!(b.rule_count(), 6);
    assert!(b.digest().starts_with("sha256:"));
    assert_eq!(
        Bundle::from_json(DEFAULT_BUNDLE_JSON)
            .map(|b| b.digest().to_string())
            .ok()
            .as_deref(),
        Some(b.digest())
    );
}

#[test]
fn every_rule_problem_is_reported_with_its_path() {
    let doc = bundle_doc(json!([
        {"id": "r0", "gate": "nosuchgate", "trigger": "x", "action": "STOP"},
        {"id": "r1", "gate": "vulnerabilities", "trigger": "nosuchtrigger", "action": "STOP"},
        {"id": "r2", "gate": "vulnerabilities", "trigger": "package", "action": "STOP",
         "params": [{"name": "package_type", "value": "everything"}, {"name": "bogus", "value": "1"},
                    {"name": "cvss_v3_base_score", "value": "high"}, {"name": "max_days_since_fix", "value": "-3"}]},
        {"id": "r3", "gate": "vulnerabilities", "trigger": "stale_feed_data", "action": "WARN"},
        {"id": "r4", "gate": "dockerfile", "trigger": "instruction", "action": "MAYBE",
         "params": [{"name": "instruction", "value": "HEALTHCHECK"}, {"name": "check", "value": "="}]},
        {"id": "r5", "gate": "dockerfile", "trigger": "instruction", "action": "WARN",
         "params": [{"name": "instruction", "value": "RUN"}, {"name": "check", "value": "likes"}, {"name": "value", "value": "[a-"}]},
        {"id": "r6", "gate": "metadata", "trigger": "attribute", "action": "WARN",
         "params": [{"name": "attribute", "value": "weight"}, {"name": "check", "value": ">"}, {"name": "value", "value": "many"}]},
        {"id": "r7", "gate": "dockerfile", "trigger": "exposed_ports", "action": "WARN",
         "params": [{"name": "ports", "value": "22,http"}, {"name": "type", "value": "blacklist"}, {"name": "type", "value": "whitelist"}]},
        {"id": "r8", "gate": "files", "trigger": "name_match", "action": "WARN", "params": [{"name": "regex", "value": 5}]},
        {"id": "r0", "gate": "always", "trigger": "always", "action": "GO"},
    ]));
    let errors = refused(&doc);
    let at = |path: &str| {
        errors
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
    };
    assert!(at("$.policies[0].rules[0].gate")[0].contains("unknown gate `nosuchgate`"));
    assert!(at("$.policies[0].rules[1].trigger")[0].contains("unknown trigger `nosuchtrigger`"));
    assert!(at("$.policies[0].rules[2].params[0].value")[0]
        .contains("`everything` is not one of all, os, non-os"));
    assert!(at("$.policies[0].rules[2].params[1].name")[0].contains("unknown parameter `bogus`"));
    assert!(at("$.policies[0].rules[2].params[2].value")[0].contains("not a number"));
    assert!(at("$.policies[0].rules[2].params[3].value")[0].contains("non-negative integer"));
    assert!(at("$.policies[0].rules[3].params")[0]
        .contains("missing required parameter `max_days_since_sync`"));
    assert!(at("$.policies[0].rules[4].action")[0].contains("unknown action `MAYBE`"));
    // Regexes and values are read when the rule runs (anchore_corpus.rs); the enums are checked here.
    assert!(at("$.policies[0].rules[5].params[1].value")[0].contains("`likes` is not one of"));
    assert!(at("$.policies[0].rules[6].params[0].value")[0].contains("`weight` is not one of"));
    assert!(at("$.policies[0].rules[7].params[0].value")[0].contains("`http` is not a port number"));
    assert!(at("$.policies[0].rules[8].params[0].value")[0].contains("expected a string"));
    // The unreadable value also leaves the required `regex` unset: reported, at the params list.
    assert!(at("$.policies[0].rules[8].params")[0].contains("missing required parameter `regex`"));
    assert_eq!(errors.len(), 13, "{errors:#?}");
}

#[test]
fn value_needing_checks_without_value_are_accepted_and_never_fire() {
    // anchore's `value` is optional for every check (dockerfile.py InstructionCheckTrigger,
    // image_metadata.py): a check that needs one returns without firing when it has none.
    let mut facts = image();
    facts.image.config.instructions = vec!["FROM debian".into()];
    for rule in [
        json!({"id": "r", "gate": "dockerfile", "trigger": "instruction", "action": "STOP",
               "params": [{"name": "instruction", "value": "FROM"}, {"name": "check", "value": "="}]}),
        json!({"id": "r", "gate": "metadata", "trigger": "attribute", "action": "STOP",
               "params": [{"name": "attribute", "value": "distro"}, {"name": "check", "value": "="}, {"name": "value", "value": ""}]}),
    ] {
        let b = load(&bundle_doc(json!([rule])));
        assert_eq!(rows(&b, &facts), [], "{rule}");
    }
}

#[test]
fn bundle_level_problems_name_their_paths() {
    let doc = json!({
        "id": "b", "version": "2_0",
        "policies": [{"id": "p", "version": "1_0", "rules": []}, {"id": "p", "version": "1_0", "rules": []}],
        "whitelists": [{"id": "w", "version": "1_0", "items": [
            {"id": "i1", "gate": "vulnerabilities", "trigger_id": "CVE-1+*", "expires_on": "next tuesday"},
            {"id": "i1", "gate": "nosuchgate", "trigger_id": "x"},
            {"id": "i3", "gate": "vulnerabilities"}]}],
        "allowlists": [],
        "mappings": [
            {"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_ids": ["nope"], "whitelist_ids": ["w", "nowl"]},
            {"registry": "*", "repository": "*", "image": {"type": "sha", "value": "*"}, "policy_id": "p"},
            {"registry": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p", "policy_ids": ["p"]},
            {"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}},
        ],
        "denylisted_images": [{"registry": "*", "repository": "*"}],
    });
    assert_eq!(
        paths(&doc),
        [
            "$",
            "$.denylisted_images[0]",
            "$.mappings[0].policy_ids[0]",
            "$.mappings[0].whitelist_ids[1]",
            "$.mappings[1].image.type",
            "$.mappings[2]",
            "$.mappings[2]",
            "$.mappings[3]",
            // The duplicate policy id `p` and whitelist item id `i1`, and the item of an unknown gate,
            // are no problems for anchore (see tests/anchore_corpus.rs).
            "$.version",
            "$.whitelists[0].items[0].expires_on",
            "$.whitelists[0].items[2]",
        ]
    );
}

#[test]
fn syntax_errors_are_refused_at_the_root() {
    assert_eq!(
        Bundle::from_json("{")
            .err()
            .map(|e| e[0].path.clone())
            .as_deref(),
        Some("$")
    );
    assert_eq!(
        Bundle::from_yaml("a: [")
            .err()
            .map(|e| e[0].path.clone())
            .as_deref(),
        Some("$")
    );
    assert_eq!(
        refused(&json!([1]))[0],
        (
            "$".to_string(),
            "expected an object, found a list".to_string()
        )
    );
}

#[test]
fn synonyms_and_policy_id_read_as_anchores_names_with_the_same_digest() {
    let canonical = json!({
        "id": "b", "version": "1_0",
        "policies": [{"id": "p", "version": "1_0", "rules": [{"id": "r", "gate": "always", "trigger": "always", "action": "STOP"}]}],
        "whitelists": [{"id": "w", "version": "1_0", "items": [{"id": "i", "gate": "always", "trigger_id": "*"}]}],
        "mappings": [{"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": ["w"]}],
        "whitelisted_images": [{"registry": "r", "repository": "x", "image": {"type": "tag", "value": "*"}}],
        "blacklisted_images": [{"registry": "r", "repository": "y", "image": {"type": "tag", "value": "*"}}],
    });
    let synonyms = json!({
        "version": "1_0", "id": "b",
        "policies": [{"id": "p", "version": "1_0", "rules": [{"id": "r", "gate": "ALWAYS", "trigger": "always", "action": "stop"}]}],
        "allowlists": [{"id": "w", "version": "1_0", "items": [{"id": "i", "gate": "always", "trigger_id": "*"}]}],
        "mappings": [{"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p", "allowlist_ids": ["w"]}],
        "allowlisted_images": [{"registry": "r", "repository": "x", "image": {"type": "tag", "value": "*"}}],
        "denylisted_images": [{"registry": "r", "repository": "y", "image": {"type": "tag", "value": "*"}}],
    });
    let (a, b) = (load(&canonical), load(&synonyms));
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.bundle().whitelists.len(), 1);
    assert_eq!(b.bundle().blacklisted_images.len(), 1);
    // Two spellings of the same list at once is ambiguous.
    let mut both = canonical.clone();
    both["allowlists"] = json!([]);
    assert_eq!(
        refused(&both)[0].1,
        "both `whitelists` and `allowlists` given; use one"
    );
}

#[test]
fn json_and_yaml_of_the_default_bundle_are_equivalent() {
    let doc: serde_json::Value = serde_json::from_str(DEFAULT_BUNDLE_JSON).expect("json");
    let yaml = serde_yaml::to_string(&doc).expect("yaml");
    let from_yaml = Bundle::from_yaml(&yaml).expect("yaml bundle validates");
    assert_eq!(from_yaml.digest(), default_bundle().digest());
    assert_eq!(from_yaml.bundle(), default_bundle().bundle());
    let facts = generated(50, 40);
    let (a, b) = (run(&from_yaml, &facts), run(default_bundle(), &facts));
    assert_eq!(a, b);
}

#[test]
fn a_changed_bundle_changes_the_digest() {
    let a = one_rule("always", "always", "STOP", &[]);
    let b = one_rule("always", "always", "WARN", &[]);
    assert_ne!(a.digest(), b.digest());
}
