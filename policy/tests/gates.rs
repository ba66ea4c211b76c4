//! Table tests for the vulnerabilities, dockerfile and packages gates, against anchore-engine's semantics.

mod support;

use fathom_policy::{Action, Severity};
use support::*;

/// A rule's parameters as (name, value) pairs.
type Params = &'static [(&'static str, &'static str)];

#[test]
fn vulnerabilities_package_severity_comparisons_follow_anchore_ordering() {
    let mut facts = image();
    facts.vulnerabilities = Some(vec![
        vuln("CVE-1", "a", "dpkg", Severity::Unknown),
        vuln("CVE-2", "b", "dpkg", Severity::Low),
        vuln("CVE-3", "c", "dpkg", Severity::Medium),
        vuln("CVE-4", "d", "python", Severity::High),
        vuln("CVE-5", "e", "npm", Severity::Critical),
    ]);
    let cases: &[(Params, &[&str])] = &[
        (
            &[
                ("package_type", "all"),
                ("severity_comparison", "="),
                ("severity", "medium"),
            ],
            &["CVE-3+c"],
        ),
        (
            &[
                ("package_type", "all"),
                ("severity_comparison", ">"),
                ("severity", "medium"),
            ],
            &["CVE-4+d", "CVE-5+e"],
        ),
        (
            &[
                ("package_type", "all"),
                ("severity_comparison", "<="),
                ("severity", "low"),
            ],
            &["CVE-1+a", "CVE-2+b"],
        ),
        (
            &[
                ("package_type", "all"),
                ("severity_comparison", "!="),
                ("severity", "low"),
            ],
            &["CVE-1+a", "CVE-3+c", "CVE-4+d", "CVE-5+e"],
        ),
        // anchore's defaults: severity_comparison `>` against `unknown`, so unrated matches stay silent.
        (
            &[("package_type", "all")],
            &["CVE-2+b", "CVE-3+c", "CVE-4+d", "CVE-5+e"],
        ),
        (&[("package_type", "os")], &["CVE-2+b", "CVE-3+c"]),
        (
            &[
                ("package_type", "non-os"),
                ("severity", "high"),
                ("severity_comparison", ">="),
            ],
            &["CVE-4+d", "CVE-5+e"],
        ),
    ];
    for (params, want) in cases {
        let b = one_rule("vulnerabilities", "package", "STOP", params);
        let ids: Vec<String> = rows(&b, &facts)
            .into_iter()
            .map(|r| r.trigger_id.to_string())
            .collect();
        assert_eq!(ids, *want, "params {params:?}");
    }
}

#[test]
fn vulnerabilities_package_scores_fix_vendor_and_age_filters() {
    let mut facts = image();
    let mut fixed_old = vuln("CVE-10", "a", "dpkg", Severity::High);
    fixed_old.cvss_v3 = cvss(9.8);
    fixed_old.fix_version = Some("2.0".into());
    fixed_old.fix_first_seen = Some(days_ago(40));
    let mut fixed_new = vuln("CVE-11", "b", "dpkg", Severity::High);
    fixed_new.cvss_v3 = cvss(5.0);
    fixed_new.fix_version = Some("2.0".into());
    fixed_new.fix_first_seen = Some(days_ago(2));
    let mut wont_fix = vuln("CVE-12", "c", "dpkg", Severity::High);
    wont_fix.will_not_fix = true;
    let mut recent = vuln("CVE-13", "d", "python", Severity::High);
    recent.created_at = Some(days_ago(1));
    recent.package_path = Some("/opt/app/test/fixture.jar".into());
    facts.vulnerabilities = Some(vec![fixed_old, fixed_new, wont_fix, recent]);
    let cases: &[(Params, &[&str])] = &[
        (
            &[("package_type", "all"), ("cvss_v3_base_score", "9.0")],
            &["CVE-10+a"],
        ),
        (
            &[
                ("package_type", "all"),
                ("cvss_v3_base_score_comparison", "<"),
                ("cvss_v3_base_score", "6"),
            ],
            &["CVE-11+b", "CVE-13+d"],
        ),
        (
            &[("package_type", "all"), ("fix_available", "true")],
            &["CVE-10+a", "CVE-11+b"],
        ),
        (
            &[("package_type", "all"), ("fix_available", "false")],
            &["CVE-13+d"],
        ),
        // max_days_since_fix counts from when the fix was first seen, and only with fix_available=true.
        (
            &[
                ("package_type", "all"),
                ("fix_available", "true"),
                ("max_days_since_fix", "30"),
            ],
            &["CVE-10+a"],
        ),
        (
            &[("package_type", "all"), ("vendor_only", "false")],
            &["CVE-10+a", "CVE-11+b", "CVE-12+c", "CVE-13+d"],
        ),
        (
            &[("package_type", "all"), ("max_days_since_creation", "7")],
            &["CVE-10+a", "CVE-11+b"],
        ),
        (
            &[
                ("package_type", "all"),
                ("package_path_exclude", ".*/test/.*"),
            ],
            &["CVE-10+a", "CVE-11+b"],
        ),
    ];
    for (params, want) in cases {
        let b = one_rule("vulnerabilities", "package", "STOP", params);
        let ids: Vec<String> = rows(&b, &facts)
            .into_iter()
            .map(|r| r.trigger_id.to_string())
            .collect();
        assert_eq!(ids, *want, "params {params:?}");
    }
}

