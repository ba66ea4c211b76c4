//! Table tests for the licenses, files, secret_scans, metadata and always gates (anchore's semantics).

mod support;

use fathom_policy::{Action, FileType};
use support::*;

#[test]
fn licenses_exact_and_partial_match() {
    let mut facts = image();
    let mut a = package("dpkg", "a", "1");
    a.licenses = vec!["GPL-2.0+ LGPL-2.1".into()];
    let mut b = package("npm", "b", "1");
    b.licenses = vec!["MIT".into()];
    facts.packages = vec![a, b];
    let exact = one_rule(
        "licenses",
        "blacklist_exact_match",
        "STOP",
        &[("licenses", "GPL-2.0+,MIT")],
    );
    assert_eq!(outputs(&exact, &facts), ["LICFULLMATCH Packages are installed that have blacklisted licenses: a(GPL-2.0+), b(MIT)"]);
    let partial = one_rule(
        "licenses",
        "blacklist_partial_match",
        "STOP",
        &[("licenses", "GPL")],
    );
    assert_eq!(outputs(&partial, &facts), ["LICSUBMATCH Packages are installed that have blacklisted licenses: a(GPL-2.0+), a(LGPL-2.1)"]);
    let none = one_rule(
        "licenses",
        "blacklist_exact_match",
        "STOP",
        &[("licenses", "GPL")],
    );
    assert!(outputs(&none, &facts).is_empty());
}

#[test]
fn files_name_suid_attribute_and_content() {
    let mut facts = image();
    let mut suid = file("/usr/bin/passwd", 0o4755);
    suid.suid = true;
    let mut key = file("/etc/ssl/private/server.pem", 0o600);
    key.sha256 = Some("ABC".into());
    let mut dir = file("/etc", 0o755);
    dir.file_type = FileType::Dir;
    facts.files = Some(vec![suid, key, dir]);
    let b = one_rule("files", "name_match", "STOP", &[("regex", r".*\.pem")]);
    assert_eq!(outputs(&b, &facts), ["Application of regex matched file found in container: file=/etc/ssl/private/server.pem regexp=.*\\.pem"]);
    let b = one_rule("files", "suid_or_guid_set", "WARN", &[]);
    assert_eq!(
        outputs(&b, &facts),
        ["SUID or SGID found set on file /usr/bin/passwd. Mode: 0o4755"]
    );
    let cases: &[(&[(&str, &str)], bool)] = &[
        (
            &[
                ("filename", "/etc/ssl/private/server.pem"),
                ("checksum", "abc"),
                ("checksum_match", "equals"),
            ],
            true,
        ),
        (
            &[
                ("filename", "/etc/ssl/private/server.pem"),
                ("checksum", "abc"),
                ("checksum_match", "not_equals"),
            ],
            false,
        ),
        (
            &[
                ("filename", "/etc/ssl/private/server.pem"),
                ("mode", "00644"),
                ("mode_op", "not_equals"),
            ],
            true,
        ),
        (
            &[
                ("filename", "/etc/ssl/private/server.pem"),
                ("mode", "0600"),
            ],
            true,
        ),
        (&[("filename", "/missing")], false),
        (&[("filename", "/missing"), ("skip_missing", "false")], true),
    ];
    for (params, fires) in cases {
        let b = one_rule("files", "attribute_match", "STOP", params);
        assert_eq!(!outputs(&b, &facts).is_empty(), *fires, "{params:?}");
    }
    facts.content_matches = Some(vec![fathom_policy::ContentMatch {
        path: "/app/config.ini".into(),
        regex_name: Some("password".into()),
        regex: ".*password=.*".into(),
    }]);
    for (name, fires) in [
        (None, true),
        (Some("password"), true),
        (Some(".*password=.*"), true),
        (Some("token"), false),
    ] {
        let params: Vec<(&str, &str)> = name.map(|n| vec![("regex_name", n)]).unwrap_or_default();
        let b = one_rule("files", "content_regex_match", "STOP", &params);
        assert_eq!(!outputs(&b, &facts).is_empty(), fires, "{name:?}");
    }
    // Several matching lines of one file fire once per (file, regex), as anchore's per-file map does.
    let hit = |path: &str, name: &str| fathom_policy::ContentMatch {
        path: path.into(),
        regex_name: Some(name.into()),
        regex: format!("{name}=.*"),
    };
    facts.content_matches = Some(vec![
        hit("/app/config.ini", "password"),
        hit("/app/config.ini", "password"),
        hit("/app/config.ini", "host"),
        hit("/etc/other.ini", "password"),
    ]);
    let b = one_rule("files", "content_regex_match", "STOP", &[]);
    let mut fired = outputs(&b, &facts);
    fired.sort();
    assert_eq!(
        fired,
        [
            "File content analyzer found regexp match in container: file=/app/config.ini regexp=host=host=.*",
            "File content analyzer found regexp match in container: file=/app/config.ini regexp=password=password=.*",
            "File content analyzer found regexp match in container: file=/etc/other.ini regexp=password=password=.*",
        ]
    );
    // Content search that did not run (nothing configured): anchore's trigger walks an empty result map
    // (gates/files.py ContentMatchTrigger over `content_regexp` = {}) and does not fire, so no WARN row.
    facts.content_matches = None;
    let r = run(&b, &facts);
    assert_eq!((r.final_action, r.rows.len()), (Action::Go, 0));
    facts.files = None;
    let b = one_rule("files", "suid_or_guid_set", "STOP", &[]);
    assert_eq!(
        run(&b, &facts).final_action,
        Action::Warn,
        "missing inventory is an errored rule"
    );
}

