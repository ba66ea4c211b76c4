//! The policy engine in the core, end to end: a real `fathom run` API and a real worker on a fresh
//! database analyze a sample image pushed to a real registry; bundles are uploaded, refused with every
//! problem's path, activated and deleted over HTTP; checks STOP on a package the image carries and pass
//! otherwise, from the cache when nothing changed; `fathom check` maps verdicts to exit codes.

mod support;

use std::process::Output;

use fathom_testkit::pg::TestDb;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::api::{Api, Client, TOKEN};
use support::{fathom, WorkerProc, WorkerSpec};

/// Every migration `fathom migrate` applies: the queue's, the store's, the feeds' and the bundles'.
async fn full_db() -> TestDb {
    TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
        &fathom_policy::store::migrator(),
    ])
    .await
    .expect("test database")
}

/// A bundle mapping every image to one policy with these rules.
fn bundle(id: &str, rules: Value) -> Value {
    json!({
        "id": id, "version": "1_0", "name": id,
        "policies": [{"id": format!("{id}-policy"), "version": "1_0", "rules": rules}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"},
                      "policy_ids": [format!("{id}-policy")], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    })
}

/// STOP when a package named `name` is installed.
fn blacklist(id: &str, name: &str) -> Value {
    bundle(
        id,
        json!([{"id": "no-pkg", "gate": "packages", "trigger": "blacklist", "action": "STOP",
                "params": [{"name": "name", "value": name}]}]),
    )
}

async fn put(client: &Client, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
    let request = client.request(Method::PUT, path);
    let request = match body {
        Some(b) => request.json(b),
        None => request,
    };
    client.send(request).await
}

/// `GET` a check, returning the evaluation and the `fathom-cache` header.
async fn check(client: &Client, path: &str) -> (StatusCode, Value, String) {
    let response = client.request(Method::GET, path).send().await.unwrap();
    let status = response.status();
    let cache = response
        .headers()
        .get("fathom-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body: Value = response.json().await.unwrap();
    (status, body, cache)
}

fn has_row(evaluation: &Value, gate: &str, trigger: &str) -> bool {
    evaluation["rows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["gate"] == gate && r["trigger"] == trigger)
}

fn cli(args: &[&str]) -> Output {
    fathom().args(args).output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Analyzes the sample `debian-python-npm` through the API; returns (reference, digest, a deb name).
async fn analyzed(client: &Client, dir: &std::path::Path, db: &TestDb) -> (String, String, String) {
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let digest = pushed[0].1.manifest_digest();
    let _worker = WorkerProc::start(dir, "w1", db.url(), &WorkerSpec::default());
    client.submit_and_wait(&reference).await;
    let (_, debs) = client
        .get(&format!("/v1/images/{digest}/packages?type=deb"))
        .await;
    let name = debs["packages"][0]["name"].as_str().unwrap().to_string();
    (reference, digest, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_are_managed_over_http_and_checks_stop_pass_and_cache() {
    let db = full_db().await;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), db.url(), "");
    let client = api.client();
    let (reference, digest, deb) = analyzed(&client, dir.path(), &db).await;
    let check_path = format!("/v1/images/{digest}/check");

    // No bundle stored: the built-in default bundle decides. No feed: vulnerability data is unavailable
    // and the image config is not recorded, so it WARNs (pass) and never silently GOes.
    let (_, listed) = client.get("/v1/policies").await;
    assert_eq!(listed["items"], json!([]), "{listed}");
    assert_eq!(listed["active"], "fathom-default-bundle");
    let (status, default, _) = check(&client, &check_path).await;
    assert_eq!(status, StatusCode::OK, "{default}");
    assert_eq!(default["bundle_id"], "fathom-default-bundle");
    assert_eq!(default["status"], "pass", "{default}");
    assert_eq!(default["final_action"], "WARN", "{default}");
    assert!(
        has_row(
            &default,
            "vulnerabilities",
            "vulnerability_data_unavailable"
        ),
        "{default}"
    );
    assert_eq!(default["image_digest"], digest);
    assert_eq!(default["repo_tag"], reference);
    assert_eq!(default["table"]["header"][0], "Image_Id");

    // A bundle with several problems is refused with every one of them and its JSON path.
    let mut broken = blacklist("broken", &deb);
    broken["policies"][0]["rules"] = json!([
        {"gate": "nosuchgate", "trigger": "x", "action": "STOP", "params": []},
        {"gate": "packages", "trigger": "blacklist", "action": "MAYBE", "params": []}
    ]);
    broken["mappings"][0]["policy_ids"] = json!(["broken-policy", "nope"]);
    let (status, refused) = client.post("/v1/policies", broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"]["code"], "invalid_bundle");
    let paths: Vec<&str> = refused["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    for path in [
        "$.policies[0].rules[0].gate",
        "$.policies[0].rules[1].action",
        "$.mappings[0].policy_ids[1]",
    ] {
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }
    let (status, not_json) = client
        .send(
            client
                .request(Method::POST, "/v1/policies")
                .header("content-type", "application/json")
                .body("{\"id\": "),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{not_json}");
    assert_eq!(not_json["error"]["problems"][0]["path"], "$");
    assert_eq!(client.get("/v1/policies").await.1["items"], json!([]));

    // A bundle that STOPs on a package the image carries, uploaded active.
    let (status, stored) = client
        .post("/v1/policies?active=true", blacklist("stop-pkg", &deb))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["active"], true);
    let (status, stop, cache) = check(&client, &check_path).await;
    assert_eq!(status, StatusCode::OK, "{stop}");
    assert_eq!(cache, "miss");
    assert_eq!(stop["status"], "fail", "{stop}");
    assert_eq!(stop["final_action"], "STOP");
    assert_eq!(stop["final_action_reason"], "policy_evaluation");
    assert_eq!(stop["bundle_id"], "stop-pkg");
    let row = &stop["rows"][0];
    assert_eq!(
        (&row["gate"], &row["trigger"]),
        (&json!("packages"), &json!("blacklist"))
    );
    assert!(
        row["check_output"].as_str().unwrap().contains(&deb),
        "{row}"
    );
    // Nothing changed: the cache answers, with the same evaluation.
    let (_, again, cache) = check(&client, &check_path).await;
    assert_eq!(cache, "hit");
    assert_eq!(again, stop);
    // The tag is part of the key; naming the reference a check defaults to is the same key. Any other
    // reference of the digest is evaluated under itself (mappings select by it), and one that does
    // not parse is refused.
    let (_, tagged, cache) = check(&client, &format!("{check_path}?tag={reference}")).await;
    assert_eq!((cache.as_str(), &tagged), ("hit", &stop));
    let (status, other, cache) =
        check(&client, &format!("{check_path}?tag=example.com/other:1")).await;
    assert_eq!(
        (status, cache.as_str()),
        (StatusCode::OK, "miss"),
        "{other}"
    );
    assert_eq!(other["repo_tag"], "example.com/other:1", "{other}");
    let (status, bad, _) = check(&client, &format!("{check_path}?tag=Not%20A%20Ref")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // A new feed generation is part of the key: the next check is evaluated afresh.
    sqlx::query("INSERT INTO fathom_vuln_feeds (feed, generation, last_success_at) VALUES ('Debian', 1, now())")
        .execute(&sqlx::PgPool::connect(db.url()).await.unwrap())
        .await
        .unwrap();
    // Hits stand until the feed row's notification reaches the core (see `core::policy::fresh`).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, _, cache) = check(&client, &check_path).await;
        if cache == "miss" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {cache}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // A bundle that passes (its blacklisted package is not in the image), chosen by policy_id.
    let pass = blacklist("go-pkg", "no-such-package-anywhere");
    let (status, _) = client.post("/v1/policies", pass.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, go, _) = check(&client, &format!("{check_path}?policy_id=go-pkg")).await;
    assert_eq!(
        (&go["status"], &go["final_action"]),
        (&json!("pass"), &json!("GO")),
        "{go}"
    );
    assert_eq!(go["rows"], json!([]));
    let (status, missing, _) = check(&client, &format!("{check_path}?policy_id=nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");

    // The CLI: exit 1 on STOP (through the database and through the API), 0 on pass, 2 on errors.
    let stop_file = dir.path().join("stop.json");
    std::fs::write(&stop_file, blacklist("stop-file", &deb).to_string()).unwrap();
    let stop_file = stop_file.to_str().unwrap();
    let out = cli(&["check", &reference, "--database-url", db.url()]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Final Action: STOP") && text.contains(&deb),
        "{text}"
    );
    let out = cli(&[
        "check",
        &digest,
        "--policy-id",
        "go-pkg",
        "--json",
        "--database-url",
        db.url(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["final_action"], "GO");
    let out = cli(&[
        "check",
        &reference,
        "--bundle",
        stop_file,
        "--json",
        "--database-url",
        db.url(),
    ]);
    assert_eq!(code(&out), 1, "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["bundle_id"],
        "stop-file"
    );
    let out = cli(&["check", &reference, "--api", &api.base, "--token", TOKEN]);
    assert_eq!(code(&out), 1, "{out:?}");
    let out = cli(&[
        "check",
        &reference,
        "--policy-id",
        "go-pkg",
        "--api",
        &api.base,
        "--token",
        TOKEN,
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let unknown = format!("sha256:{}", "0".repeat(64));
    for args in [
        vec!["check", unknown.as_str(), "--database-url", db.url()],
        vec![
            "check",
            &reference,
            "--policy-id",
            "nope",
            "--api",
            &api.base,
            "--token",
            TOKEN,
        ],
        vec![
            "check", &reference, "--bundle", stop_file, "--api", &api.base, "--token", TOKEN,
        ],
        vec![
            "check",
            "example.com/never/seen:1",
            "--database-url",
            db.url(),
        ],
    ] {
        let out = cli(&args);
        assert_eq!(code(&out), 2, "{args:?}: {out:?}");
        assert!(!out.stderr.is_empty());
    }

    // Activation moves, the active bundle cannot be deleted, the others can.
    let (status, activated) = put(&client, "/v1/policies/go-pkg?active=true", None).await;
    assert_eq!(status, StatusCode::OK, "{activated}");
    assert_eq!(activated["active"], true);
    let (_, listed) = client.get("/v1/policies").await;
    assert_eq!(listed["active"], "go-pkg");
    let actives: Vec<bool> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["active"].as_bool().unwrap())
        .collect();
    assert_eq!(actives, vec![true, false], "{listed}");
    assert_eq!(check(&client, &check_path).await.1["status"], "pass");
    let (status, _) = client.delete("/v1/policies/go-pkg").await;
    assert_eq!(status, StatusCode::CONFLICT);
    // PUT replaces (the id must match the path's).
    let (status, mismatch) = put(
        &client,
        "/v1/policies/go-pkg",
        Some(&blacklist("other", &deb)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{mismatch}");
    assert_eq!(mismatch["error"]["problems"][0]["path"], "$.id");
    let (status, _) = put(
        &client,
        "/v1/policies/go-pkg",
        Some(&blacklist("go-pkg", &deb)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(check(&client, &check_path).await.1["status"], "fail");
    assert_eq!(
        client.delete("/v1/policies/stop-pkg").await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        client.get("/v1/policies/stop-pkg").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, got) = client.get("/v1/policies/go-pkg").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["document"]["id"], "go-pkg");

    // Bad digests and unknown images.
    assert_eq!(
        check(&client, "/v1/images/sha256:xyz/check").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        check(&client, &format!("/v1/images/{unknown}/check"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_file_is_activated_at_start_and_a_disabled_engine_answers_503() {
    let db = full_db().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bundle.yaml");
    let yaml = serde_yaml::to_string(&blacklist("from-file", "anything")).unwrap();
    std::fs::write(&file, yaml).unwrap();
    let extra = format!("  policy_engine:\n    bundle_file: '{}'\n", file.display());
    let api = Api::start(dir.path(), db.url(), &extra);
    let (_, listed) = api.client().get("/v1/policies").await;
    assert_eq!(listed["active"], "from-file", "{listed}");
    drop(api);

    let off = tempfile::tempdir().unwrap();
    let api = Api::start(
        off.path(),
        db.url(),
        "  policy_engine:\n    enabled: false\n",
    );
    let (status, answer) = api.client().get("/v1/policies").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("services.policy_engine.enabled"));
}

#[test]
fn a_bad_bundle_file_stops_the_core_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(&file, r#"{"id": "x", "version": "2_0"}"#).unwrap();
    let config = dir.path().join("core.yaml");
    std::fs::write(
        &config,
        format!(
            "database: {{url: 'postgres://nobody@127.0.0.1:1/none'}}\nservices:\n  api: {{enabled: true, auth: false, address: '{}'}}\n  policy_engine: {{bundle_file: '{}'}}\n",
            support::free_addr(),
            file.display()
        ),
    )
    .unwrap();
    let out = cli(&["run", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.policy_engine.bundle_file") && err.contains("$.version"),
        "{err}"
    );
}

#[test]
fn policy_validate_prints_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let mut doc = blacklist("b", "x");
    doc["policies"][0]["rules"][0]["gate"] = json!("nosuchgate");
    // The mapping still reaches the policy: anchore checks only the policies mappings reach.
    doc["mappings"][0]["policy_ids"] = json!(["b-policy", "nope"]);
    std::fs::write(&bad, doc.to_string()).unwrap();
    let out = cli(&["policy", "validate", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("$.policies[0].rules[0].gate: unknown gate"),
        "{text}"
    );
    assert!(text.contains("$.mappings[0].policy_ids[1]"), "{text}");

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, serde_yaml::to_string(&blacklist("g", "x")).unwrap()).unwrap();
    let out = cli(&["policy", "validate", good.to_str().unwrap(), "--json"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (&json["valid"], &json["id"], &json["rules"]),
        (&json!(true), &json!("g"), &json!(1))
    );
    let out = cli(&[
        "policy",
        "validate",
        dir.path().join("missing").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fathom_migrate_creates_the_bundle_table_and_is_idempotent() {
    let db = support::test_db().await;
    for _ in 0..2 {
        let out = cli(&["migrate", "--database-url", db.url()]);
        assert!(out.status.success(), "{out:?}");
    }
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM fathom_policy_bundles")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}
