//! `fathom check SOURCE --policy BUNDLE [--vulns-from URL_OR_DIR]`: standalone evaluation of generated
//! sample images (from the test registry, an OCI layout and a docker archive) against generated bundles
//! and the generated OSV feed, through the real binary; exit codes 0 (GO/WARN), 1 (STOP) and 2 (errors).

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use fathom_testkit::osv::GLIBC;
use serde_json::{json, Value};
use support::fathom;
use support::osv_server::{oci_dir, sample, with_config, FeedServer};

fn check(args: &[&str]) -> Output {
    fathom()
        .arg("check")
        .args(args)
        .env("FATHOM_INSECURE_REGISTRIES", support::registry())
        .output()
        .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn rows(eval: &Value) -> Vec<(String, String, String)> {
    eval["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["gate"].as_str().unwrap().to_string(),
                r["trigger"].as_str().unwrap().to_string(),
                r["trigger_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn triggers(eval: &Value) -> Vec<String> {
    rows(eval)
        .into_iter()
        .map(|r| format!("{}.{}", r.0, r.1))
        .collect()
}

/// A one-policy bundle with these rules, mapped to every image.
fn bundle(dir: &Path, name: &str, rules: Value) -> PathBuf {
    let doc = json!({
        "id": name, "version": "1_0", "name": name,
        "policies": [{"id": "p", "name": "p", "version": "1_0", "rules": rules}],
        "whitelists": [],
        "mappings": [{"id": "m", "name": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
    });
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

fn default_bundle(dir: &Path) -> PathBuf {
    let path = dir.join("default.json");
    std::fs::write(&path, fathom_policy::DEFAULT_BUNDLE_JSON).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_image_with_a_fixable_critical_stops_and_without_a_feed_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = FeedServer::start(&tmp.path().join("feed")).await;
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let source = format!("registry:{}/{}", support::registry(), pushed[0].0);
    let policy = default_bundle(tmp.path());
    let policy = policy.to_str().unwrap();

    let out = check(&[
        &source,
        "--policy",
        policy,
        "--vulns-from",
        &feed.url,
        "-o",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["final_action"], "STOP");
    assert_eq!(eval["image_digest"], pushed[0].1.manifest_digest());
    assert!(
        eval["repo_tag"].as_str().unwrap().ends_with(&pushed[0].0),
        "{}",
        eval["repo_tag"]
    );
    let r = rows(&eval);
    let glibc = r
        .iter()
        .find(|r| r.2 == format!("{GLIBC}+libc6"))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(
        (glibc.0.as_str(), glibc.1.as_str()),
        ("vulnerabilities", "package")
    );
    // The feed was downloaded just now and has Debian data: neither stale nor unavailable.
    let t = triggers(&eval);
    assert!(
        !t.contains(&"vulnerabilities.stale_feed_data".to_string()),
        "{t:?}"
    );
    assert!(
        !t.contains(&"vulnerabilities.vulnerability_data_unavailable".to_string()),
        "{t:?}"
    );

    // Without a feed: the vulnerabilities gate says its data is unavailable (WARN), never a silent GO.
    let out = check(&[&source, "--policy", policy]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("Final Action: WARN"), "{table}");
    assert!(table.contains("vulnerability_data_unavailable"), "{table}");
    assert!(table.contains("stale_feed_data"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_files_and_secrets_reach_the_gates_of_an_oci_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut image = sample("debian-python-npm");
    with_config(
        &mut image,
        json!({"User": "app", "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}},
               "Env": ["PATH=/usr/bin", "API_TOKEN=hunter2"], "Labels": {"team": "web"}}),
        json!([{"created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
               {"created_by": "/bin/sh -c #(nop)  USER app", "empty_layer": true}]),
    );
    let source = oci_dir(&tmp.path().join("image"), &image);
    let policy = bundle(
        tmp.path(),
        "content",
        json!([
            {"id": "ssh", "gate": "dockerfile", "trigger": "exposed_ports", "action": "STOP",
             "params": [{"name": "ports", "value": "22"}, {"name": "type", "value": "blacklist"}]},
            {"id": "user", "gate": "dockerfile", "trigger": "effective_user", "action": "WARN",
             "params": [{"name": "users", "value": "root"}, {"name": "type", "value": "whitelist"}]},
            {"id": "hc", "gate": "dockerfile", "trigger": "instruction", "action": "WARN",
             "params": [{"name": "instruction", "value": "HEALTHCHECK"}, {"name": "check", "value": "not_exists"}]},
            {"id": "suid", "gate": "files", "trigger": "suid_or_guid_set", "action": "WARN", "params": []},
            {"id": "aws", "gate": "secret_scans", "trigger": "content_regex_checks", "action": "WARN",
             "params": [{"name": "content_regex_name", "value": "AWS_ACCESS_KEY"}]},
            {"id": "layers", "gate": "metadata", "trigger": "attribute", "action": "WARN",
             "params": [{"name": "attribute", "value": "layer_count"}, {"name": "check", "value": ">"},
                        {"name": "value", "value": "1"}]},
            {"id": "distro", "gate": "metadata", "trigger": "attribute", "action": "WARN",
             "params": [{"name": "attribute", "value": "distro"}, {"name": "check", "value": "="},
                        {"name": "value", "value": "debian"}]}
        ]),
    );
    let out = check(&[&source, "--policy", policy.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    let by_rule = |id: &str| -> Vec<String> {
        eval["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["rule_id"] == id || r["trigger"] == id)
            .map(|r| r["check_output"].as_str().unwrap().to_string())
            .collect()
    };
    let t = triggers(&eval);
    assert!(t.contains(&"dockerfile.exposed_ports".to_string()), "{t:?}");
    assert!(
        t.contains(&"dockerfile.effective_user".to_string()),
        "{t:?}"
    );
    assert!(t.contains(&"dockerfile.instruction".to_string()), "{t:?}");
    let suid: Vec<String> = by_rule("suid_or_guid_set");
    assert_eq!(suid.len(), 2, "{suid:?}");
    assert!(
        suid.iter()
            .any(|s| s.contains(fathom_testkit::samples::PLANTED_SETUID)),
        "{suid:?}"
    );
    let secrets = by_rule("content_regex_checks");
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert!(secrets[0].contains("/app/.env"), "{secrets:?}");
    assert_eq!(
        t.iter().filter(|t| *t == "metadata.attribute").count(),
        2,
        "{t:?}"
    );
    assert!(!t.iter().any(|t| t.ends_with("unavailable")), "{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_on_a_docker_archive_and_the_stored_path_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = FeedServer::start(&tmp.path().join("feed")).await;
    let archive = tmp.path().join("image.tar");
    fathom_testkit::image::write_docker_archive(&archive, &sample("rocky-rpm"), "team/rocky:1")
        .unwrap();
    let source = format!("docker-archive:{}", archive.display());
    let policy = bundle(
        tmp.path(),
        "quiet",
        json!([{"id": "nope", "gate": "packages", "trigger": "blacklist", "action": "STOP",
                "params": [{"name": "name", "value": "no-such-package"}]}]),
    );
    let out = check(&[
        &source,
        "--policy",
        policy.to_str().unwrap(),
        "--vulns-from",
        &feed.url,
        "-o",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["final_action"], "GO");
    assert_eq!(eval["repo_tag"], "docker.io/team/rocky:1");
    // A Rocky image needs the Rocky Linux feed, which the sample source does not list: nothing fetched.
    assert!(
        !feed.requests().iter().any(|p| p.ends_with("all.zip")),
        "{:?}",
        feed.requests()
    );

    // A blacklisted package that is there stops (the packages gate reads the analysis).
    let policy = bundle(
        tmp.path(),
        "rpm",
        json!([{"id": "bl", "gate": "packages", "trigger": "blacklist", "action": "STOP",
                "params": [{"name": "name", "value": "bash"}]}]),
    );
    let out = check(&[&source, "--policy", policy.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));

    // Without --policy, `check` is the stored path: it wants a database or the API.
    let out = fathom()
        .args([
            "check",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ])
        .env_remove("FATHOM_API_URL")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database-url"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let source = oci_dir(&tmp.path().join("image"), &sample("alpine-apk"));
    // A bundle naming an unknown gate is refused with its path.
    let bad = bundle(
        tmp.path(),
        "bad",
        json!([{"id": "x", "gate": "no_such_gate", "trigger": "t", "action": "STOP", "params": []}]),
    );
    let out = check(&[&source, "--policy", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policies[0].rules[0].gate"), "{stderr}");
    assert!(out.stdout.is_empty());
    let good = default_bundle(tmp.path());
    let good = good.to_str().unwrap();
    // A source that is not there.
    let missing = format!("oci-dir:{}", tmp.path().join("nothing").display());
    assert_eq!(code(&check(&[&missing, "--policy", good])), 2);
    // A feed source that is not there.
    let nowhere = tmp.path().join("no-feed").display().to_string();
    let out = check(&[&source, "--policy", good, "--vulns-from", &nowhere]);
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    // --vulns-from belongs to the standalone check.
    assert_eq!(code(&check(&["sha256:abc", "--vulns-from", &nowhere])), 2);
}