#[test]
fn vulnerabilities_package_message_has_anchore_shape() {
    let mut facts = image();
    let mut v = vuln("CVE-2024-1", "openssl", "dpkg", Severity::High);
    v.fix_version = Some("3.0.14-1".into());
    v.link = Some("https://example.test/CVE-2024-1".into());
    facts.vulnerabilities = Some(vec![v]);
    let b = one_rule(
        "vulnerabilities",
        "package",
        "STOP",
        &[("package_type", "all")],
    );
    assert_eq!(
        outputs(&b, &facts),
        ["HIGH Vulnerability found in os package type (dpkg) - openssl (fixed in: 3.0.14-1)(CVE-2024-1 - https://example.test/CVE-2024-1)"]
    );
}

#[test]
fn vulnerabilities_without_data_error_as_warn_never_a_silent_go() {
    let mut facts = image();
    facts.vulnerabilities = None;
    for (trigger, params) in [
        ("package", vec![("package_type", "all")]),
        ("blacklist", vec![("vulnerability_ids", "CVE-1")]),
    ] {
        let b = one_rule("vulnerabilities", trigger, "STOP", &params);
        let result = run(&b, &facts);
        assert_eq!(result.final_action, Action::Warn, "{trigger}");
        assert!(result.rows[0].error && result.rows[0].gate_action == Action::Warn);
        // The configured action is carried, so the admission webhook can refuse to read it as WARN.
        assert_eq!(result.rows[0].unevaluable_action, Some(Action::Stop));
    }
    let b = one_rule(
        "vulnerabilities",
        "package",
        "WARN",
        &[("package_type", "all")],
    );
    assert_eq!(
        run(&b, &facts).rows[0].unevaluable_action,
        Some(Action::Warn)
    );
    let b = one_rule(
        "vulnerabilities",
        "vulnerability_data_unavailable",
        "STOP",
        &[],
    );
    assert_eq!(run(&b, &facts).final_action, Action::Stop);
    assert_eq!(run(&b, &image()).final_action, Action::Go);
    let mut no_distro = image();
    no_distro.feed.distro_data = false;
    assert_eq!(
        outputs(&b, &no_distro),
        ["Distro-specific feed data not found for distro namespace: debian:12. Cannot perform CVE scan OS/distro packages"]
    );
}

#[test]
fn stale_feed_data_fires_past_max_days_and_when_never_synced() {
    let b = one_rule(
        "vulnerabilities",
        "stale_feed_data",
        "WARN",
        &[("max_days_since_sync", "2")],
    );
    for (last_sync, fires) in [
        (Some(days_ago(1)), false),
        (Some(days_ago(2)), false),
        (Some(days_ago(3)), true),
        (None, true),
    ] {
        let mut facts = image();
        facts.feed.last_sync = last_sync;
        assert_eq!(!rows(&b, &facts).is_empty(), fires, "{last_sync:?}");
    }
}

