//! Table tests for the passwd_file, retrieved_files and malware gates, mirroring anchore-engine's own
//! tests of them (`test_passwd_file.py`, `test_retrieved_files.py`, `test_malware.py`): the same file
//! contents, parameters, messages and instance ids.

mod support;

use std::collections::BTreeSet;

use fathom_policy::{Action, ImageFacts, MalwareFinding, MalwareScan, RetrievedFile};
use md5::{Digest, Md5};
use support::*;

const REDIS: &str = "redis:x:41:29:redis:/var/redis:/bin/zsh";
const FOO: &str = "foo:x:45:45:foo:/var/foo:/bin/bash";

fn retrieved(path: &str, content: &str) -> RetrievedFile {
    RetrievedFile {
        path: path.into(),
        content: content.as_bytes().to_vec(),
    }
}

/// anchore's passwd test image: the file stored under `key` (`/etc/passwd`, or another key to leave the
/// image without one).
fn passwd_image(key: &str) -> ImageFacts {
    let mut facts = image();
    facts.retrieved_files = vec![retrieved(
        key,
        &format!(
            "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/usr/bin/false\nadm:x:22:22:adm:/var/adm:/usr/bin/false\n{REDIS}\n{FOO}\n"
        ),
    )];
    facts
}

fn fired(trigger: &str, params: &[(&str, &str)], facts: &ImageFacts) -> BTreeSet<String> {
    outputs(&one_rule("passwd_file", trigger, "STOP", params), facts)
        .into_iter()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Trigger, parameters, the messages it must fire.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, BTreeSet<String>);

#[test]
fn passwd_file_triggers_as_anchores_tests() {
    let adm = "Blacklisted user 'adm' found in image's /etc/passwd: pentry=adm:x:22:22:adm:/var/adm:/usr/bin/false";
    let uid22 = "Blacklisted uid '22' found in image's /etc/passwd: pentry=adm:x:22:22:adm:/var/adm:/usr/bin/false";
    let gid22 = "Blacklisted gid '22' found in image's /etc/passwd: pentry=adm:x:22:22:adm:/var/adm:/usr/bin/false";
    let bash = format!("Blacklisted shell '/bin/bash' found in image's /etc/passwd: pentry={FOO}");
    let cases: Vec<Case> = vec![
        ("blacklist_usernames", vec![("user_names", "adm")], set(&[adm])),
        (
            "blacklist_usernames",
            vec![("user_names", "adm,bin")],
            set(&[
                adm,
                "Blacklisted user 'bin' found in image's /etc/passwd: pentry=bin:x:1:1:bin:/bin:/usr/bin/false",
            ]),
        ),
        ("blacklist_usernames", vec![("user_names", "postgres")], set(&[])),
        ("blacklist_userids", vec![("user_ids", "22")], set(&[uid22])),
        (
            "blacklist_userids",
            vec![("user_ids", "22,41")],
            set(&[
                uid22,
                &format!("Blacklisted uid '41' found in image's /etc/passwd: pentry={REDIS}"),
            ]),
        ),
        ("blacklist_userids", vec![("user_ids", "220")], set(&[])),
        // anchore's number list reads ints: 022 is 22.
        ("blacklist_userids", vec![("user_ids", "022")], set(&[uid22])),
        ("blacklist_groupids", vec![("group_ids", "22")], set(&[gid22])),
        (
            "blacklist_groupids",
            vec![("group_ids", "22,29")],
            set(&[
                gid22,
                &format!("Blacklisted gid '29' found in image's /etc/passwd: pentry={REDIS}"),
            ]),
        ),
        ("blacklist_groupids", vec![("group_ids", "92")], set(&[])),
        ("blacklist_shells", vec![("shells", "/bin/bash")], set(&[&bash])),
        (
            "blacklist_shells",
            vec![("shells", "/bin/bash,/bin/zsh")],
            set(&[
                &bash,
                &format!("Blacklisted shell '/bin/zsh' found in image's /etc/passwd: pentry={REDIS}"),
            ]),
        ),
        ("blacklist_shells", vec![("shells", "/bin/ion")], set(&[])),
        (
            "blacklist_full_entry",
            vec![("entry", REDIS)],
            set(&[&format!(
                "Blacklisted pentry '{REDIS}' found in image's /etc/passwd: pentry={REDIS}"
            )]),
        ),
        (
            "blacklist_full_entry",
            vec![("entry", FOO)],
            set(&[&format!(
                "Blacklisted pentry '{FOO}' found in image's /etc/passwd: pentry={FOO}"
            )]),
        ),
        (
            "blacklist_full_entry",
            vec![("entry", "postgres:x:10:10:postgres:/var/postgres:/bin/false")],
            set(&[]),
        ),
        ("content_not_available", vec![], set(&[])),
    ];
    let facts = passwd_image("/etc/passwd");
    for (trigger, params, want) in cases {
        assert_eq!(
            fired(trigger, &params, &facts),
            want,
            "{trigger} {params:?}"
        );
    }
    // Stored under another key: the file is not available; the blacklists do not fire.
    let other = passwd_image("other");
    assert_eq!(
        fired("content_not_available", &[], &other),
        set(&["Cannot locate /etc/passwd in image stored files archive: check analyzer settings."])
    );
    assert!(fired("blacklist_usernames", &[("user_names", "root")], &other).is_empty());
    // An empty file is as good as none (anchore: `if not passwd_entries`).
    let mut empty = image();
    empty.retrieved_files = vec![retrieved("/etc/passwd", "")];
    assert_eq!(fired("content_not_available", &[], &empty).len(), 1);
}

