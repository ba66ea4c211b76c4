//! A corpus of bundles, each checked for the answer anchore-engine's validator gives: accepted, or refused
//! with the same problems (here with their JSON paths). Each case names the anchore code path its
//! expectation comes from (anchore-engine's last release: `services/policy_engine/swagger/swagger.yaml`'s
//! PolicyBundle schema, `engine/policy/bundles/*.py`, `engine/policy/params.py`, `engine/policy/gates/`).

mod support;

use fathom_policy::{Action, Bundle};
use serde_json::{json, Value};
use support::*;

/// A mapping of everything to `p`, with whitelist `w` when `wl`.
fn all(wl: bool) -> Value {
    let ids: Vec<&str> = if wl { vec!["w"] } else { vec![] };
    json!([{"name": "all", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"},
            "policy_ids": ["p"], "whitelist_ids": ids}])
}

fn with_rules(rules: Value) -> Value {
    json!({"id": "b", "version": "1_0", "policies": [{"id": "p", "version": "1_0", "rules": rules}],
           "mappings": all(false)})
}

/// The problems of `doc` as (path, message), or an empty list when it is accepted.
fn problems(doc: &Value) -> Vec<(String, String)> {
    match Bundle::from_json(&doc.to_string()) {
        Ok(_) => Vec::new(),
        Err(e) => e.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

#[test]
fn anchore_accepts_these_and_so_does_fathom() {
    let cases: Vec<(&str, Value)> = vec![
        // gates/files.py FilenameMatchTrigger: `regex` is TypeValidator("string"); it is compiled only by
        // `re.match` when the trigger runs.
        (
            "regex kept as a string",
            with_rules(json!([
                {"gate": "files", "trigger": "name_match", "action": "WARN", "params": [{"name": "regex", "value": "*\\.pem"}]},
                {"gate": "secret_scans", "trigger": "content_regex_checks", "action": "WARN", "params": [{"name": "filename_regex", "value": "(["}]},
                {"gate": "vulnerabilities", "trigger": "package", "action": "WARN",
                 "params": [{"name": "package_type", "value": "all"}, {"name": "package_path_exclude", "value": "+x"}]},
            ])),
        ),
        // swagger WhitelistItem requires only gate and trigger_id; bundles/whitelists.py never compares item
        // ids; an item's gate is lower-cased and checked against nothing.
        (
            "duplicate, missing and odd whitelist items",
            json!({
            "id": "b", "version": "1_0", "policies": [{"id": "p", "version": "1_0", "rules": []}],
            "whitelists": [{"id": "w", "version": "1_0", "items": [
                {"id": "i", "gate": "vulnerabilities", "trigger_id": "CVE-1+*"},
                {"id": "i", "gate": "vulnerabilities", "trigger_id": "CVE-2+*"},
                {"gate": "ANCHORESEC", "trigger_id": "CVE-3+*"},
                {"id": "j", "gate": "nosuchgate", "trigger_id": "x"}]}],
            "mappings": all(true)}),
        ),
        // gates/files.py FileAttributeMatchTrigger: `mode` is a plain string read by `int(mode, 8)` at
        // evaluation, which takes Python's `0o` literals and any magnitude.
        (
            "python octal file mode",
            with_rules(json!([
                {"gate": "files", "trigger": "attribute_match", "action": "WARN",
                 "params": [{"name": "filename", "value": "/bin/su"}, {"name": "mode", "value": "0o104111"}, {"name": "mode_op", "value": "not_equals"}]},
                {"gate": "files", "trigger": "attribute_match", "action": "WARN",
                 "params": [{"name": "filename", "value": "/bin/su"}, {"name": "mode", "value": "rwxr-xr-x"}]},
            ])),
        ),
        // params.py CommaDelimitedNumberListValidator (`\d+` items) and IntegerValidator (`^\s*\d+\s*$`):
        // no range checks.
        (
            "out-of-range port and integer",
            with_rules(json!([
                {"gate": "dockerfile", "trigger": "exposed_ports", "action": "WARN",
                 "params": [{"name": "ports", "value": "22, 70000"}, {"name": "type", "value": "blacklist"}]},
                {"gate": "vulnerabilities", "trigger": "stale_feed_data", "action": "WARN",
                 "params": [{"name": "max_days_since_sync", "value": "99999999999999999999"}]},
            ])),
        ),
        // bundles/bundles.py PolicyRule lower-cases parameter names into a dict: case does not matter and
        // a repeated name is not refused (the last wins).
        (
            "parameter names in any case, repeated",
            with_rules(json!([
                {"gate": "dockerfile", "trigger": "exposed_ports", "action": "WARN",
                 "params": [{"name": "PORTS", "value": "22"}, {"name": "Type", "value": "whitelist"}, {"name": "type", "value": "blacklist"}]},
            ])),
        ),
        // Nothing in bundles/*.py compares rule, mapping or image rule ids.
        (
            "duplicate rule and mapping ids",
            json!({
            "id": "b", "version": "1_0",
            "policies": [{"id": "p", "version": "1_0", "rules": [
                {"id": "r", "gate": "always", "trigger": "always", "action": "GO"},
                {"id": "r", "gate": "always", "trigger": "always", "action": "WARN"}]}],
            "mappings": [
                {"id": "m", "name": "a", "registry": "*", "repository": "a", "image": {"type": "tag", "value": "*"}, "policy_id": "p"},
                {"id": "m", "name": "b", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p"}]}),
        ),
        // bundles/bundles.py ExecutableBundle builds only the policies and whitelists mappings reference:
        // what an unreferenced one holds is never validated (beyond the schema).
        (
            "unreferenced policy and whitelist are not built",
            json!({
            "id": "b", "version": "1_0",
            "policies": [{"id": "p", "version": "1_0", "rules": []},
                         {"id": "old", "version": "0_9", "rules": [{"gate": "anchoresec", "trigger": "vulnhigh", "action": "STOP"}]},
                         {"id": "old", "version": "1_0", "rules": []}],
            "whitelists": [{"id": "x", "version": "2_0", "items": [{"gate": "vulnerabilities", "trigger_id": "*", "expires_on": "soon"}]}],
            "mappings": all(false)}),
        ),
        // swagger PolicyBundle: `policies` and `mappings` must be present; empty lists are fine.
        (
            "empty lists",
            json!({"id": "b", "version": "1_0", "policies": [], "mappings": []}),
        ),
        // gates/npms.py, gates/gems.py: both gates and every trigger.
        (
            "npms and ruby_gems",
            with_rules(json!([
                {"gate": "npms", "trigger": "newer_version_in_feed", "action": "WARN"},
                {"gate": "npms", "trigger": "unknown_in_feeds", "action": "WARN"},
                {"gate": "npms", "trigger": "version_not_in_feeds", "action": "WARN"},
                {"gate": "npms", "trigger": "blacklisted_name_version", "action": "STOP", "params": [{"name": "name", "value": "left-pad"}]},
                {"gate": "npms", "trigger": "feed_data_unavailable", "action": "WARN"},
                {"gate": "ruby_gems", "trigger": "newer_version_found_in_feed", "action": "WARN"},
                {"gate": "ruby_gems", "trigger": "not_found_in_feed", "action": "WARN"},
                {"gate": "ruby_gems", "trigger": "version_not_found_in_feed", "action": "WARN"},
                {"gate": "ruby_gems", "trigger": "blacklist", "action": "STOP", "params": [{"name": "name", "value": "rails"}, {"name": "version", "value": "4.0"}]},
                {"gate": "ruby_gems", "trigger": "feed_data_unavailable", "action": "WARN"},
            ])),
        ),
    ];
    for (name, doc) in cases {
        assert_eq!(problems(&doc), [], "{name}: anchore accepts it");
    }
}

/// (case, bundle, expected problems as (path, message)).
type Refused<'a> = (&'a str, Value, Vec<(&'a str, &'a str)>);

#[test]
fn anchore_refuses_these_with_the_same_problems() {
    let policy = json!([{"id": "p", "version": "1_0", "rules": []}]);
    let cases: Vec<Refused> = vec![
        // swagger PolicyBundle `required: [id, version, mappings, policies]`.
        ("no id", json!({"version": "1_0", "policies": policy, "mappings": all(false)}),
         vec![("$", "missing required field `id`")]),
        ("no version", json!({"id": "b", "policies": policy, "mappings": all(false)}),
         vec![("$", "missing required field `version`")]),
        ("no policies", json!({"id": "b", "version": "1_0", "mappings": []}),
         vec![("$", "missing required field `policies`")]),
        ("no mappings", json!({"id": "b", "version": "1_0", "policies": policy}),
         vec![("$", "missing required field `mappings`")]),
        // A lone policy document is no bundle: the same schema, two lists missing.
        ("bare policy document", json!({"id": "p", "version": "1_0", "name": "strict",
                                        "rules": [{"gate": "always", "trigger": "always", "action": "STOP"}]}),
         vec![("$", "missing required field `policies`"), ("$", "missing required field `mappings`")]),
        // swagger Policy and Whitelist `required: [id, version]`.
        ("policy without version", json!({"id": "b", "version": "1_0", "policies": [{"id": "p", "rules": []}], "mappings": all(false)}),
         vec![("$.policies[0]", "missing required field `version`")]),
        ("whitelist without version", json!({"id": "b", "version": "1_0", "policies": policy,
                                             "whitelists": [{"id": "w", "items": []}], "mappings": all(true)}),
         vec![("$.whitelists[0]", "missing required field `version`")]),
        // bundles/utils.py VersionedEntityMixin.verify_version, for what a mapping reaches.
        ("mapped policy of another version", json!({"id": "b", "version": "1_0",
                                                    "policies": [{"id": "p", "version": "2_0", "rules": []}], "mappings": all(false)}),
         vec![("$.policies[0].version", "unsupported policy version `2_0`; only `1_0` exists")]),
        // bundles/bundles.py ExecutableBundle: ReferencedObjectNotFoundError.
        ("unknown policy and whitelist ids", json!({"id": "b", "version": "1_0", "policies": policy,
            "mappings": [{"name": "m", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"},
                          "policy_ids": ["p", "q"], "whitelist_ids": ["nowl"]}]}),
         vec![("$.mappings[0].policy_ids[1]", "unknown policy id `q`"), ("$.mappings[0].whitelist_ids[0]", "unknown whitelist id `nowl`")]),
        // bundles/bundles.py ExecutableBundle: DuplicateIdentifierFoundError for a referenced id.
        ("ambiguous mapped policy", json!({"id": "b", "version": "1_0",
            "policies": [{"id": "p", "version": "1_0", "rules": []}, {"id": "p", "version": "1_0", "rules": []}], "mappings": all(false)}),
         vec![("$.policies[1].id", "duplicate policy id `p` (first at $.policies[0]), referenced by a mapping")]),
        // bundles/mappings.py PolicyMappingMixin: one of policy_id / policy_ids, not both, not neither.
        ("mapping policies", json!({"id": "b", "version": "1_0", "policies": policy, "mappings": [
            {"name": "a", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}},
            {"name": "b", "registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p", "policy_ids": ["p"]}]}),
         vec![("$.mappings[0]", "missing `policy_id` or `policy_ids`"), ("$.mappings[1]", "both `policy_id` and `policy_ids` given; use one")]),
        // bundles/bundles.py ExecutablePolicy.policy_rule_factory (strict validation): EndOfLifedError,
        // naming gates/eol/__init__.py's `__superceded_by__`.
        ("end-of-life gates", with_rules(json!([
            {"gate": "ANCHORESEC", "trigger": "vulnhigh", "action": "STOP"},
            {"gate": "pkgdiff", "trigger": "pkgadd", "action": "WARN"}])),
         vec![("$.policies[0].rules[0].gate", "gate `anchoresec` is end-of-life in anchore: it is not evaluated and must be replaced with `vulnerabilities`"),
              ("$.policies[0].rules[1].gate", "gate `pkgdiff` is end-of-life in anchore: it is not evaluated and must be removed (it has no replacement)")]),
        // gates/gems.py: BlacklistedGemTrigger's `name` is_required (RequiredParameterNotSetError).
        ("gem blacklist without name", with_rules(json!([{"gate": "ruby_gems", "trigger": "blacklist", "action": "STOP"}])),
         vec![("$.policies[0].rules[0].params", "missing required parameter `name`")]),
    ];
    for (name, doc, want) in cases {
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(p, m)| (p.to_string(), m.to_string()))
            .collect();
        assert_eq!(problems(&doc), want, "{name}");
    }
}

#[test]
fn a_bad_regex_is_the_rules_evaluation_error_as_anchore_reports_it() {
    let b = one_rule("files", "name_match", "STOP", &[("regex", "*\\.pem")]);
    let mut facts = image();
    facts.files = Some(vec![file("/etc/ssl/a.pem", 0o644)]);
    let r = run(&b, &facts);
    // The rule could not be evaluated: WARN, with exceptions.py TriggerEvaluationError's text.
    assert_eq!(r.final_action, Action::Warn);
    assert_eq!(r.rows.len(), 1);
    assert!(r.rows[0].error);
    let out = r.rows[0].check_output.to_string();
    assert!(
        out.contains(
            "Trigger evaluation failed for gate files and trigger name_match, with parameters: ({'regex': '*\\\\.pem'}) due to: "
        ),
        "{out}"
    );
}

#[test]
fn file_modes_read_as_python_int_base_8() {
    let rule = |mode: &str, op: &str| {
        one_rule(
            "files",
            "attribute_match",
            "STOP",
            &[("filename", "/bin/su"), ("mode", mode), ("mode_op", op)],
        )
    };
    let mut facts = image();
    facts.files = Some(vec![file("/bin/su", 0o104755)]);
    let fired = |mode: &str, op: &str| outputs(&rule(mode, op), &facts);
    // anchore compares oct(S_IMODE(file mode)) with oct(int(mode, 8)): file-type bits never equal.
    assert_eq!(fired("0o104755", "equals"), Vec::<String>::new());
    assert_eq!(
        fired("0o104755", "not_equals"),
        ["filename=/bin/su and mode=0o4755 op=not_equals specified_mode=0o104755"]
    );
    for spelled in ["4755", "04755", "0o4755", "0O4_755", " +4755 "] {
        assert_eq!(
            fired(spelled, "equals"),
            ["filename=/bin/su and mode=0o4755 op=equals specified_mode=0o4755"],
            "{spelled}"
        );
    }
    // A mode Python cannot read fails the rule when the file exists, and not otherwise.
    let r = run(&rule("rwx", "equals"), &facts);
    assert!(r.rows[0].error, "{:?}", r.rows);
    assert!(r.rows[0]
        .check_output
        .contains("invalid literal for int() with base 8: 'rwx'"));
    facts.files = Some(Vec::new());
    assert!(run(&rule("rwx", "equals"), &facts).rows.is_empty());
}

#[test]
fn dockerfile_and_metadata_values_are_read_when_the_rule_runs() {
    // dockerfile.py InstructionCheckTrigger: `like` is `re.match(value, line)` per line of the instruction.
    let like = one_rule(
        "dockerfile",
        "instruction",
        "STOP",
        &[("instruction", "RUN"), ("check", "like"), ("value", "[a-")],
    );
    let mut facts = image();
    facts.image.config.instructions = vec!["FROM debian".into()];
    assert_eq!(rows(&like, &facts), [], "no RUN line: nothing to match");
    facts.image.config.instructions.push("RUN make".into());
    let r = run(&like, &facts);
    assert_eq!(r.final_action, Action::Warn);
    assert!(r.rows[0].error);
    assert!(r.rows[0]
        .check_output
        .contains("Trigger evaluation failed for gate dockerfile and trigger instruction"));
    // image_metadata.py: the value is converted to the attribute's type when the trigger runs.
    let count = one_rule(
        "metadata",
        "attribute",
        "STOP",
        &[
            ("attribute", "layer_count"),
            ("check", ">"),
            ("value", "many"),
        ],
    );
    let r = run(&count, &image());
    assert_eq!(r.final_action, Action::Warn);
    assert!(r.rows[0].error);
    assert!(r.rows[0]
        .check_output
        .contains("Trigger evaluation failed for gate metadata and trigger attribute"));
}