#[test]
fn vulnerability_blacklist_matches_ids_and_aliases_unless_will_not_fix() {
    let mut facts = image();
    let mut ghsa = vuln("GHSA-xxxx", "lib", "python", Severity::Low);
    ghsa.aliases = vec!["CVE-2024-9".into()];
    let mut wnf = vuln("CVE-2024-8", "lib2", "dpkg", Severity::Low);
    wnf.will_not_fix = true;
    facts.vulnerabilities = Some(vec![ghsa, wnf]);
    let b = one_rule(
        "vulnerabilities",
        "blacklist",
        "STOP",
        &[("vulnerability_ids", "CVE-2024-9, CVE-2024-8")],
    );
    assert_eq!(
        outputs(&b, &facts),
        ["Blacklisted vulnerabilities detected: ['CVE-2024-9']"]
    );
    let b = one_rule(
        "vulnerabilities",
        "blacklist",
        "STOP",
        &[
            ("vulnerability_ids", "CVE-2024-8"),
            ("vendor_only", "false"),
        ],
    );
    assert_eq!(
        outputs(&b, &facts),
        ["Blacklisted vulnerabilities detected: ['CVE-2024-8']"]
    );
}

#[test]
fn dockerfile_instruction_checks_over_history_lines() {
    let mut facts = image();
    facts.image.config.instructions = vec![
        "FROM debian:12".into(),
        "RUN apt-get update".into(),
        "USER app".into(),
        "RUN make".into(),
    ];
    let cases: &[(&str, &str, Option<&str>, usize)] = &[
        ("HEALTHCHECK", "not_exists", None, 1),
        ("RUN", "exists", None, 2),
        ("RUN", "not_exists", None, 0),
        ("FROM", "=", Some("debian:12"), 1),
        ("FROM", "!=", Some("debian:12"), 0),
        ("RUN", "like", Some("apt-get .*"), 1),
        ("RUN", "not_like", Some("apt-get .*"), 1),
        ("USER", "in", Some("root, app"), 1),
        ("USER", "not_in", Some("root"), 1),
    ];
    for (instruction, check, value, want) in cases {
        let mut params = vec![("instruction", *instruction), ("check", *check)];
        if let Some(v) = value {
            params.push(("value", v));
        }
        let b = one_rule("dockerfile", "instruction", "WARN", &params);
        assert_eq!(
            rows(&b, &facts).len(),
            *want,
            "{instruction} {check} {value:?}"
        );
    }
    let b = one_rule(
        "dockerfile",
        "instruction",
        "WARN",
        &[("instruction", "HEALTHCHECK"), ("check", "not_exists")],
    );
    assert_eq!(
        outputs(&b, &facts),
        ["Dockerfile directive 'HEALTHCHECK' not found, matching condition 'not_exists' check"]
    );
    // The config's health check counts when the history does not show it (squashed images).
    facts.image.config.healthcheck = Some("CMD curl -f http://localhost/".into());
    assert!(rows(&b, &facts).is_empty());
    // actual_dockerfile_only skips an inferred Dockerfile.
    let b = one_rule(
        "dockerfile",
        "instruction",
        "WARN",
        &[
            ("instruction", "RUN"),
            ("check", "exists"),
            ("actual_dockerfile_only", "true"),
        ],
    );
    assert!(rows(&b, &facts).is_empty());
    facts.image.config.dockerfile_mode = fathom_policy::DockerfileMode::Actual;
    assert_eq!(rows(&b, &facts).len(), 2);
}

#[test]
fn dockerfile_exposed_ports_blacklist_and_whitelist() {
    let mut facts = image();
    facts.image.config.exposed_ports = vec!["22/tcp".into(), "8080/tcp".into(), "53/udp".into()];
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "22",
            "blacklist",
            &["Dockerfile exposes port (22/tcp) which is in policy file DENIEDPORTS list"],
        ),
        (
            "22,53",
            "deny",
            &[
                "Dockerfile exposes port (22/tcp) which is in policy file DENIEDPORTS list",
                "Dockerfile exposes port (53/udp) which is in policy file DENIEDPORTS list",
            ],
        ),
        ("80", "blacklist", &[]),
        (
            "8080,53",
            "whitelist",
            &["Dockerfile exposes port (22/tcp) which is not in policy file ALLOWEDPORTS list"],
        ),
        ("8080,53,22", "allow", &[]),
    ];
    for (ports, kind, want) in cases {
        let b = one_rule(
            "dockerfile",
            "exposed_ports",
            "STOP",
            &[("ports", ports), ("type", kind)],
        );
        let mut got = outputs(&b, &facts);
        got.sort();
        assert_eq!(got, *want, "{ports} {kind}");
    }
}