#[test]
fn passwd_file_quirks_are_anchores() {
    // A blank line in the middle is a user "" with no fields: the uid lookup raises IndexError in
    // anchore, failing the rule (a WARN row), while the name lookup is unaffected.
    let mut facts = image();
    facts.retrieved_files = vec![retrieved(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\n\nadm:x:22:22::/:/bin/sh\n",
    )];
    let b = one_rule(
        "passwd_file",
        "blacklist_userids",
        "STOP",
        &[("user_ids", "0")],
    );
    let r = rows(&b, &facts);
    assert!(r.iter().any(|r| r.error), "{r:?}");
    assert!(
        r[0].check_output.contains("list index out of range"),
        "{}",
        r[0].check_output
    );
    assert_eq!(run(&b, &facts).final_action, Action::Warn);
    let b = one_rule(
        "passwd_file",
        "blacklist_usernames",
        "STOP",
        &[("user_names", "adm")],
    );
    assert_eq!(run(&b, &facts).final_action, Action::Stop);
    // A later line for the same user replaces the earlier one's fields.
    facts.retrieved_files = vec![retrieved(
        "/etc/passwd",
        "app:x:1:1::/:/bin/sh\napp:x:2:2::/:/bin/bash\n",
    )];
    assert!(fired("blacklist_userids", &[("user_ids", "1")], &facts).is_empty());
    assert_eq!(
        fired("blacklist_userids", &[("user_ids", "2")], &facts).len(),
        1
    );
    // A number list must hold numbers (anchore's validator).
    let doc = bundle_doc(
        serde_json::json!([{"id": "r1", "gate": "passwd_file", "trigger": "blacklist_userids",
        "action": "STOP", "params": [{"name": "user_ids", "value": "0,root"}]}]),
    );
    let problems = refused(&doc);
    assert!(problems[0].1.contains("`root`"), "{problems:?}");
}

fn retrieved_image() -> ImageFacts {
    let mut facts = image();
    facts.retrieved_files = vec![
        retrieved("/etc/passwd", "adm:x:5:5:adm:/var/adm:/bin/bash"),
        retrieved(
            "/usr/local/lib/ruby/gems/2.3.0/",
            "adm:x:5:5:adm:/var/adm:/bin/bash",
        ),
    ];
    facts
}

