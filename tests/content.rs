//! The content pass end to end: a real worker analyzes a sample image with planted secrets and setuid
//! files, the real API serves its file inventory and secrets, and the planted values appear nowhere
//! (API answers, store rows, stored documents, worker log).

mod support;

use fathom_testkit::samples::{
    expected_secrets, PLANTED_AWS_KEY, PLANTED_PEM_BODY, PLANTED_SETGID, PLANTED_SETUID,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::{WorkerProc, WorkerSpec};

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(PLANTED_AWS_KEY), "{what} leaks the AWS key");
    assert!(!text.contains(PLANTED_PEM_BODY), "{what} leaks the PEM key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_secrets_are_served_and_secret_values_are_stored_nowhere() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let digest = pushed[0].1.manifest_digest();
    let api = Api::start(dir.path(), db.url(), "");
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let (status, submitted) = client
        .post("/v1/images", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let done = client
        .wait_done(submitted["job_id"].as_i64().unwrap())
        .await;
    assert_eq!(done["status"], "analyzed", "{done}");

    // Secrets: exactly the planted visible ones (the deleted copy is not reported).
    let (status, secrets) = client.get(&format!("/v1/images/{digest}/secrets")).await;
    assert_eq!(status, StatusCode::OK, "{secrets}");
    let got: Vec<(String, u64, String)> = secrets["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["line"].as_u64().unwrap(),
                s["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected_secrets("debian-python-npm"));
    assert_clean("secrets answer", &secrets.to_string());

    // setuid filter.
    let (status, suid) = client
        .get(&format!("/v1/images/{digest}/files?suid=true"))
        .await;
    assert_eq!(status, StatusCode::OK, "{suid}");
    let paths: Vec<&str> = suid["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [PLANTED_SETUID]);
    let (_, sgid) = client
        .get(&format!("/v1/images/{digest}/files?sgid=true"))
        .await;
    assert_eq!(sgid["items"][0]["path"], PLANTED_SETGID);
    assert_eq!(sgid["items"][0]["mode"], 0o2755);

    // Paging by path under a prefix walks every file exactly once, in order.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/images/{digest}/files?path_prefix=/app/&limit=7");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = client.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_clean("files page", &page.to_string());
        for f in page["items"].as_array().unwrap() {
            let p = f["path"].as_str().unwrap().to_string();
            assert!(p.starts_with("/app/"), "{p}");
            assert!(f["layer"]["digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"));
            seen.push(p);
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert!(seen.len() > 7, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen.contains(&"/app/.env".to_string()));
    assert!(!seen.contains(&"/app/old.env".to_string()));
    assert!(!seen.iter().any(|p| p.starts_with("/app/node_modules/ms/")));
    let (_, env) = client
        .get(&format!("/v1/images/{digest}/files?path_prefix=/app/.env"))
        .await;
    assert_eq!(env["items"][0]["sha256"].as_str().unwrap().len(), 64);

    // Deb licenses from the copyright files reach the SBOM.
    let (_, debs) = client
        .get(&format!("/v1/images/{digest}/packages?type=deb"))
        .await;
    assert!(debs["packages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["licenses"] == json!(["GPL-2.0-or-later"])));
    for format in ["json", "cyclonedx-json", "spdx-json"] {
        let (status, sbom) = client
            .get(&format!("/v1/images/{digest}/sbom?format={format}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_clean(format, &sbom.to_string());
    }

    // The store: secret rows hold no values; nor do the stored documents or the worker's log.
    let store = fathom_worker::store::Store::connect_lazy(db.url(), 1).unwrap();
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT path, line, rule FROM fathom_layer_secrets ORDER BY path, line")
            .fetch_all(store.pool())
            .await
            .unwrap();
    // The deleted `/app/old.env` is stored with its layer (a layer is the same whatever sits on top).
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_clean("secret rows", &format!("{rows:?}"));
    let doc = store.document(&digest).await.unwrap().unwrap();
    assert_clean("image document", &serde_json::to_string(&doc).unwrap());
    for layer in &doc.image.layers {
        let r = store
            .layer(&layer.digest, &doc.analyzer.cache_key)
            .await
            .unwrap()
            .unwrap();
        assert_clean("layer result", &serde_json::to_string(&r).unwrap());
    }
    assert_clean("worker log", &worker.log_text());

    // Unknown images answer 404 on both routes.
    let unknown = format!("sha256:{}", "0".repeat(64));
    for route in ["files", "secrets"] {
        let (status, _) = client.get(&format!("/v1/images/{unknown}/{route}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

/// A check of the stored image against `rules` (one policy, every image mapped to it).
async fn check_rules(client: &Client, digest: &str, id: &str, rules: Value) -> Value {
    let bundle = json!({
        "id": id, "version": "1_0", "name": id,
        "policies": [{"id": "p", "version": "1_0", "rules": rules}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    });
    let (status, stored) = client.post("/v1/policies", bundle).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let (status, evaluation) = client
        .get(&format!("/v1/images/{digest}/check?policy_id={id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{evaluation}");
    evaluation
}

/// `(gate, trigger, check_output)` of every row.
fn rows(evaluation: &Value) -> Vec<(String, String, String)> {
    evaluation["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("gate"), s("trigger"), s("check_output"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_secrets_and_config_gates_fire_on_a_stored_image() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    // The sample with planted setuid/setgid files and secrets, under a config that runs as root, exposes
    // ssh and has no healthcheck.
    let sample = fathom_testkit::samples::sample_images()
        .into_iter()
        .find(|s| s.name == "debian-python-npm")
        .unwrap();
    let mut image =
        fathom_testkit::BuiltImage::from_sample(&sample, fathom_testkit::Compress::Gzip).unwrap();
    let mut config: Value = serde_json::from_slice(&image.config).unwrap();
    config["config"] = json!({
        "User": "root",
        "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}},
        "Env": ["PATH=/usr/bin", "API_TOKEN=do-not-store-me"],
        "Cmd": ["/app/start"]
    });
    config["history"] = json!([
        {"created_by": "/bin/sh -c #(nop) ADD file:abc in / "},
        {"created_by": "RUN /bin/sh -c pip install numpy # buildkit"},
        {"created_by": "EXPOSE map[22/tcp:{} 8080/tcp:{}]", "empty_layer": true},
        {"created_by": "USER root", "empty_layer": true}
    ]);
    image.config = config.to_string().into_bytes();
    image.set_manifest(|_| {});
    let reference = format!(
        "{}/{}",
        support::registry(),
        support::push_image("policy-content", &image).await
    );
    let digest = image.manifest_digest();
    let api = Api::start(dir.path(), db.url(), "");
    let client = api.client();
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let (status, submitted) = client
        .post("/v1/images", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let done = client
        .wait_done(submitted["job_id"].as_i64().unwrap())
        .await;
    assert_eq!(done["status"], "analyzed", "{done}");

    let stop = |gate: &str, trigger: &str, params: Value| json!({"gate": gate, "trigger": trigger, "action": "STOP", "params": params});
    let evaluation = check_rules(
        &client,
        &digest,
        "content-gates",
        json!([
            stop("files", "suid_or_guid_set", json!([])),
            stop("files", "name_match", json!([{"name": "regex", "value": "/app/\\.env$"}])),
            stop("files", "attribute_match", json!([
                {"name": "filename", "value": "/etc/no-such-file"},
                {"name": "mode", "value": "0644"},
                {"name": "skip_missing", "value": "false"}])),
            stop("secret_scans", "content_regex_checks", json!([])),
            stop("dockerfile", "effective_user", json!([
                {"name": "users", "value": "root"}, {"name": "type", "value": "deny"}])),
            stop("dockerfile", "exposed_ports", json!([
                {"name": "ports", "value": "22"}, {"name": "type", "value": "deny"}])),
            stop("dockerfile", "instruction", json!([
                {"name": "instruction", "value": "HEALTHCHECK"}, {"name": "check", "value": "not_exists"}])),
            stop("dockerfile", "instruction", json!([
                {"name": "instruction", "value": "RUN"}, {"name": "check", "value": "like"},
                {"name": "value", "value": "pip install.*"}])),
            stop("metadata", "attribute", json!([
                {"name": "attribute", "value": "layer_count"}, {"name": "check", "value": ">"},
                {"name": "value", "value": "1"}]))
        ]),
    )
    .await;
    assert_eq!(evaluation["final_action"], "STOP", "{evaluation}");
    let rows = rows(&evaluation);
    let fired = |gate: &str, trigger: &str, needle: &str| {
        rows.iter()
            .filter(|(g, t, out)| g == gate && t == trigger && out.contains(needle))
            .count()
    };
    assert!(
        !rows.iter().any(|(_, _, out)| out.contains("unavailable")),
        "{rows:#?}"
    );
    // Exactly the planted setuid and setgid files.
    assert_eq!(fired("files", "suid_or_guid_set", ""), 2, "{rows:#?}");
    assert_eq!(fired("files", "suid_or_guid_set", PLANTED_SETUID), 1);
    assert_eq!(fired("files", "suid_or_guid_set", PLANTED_SETGID), 1);
    assert_eq!(
        fired("files", "name_match", "file=/app/.env "),
        1,
        "{rows:#?}"
    );
    assert_eq!(fired("files", "name_match", ""), 1, "{rows:#?}");
    assert_eq!(fired("files", "attribute_match", "/etc/no-such-file"), 1);
    // One row per visible planted (file, rule); the deleted copy is not there.
    let mut planted: Vec<(String, String)> = expected_secrets("debian-python-npm")
        .into_iter()
        .map(|(path, _, rule)| (path, rule))
        .collect();
    planted.dedup();
    for (path, rule) in &planted {
        assert_eq!(
            fired(
                "secret_scans",
                "content_regex_checks",
                &format!("file={path} regexp={rule}")
            ),
            1,
            "{path} {rule}: {rows:#?}"
        );
    }
    assert_eq!(
        fired("secret_scans", "content_regex_checks", ""),
        planted.len()
    );
    assert_eq!(
        fired("dockerfile", "effective_user", "User root"),
        1,
        "{rows:#?}"
    );
    assert_eq!(fired("dockerfile", "exposed_ports", "22"), 1, "{rows:#?}");
    assert_eq!(
        fired("dockerfile", "instruction", "HEALTHCHECK"),
        1,
        "{rows:#?}"
    );
    assert_eq!(
        fired("dockerfile", "instruction", "pip install numpy"),
        1,
        "{rows:#?}"
    );
    assert_eq!(
        fired("metadata", "attribute", "layer_count"),
        1,
        "{rows:#?}"
    );
    assert_clean("evaluation", &evaluation.to_string());
    assert!(!evaluation.to_string().contains("do-not-store-me"));

    // The same gates pass where the image does not match them: nothing is read as "found" by default.
    let quiet = check_rules(
        &client,
        &digest,
        "content-quiet",
        json!([
            stop(
                "files",
                "name_match",
                json!([{"name": "regex", "value": "/nowhere/"}])
            ),
            stop(
                "secret_scans",
                "content_regex_checks",
                json!([
                {"name": "content_regex_name", "value": "SLACK_TOKEN"}])
            ),
            stop(
                "dockerfile",
                "effective_user",
                json!([
                {"name": "users", "value": "root"}, {"name": "type", "value": "allow"}])
            )
        ]),
    )
    .await;
    assert_eq!(quiet["final_action"], "GO", "{quiet}");
}

/// The README's Policy section describes what stored checks read: the facts
/// `files_secrets_and_config_gates_fire_on_a_stored_image` shows them firing on (image config for
/// `dockerfile` rules, file inventory, secrets), not an analyzer that records none of them.
#[test]
fn the_readme_says_stored_checks_read_the_config_files_and_secrets() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("\n## Policy")
        .expect("README has a Policy section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let stored = section
        .find("Facts come from the store")
        .map(|i| &section[i..])
        .and_then(|s| s.split("\n\n").next())
        .expect("the Policy section says where stored facts come from");
    for claim in ["does not record", "see no instructions"] {
        assert!(!stored.contains(claim), "untrue: {claim:?} in {stored}");
    }
    for fact in [
        "image config",
        "`dockerfile` rules",
        "file inventory",
        "secret findings",
    ] {
        assert!(stored.contains(fact), "{fact:?} missing from {stored}");
    }
}