#[test]
fn dockerfile_effective_user_defaults_to_root_and_takes_the_last_user() {
    let b = one_rule(
        "dockerfile",
        "effective_user",
        "STOP",
        &[("users", "root"), ("type", "blacklist")],
    );
    let mut facts = image();
    assert_eq!(
        outputs(&b, &facts),
        ["User root found as effective user, which is explicity not allowed list"]
    );
    facts.image.config.instructions = vec!["USER root".into(), "USER app".into()];
    assert!(outputs(&b, &facts).is_empty());
    let allow = one_rule(
        "dockerfile",
        "effective_user",
        "STOP",
        &[("users", "nobody"), ("type", "whitelist")],
    );
    assert_eq!(
        outputs(&allow, &facts),
        ["User app found as effective user, which is not on the allowed list"]
    );
    let none = one_rule("dockerfile", "no_dockerfile_provided", "WARN", &[]);
    assert_eq!(
        outputs(&none, &facts),
        ["Image was not analyzed with an actual Dockerfile"]
    );
}

#[test]
fn packages_required_blacklist_and_verify() {
    let mut facts = image();
    facts.packages = vec![
        package("dpkg", "openssl", "3.0.11-1~deb12u2"),
        package("dpkg", "bash", "5.2.15-2"),
    ];
    let cases: &[(&str, Params, usize)] = &[
        ("required_package", &[("name", "openssl")], 0),
        ("required_package", &[("name", "curl")], 1),
        (
            "required_package",
            &[("name", "openssl"), ("version", "3.0.11-1~deb12u2")],
            0,
        ),
        (
            "required_package",
            &[("name", "openssl"), ("version", "3.0.11-1")],
            1,
        ),
        (
            "required_package",
            &[
                ("name", "openssl"),
                ("version", "3.0.11-1"),
                ("version_match_type", "minimum"),
            ],
            1,
        ),
        (
            "required_package",
            &[
                ("name", "openssl"),
                ("version", "3.0.9"),
                ("version_match_type", "minimum"),
            ],
            0,
        ),
        ("blacklist", &[("name", "bash")], 1),
        ("blacklist", &[("name", "bash"), ("version", "5.2.15-2")], 1),
        ("blacklist", &[("name", "bash"), ("version", "5.1")], 0),
    ];
    for (trigger, params, want) in cases {
        let b = one_rule("packages", trigger, "STOP", params);
        assert_eq!(rows(&b, &facts).len(), *want, "{trigger} {params:?}");
    }
    facts.packages[1].files = vec![
        fathom_policy::PackageFile {
            path: "/bin/bash".into(),
            sha256: Some("aa".into()),
            ..Default::default()
        },
        fathom_policy::PackageFile {
            path: "/etc/bash.bashrc".into(),
            ..Default::default()
        },
    ];
    let mut bash = file("/bin/bash", 0o755);
    bash.sha256 = Some("bb".into());
    facts.files = Some(vec![bash]);
    let b = one_rule("packages", "verify", "WARN", &[]);
    let mut got = outputs(&b, &facts);
    got.sort();
    assert_eq!(got, [
        "VERIFY check against package db for package 'bash' failed on entry '/bin/bash' with status: 'changed'",
        "VERIFY check against package db for package 'bash' failed on entry '/etc/bash.bashrc' with status: 'missing'",
    ]);
    let b = one_rule(
        "packages",
        "verify",
        "WARN",
        &[("check", "missing"), ("only_directories", "/bin")],
    );
    assert!(outputs(&b, &facts).is_empty());
}