#[test]
fn retrieved_files_triggers_as_anchores_tests() {
    let facts = retrieved_image();
    let missing = |path: &str, facts: &ImageFacts| {
        outputs(
            &one_rule(
                "retrieved_files",
                "content_not_available",
                "STOP",
                &[("path", path)],
            ),
            facts,
        )
    };
    assert_eq!(
        missing("/test/path", &facts),
        ["Cannot locate file in the image analysis"]
    );
    assert!(missing("/etc/passwd", &facts).is_empty());
    // Nothing retrieved at all: anchore fires twice (once for "none", once for "not this one").
    assert_eq!(missing("/etc/passwd", &image()).len(), 2);

    let regex = |path: &str, check: &str, re: &str, facts: &ImageFacts| {
        rows(
            &one_rule(
                "retrieved_files",
                "content_regex",
                "STOP",
                &[("path", path), ("check", check), ("regex", re)],
            ),
            facts,
        )
    };
    let r = regex("/etc/passwd", "match", ".*bash", &facts);
    assert_eq!(r.len(), 1);
    assert_eq!(
        &*r[0].check_output,
        "Content regex '.*bash' check 'match' found in retrieved file '/etc/passwd'"
    );
    assert_eq!(&*r[0].trigger_id, "r1+file:///etc/passwd");
    assert!(regex("/etc/passwd", "match", ".*zsh", &facts).is_empty());
    assert!(regex("/etc/passwd", "no_match", ".*bash", &facts).is_empty());
    let r = regex(
        "/usr/local/lib/ruby/gems/2.3.0/",
        "no_match",
        "expect_fail",
        &facts,
    );
    assert_eq!(
        r.iter().map(|r| r.check_output.to_string()).collect::<Vec<_>>(),
        ["Content regex 'expect_fail' check 'no_match' found in retrieved file '/usr/local/lib/ruby/gems/2.3.0/'"]
    );
    // re.match per whitespace-separated token: anchored at each token's start.
    assert!(regex("/etc/passwd", "match", "bash", &facts).is_empty());
    assert_eq!(regex("/etc/passwd", "match", "adm:x", &facts).len(), 1);
    // Missing file, or nothing retrieved: no fire.
    assert!(regex("/nope", "match", ".*", &facts).is_empty());
    assert!(regex("/etc/passwd", "no_match", "x", &image()).is_empty());
    // An invalid regex fails the rule when it runs (anchore compiles it then).
    let r = regex("/etc/passwd", "match", "(", &facts);
    assert!(r[0].error, "{r:?}");
    // anchore's validation errors: each required parameter, and `check` from its enum.
    for params in [
        vec![("check", "match"), ("regex", ".*bash")],
        vec![("path", "/etc/passwd"), ("regex", ".*bash")],
        vec![("path", "/etc/passwd"), ("check", "match")],
        vec![
            ("path", "/etc/passwd"),
            ("check", "!="),
            ("regex", ".*bash"),
        ],
    ] {
        let params: Vec<serde_json::Value> = params
            .iter()
            .map(|(n, v)| serde_json::json!({"name": n, "value": v}))
            .collect();
        let doc = bundle_doc(serde_json::json!([{"id": "r1", "gate": "retrieved_files",
            "trigger": "content_regex", "action": "STOP", "params": params}]));
        assert!(!refused(&doc).is_empty());
    }
}

fn malware_image(findings: &[(&str, &str)]) -> ImageFacts {
    let mut facts = image();
    facts.malware = Some(MalwareScan {
        scanner: "clamav".into(),
        findings: findings
            .iter()
            .map(|(path, signature)| MalwareFinding {
                path: path.to_string(),
                signature: signature.to_string(),
            })
            .collect(),
    });
    facts
}

#[test]
fn malware_triggers_as_anchores_tests() {
    let sig = "Unix.Trojan.MSShellcode-40";
    let sig2 = "Unix.Trojan.SomeMadeupValue-1";
    let findings = [
        ("/elf_payload1", sig),
        ("/home/someuser/file2", sig),
        ("/var/lib/somebadlib/corrupted", sig2),
    ];
    let scans = one_rule("malware", "scans", "STOP", &[]);
    let not_run = one_rule("malware", "scan_not_run", "STOP", &[]);
    for (path, signature) in findings {
        let facts = malware_image(&[(path, signature)]);
        let r = rows(&scans, &facts);
        assert_eq!(r.len(), 1);
        let md5 = hex::encode(Md5::digest(path.as_bytes()));
        assert_eq!(&*r[0].trigger_id, format!("clamav+{signature}+{md5}"));
        assert_eq!(
            &*r[0].check_output,
            format!("Malware scan finding: scanner=clamav file={path} signature={signature}")
        );
        assert_eq!(run(&scans, &facts).final_action, Action::Stop);
        // A scan with findings ran.
        assert!(rows(&not_run, &facts).is_empty());
    }
    assert_eq!(rows(&scans, &malware_image(&findings)).len(), 3);
    // A scan that found nothing: no finding, and it ran.
    let clean = malware_image(&[]);
    assert!(rows(&scans, &clean).is_empty());
    assert!(rows(&not_run, &clean).is_empty());
    // No scan: `scans` is silent, `scan_not_run` fires.
    assert!(rows(&scans, &image()).is_empty());
    assert_eq!(
        outputs(&not_run, &image()),
        ["No malware scans found for image"]
    );
    // An invalid finding (no path or no signature) is skipped, as anchore does for safety.
    assert!(rows(&scans, &malware_image(&[("", sig), ("/x", "")])).is_empty());
}
