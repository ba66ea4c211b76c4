use super::*;

const TAR: &[u8] = include_bytes!("testdata/tar-copyright");
const ADDUSER: &[u8] = include_bytes!("testdata/adduser-copyright");

fn pass() -> ContentPass {
    ContentPass::new(ContentOptions::default()).unwrap()
}

#[test]
fn debian_copyright_licenses_in_spdx_form() {
    let c = parse_copyright("/usr/share/doc/tar/copyright", TAR).unwrap();
    assert_eq!(c.package, "tar");
    assert_eq!(
        c.licenses,
        [
            "GPL-2.0-only",
            "GPL-2.0-or-later",
            "GPL-3.0-only",
            "GPL-3.0-or-later",
            "LGPL-3.0-only",
            "LGPL-3.0-or-later"
        ]
    );
    let a = parse_copyright("/usr/share/doc/adduser/copyright", ADDUSER).unwrap();
    assert_eq!(a.licenses, ["GPL-2.0-only", "GPL-2.0-or-later"]);
    assert!(parse_copyright("/usr/share/doc/x/copyright", b"no licenses here").is_none());
    let none = parse_copyright(
        "/usr/share/doc/x/copyright",
        b"License: none\nLicense: MIT.\n",
    )
    .unwrap();
    assert_eq!(none.licenses, ["MIT"]);
}

#[test]
fn copyright_paths() {
    assert!(is_copyright_path("/usr/share/doc/libc6/copyright"));
    assert!(!is_copyright_path(
        "/usr/share/doc/libc6/examples/copyright"
    ));
    assert!(!is_copyright_path("/usr/share/doc//copyright"));
    assert!(!is_copyright_path("/usr/share/doc/copyright"));
}

#[test]
fn licenses_parse_leniently_or_stay_raw() {
    assert_eq!(license::normalize("MIT"), "MIT");
    assert_eq!(license::normalize("Apache-2.0 OR MIT"), "Apache-2.0 OR MIT");
    assert_eq!(license::normalize("GPL-2+"), "GPL-2.0-or-later");
    assert_eq!(license::normalize("Expat"), "MIT");
    assert_eq!(license::normalize("MIT/Apache-2.0"), "MIT OR Apache-2.0");
    // Imprecise names stay as written (the spdx crate would guess BSD-2-Clause and GPL-2.0).
    assert_eq!(license::normalize("BSD"), "BSD");
    assert_eq!(license::normalize("GPL"), "GPL");
    assert_eq!(
        license::normalize("Some Custom License v7"),
        "Some Custom License v7"
    );
}

const AWS_KEY: &str = "AKIAZZZZEXAMPLEKEY42";
const PEM: &str =
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7x\n-----END RSA PRIVATE KEY-----\n";

#[test]
fn secrets_report_line_and_rule_never_the_value() {
    let text = format!(
        "# config\n[default]\naws_access_key_id = {AWS_KEY}\naws_secret_access_key = {}\n{PEM}github = ghp_{}\n",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYZZEXAMPLEK",
        "a".repeat(36)
    );
    let p = pass();
    let want = p.wants("/root/.aws/credentials", text.len() as u64);
    assert!(want.secrets && want.digest);
    let found = p.examine("/root/.aws/credentials", want, text.as_bytes());
    let got: Vec<(u64, &str)> = found
        .secrets
        .iter()
        .map(|s| (s.line, s.rule.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "AWS_ACCESS_KEY"),
            (4, "AWS_SECRET_KEY"),
            (5, "PRIV_KEY"),
            (8, "GITHUB_TOKEN")
        ]
    );
    let json = serde_json::to_string(&found.secrets).unwrap();
    assert!(!json.contains(AWS_KEY) && !json.contains("MIIEpAIBAAKCAQEA7x"));
    assert_eq!(found.sha256.unwrap().len(), 64);
}

#[test]
fn binary_large_and_excluded_files_are_not_searched() {
    let p = pass();
    let mut junk = format!("\0ELF {AWS_KEY}").into_bytes();
    junk.extend_from_slice(&[0xff; 100]);
    let want = p.wants("/bin/tool", junk.len() as u64);
    assert!(p.examine("/bin/tool", want, &junk).secrets.is_empty());
    assert!(!p.wants("/etc/big", (1 << 20) + 1).secrets);
    assert!(!p.wants("/etc/big", (1 << 20) + 1).digest);
    assert!(!p.wants("/usr/share/doc/x/README", 100).secrets);
    assert!(!ContentPass::new(ContentOptions::off())
        .unwrap()
        .wants("/etc/x", 10)
        .any());
}

#[test]
fn a_long_line_and_many_matches_stay_bounded() {
    let p = pass();
    // A 10 MiB line with a key at its end (after a space: glued to a word it is not a key).
    let mut text = "x".repeat(10 << 20);
    text.push(' ');
    text.push_str(AWS_KEY);
    text.push('\n');
    for _ in 0..1000 {
        text.push_str(AWS_KEY);
        text.push('\n');
    }
    let found = p.examine(
        "/big",
        ContentWant {
            secrets: true,
            ..Default::default()
        },
        text.as_bytes(),
    );
    assert_eq!(found.secrets.len(), 64);
    assert_eq!(found.secrets[0].line, 1);
    assert_eq!(found.secrets[1].line, 2);
}

#[test]
fn invalid_rules_are_named_and_change_the_key() {
    let mut o = ContentOptions::default();
    let before = o.key();
    o.secrets.rules.push(SecretRule {
        name: "BROKEN".into(),
        pattern: "(".into(),
    });
    assert_ne!(o.key(), before);
    let e = ContentPass::new(o).unwrap_err();
    assert!(e.contains("BROKEN"), "{e}");
    assert_eq!(ContentOptions::off().key(), "content=off");
}

#[test]
fn content_search_skips_binary_and_large_files_and_runs_without_secret_search() {
    let mut o = ContentOptions::default();
    o.secrets.enabled = false;
    o.secrets.max_file_bytes = 1000;
    o.content_search = vec![ContentRule {
        name: "PASSWORD".into(),
        pattern: r"password\s*=\s*\S+".into(),
        store_match: true,
    }];
    let p = ContentPass::new(o).unwrap();
    let text = b"[db]\npassword = hunter2\n";
    let want = p.wants("/etc/app.conf", text.len() as u64);
    assert!(want.search && !want.secrets);
    let found = p.examine("/etc/app.conf", want, text);
    assert_eq!(found.matches.len(), 1);
    assert_eq!(found.matches[0].line, 2);
    assert_eq!(found.matches[0].text.as_deref(), Some("password = hunter2"));
    // Binary: skipped, as for secrets.
    let binary = b"\0ELF password = hunter2\n";
    let want = p.wants("/bin/tool", binary.len() as u64);
    assert!(p.examine("/bin/tool", want, binary).matches.is_empty());
    // Over the secret search's size cap: not read for the search.
    assert!(!p.wants("/etc/big.conf", 1001).search);
    // No rules: nothing is searched.
    assert!(!pass().wants("/etc/app.conf", 10).search);
}