#[test]
fn secret_scans_found_and_notfound() {
    let mut facts = image();
    let finding = |path: &str, line, name: &str| fathom_policy::SecretFinding {
        path: path.into(),
        line,
        regex_name: name.into(),
    };
    facts.secrets = Some(vec![
        finding("/root/.aws/credentials", 1, "AWS_ACCESS_KEY"),
        finding("/root/.aws/credentials", 2, "AWS_ACCESS_KEY"),
        finding("/etc/key.pem", 1, "PRIV_KEY"),
    ]);
    let cases: &[(&[(&str, &str)], usize)] = &[
        (&[], 2),
        (&[("content_regex_name", "AWS_ACCESS_KEY")], 1),
        (&[("filename_regex", "/etc/.*")], 1),
        (&[("content_regex_name", "API_KEY")], 0),
        (
            &[
                ("content_regex_name", "API_KEY"),
                ("match_type", "notfound"),
            ],
            1,
        ),
        (&[("match_type", "notfound")], 0),
    ];
    for (params, want) in cases {
        let b = one_rule("secret_scans", "content_regex_checks", "STOP", params);
        assert_eq!(rows(&b, &facts).len(), *want, "{params:?}");
    }
}

#[test]
fn metadata_attribute_checks() {
    let facts = image();
    let cases: &[(&str, &str, Option<&str>, bool)] = &[
        ("size", ">", Some("10MB"), true),
        ("size", ">", Some("1gb"), false),
        ("size", "<=", Some("52428800"), true),
        ("layer_count", ">=", Some("3"), true),
        ("layer_count", "<", Some("3"), false),
        ("distro", "=", Some("debian"), true),
        ("distro", "in", Some("alpine, debian"), true),
        ("distro", "not_in", Some("alpine"), true),
        ("architecture", "like", Some("amd.*"), true),
        ("architecture", "not_like", Some("arm.*"), true),
        ("os_type", "!=", Some("linux"), false),
        ("like_distro", "exists", None, true),
        ("distro_version", "not_exists", None, false),
    ];
    for (attribute, check, value, fires) in cases {
        let mut params = vec![("attribute", *attribute), ("check", *check)];
        if let Some(v) = value {
            params.push(("value", v));
        }
        let b = one_rule("metadata", "attribute", "STOP", &params);
        assert_eq!(
            !outputs(&b, &facts).is_empty(),
            *fires,
            "{attribute} {check} {value:?}"
        );
    }
    let b = one_rule(
        "metadata",
        "attribute",
        "STOP",
        &[("attribute", "distro"), ("check", "="), ("value", "debian")],
    );
    assert_eq!(outputs(&b, &facts), ["Attribute check for attribute: 'distro' check: '=' check_value: 'debian' matched image value: 'debian'"]);
    // An unknown attribute value cannot be ordered: anchore's TypeError, an errored rule here.
    let mut unknown = image();
    unknown.image.distro_version = None;
    let b = one_rule(
        "metadata",
        "attribute",
        "STOP",
        &[
            ("attribute", "distro_version"),
            ("check", ">"),
            ("value", "11"),
        ],
    );
    assert_eq!(run(&b, &unknown).final_action, Action::Warn);
}

#[test]
fn always_fires() {
    let b = one_rule("always", "always", "STOP", &[]);
    assert_eq!(run(&b, &image()).final_action, Action::Stop);
}
