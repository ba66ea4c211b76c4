//! The admission gate judges each image under its own reference, with its data, in a real `fathom run`
//! (API + webhook) over real HTTPS, on images a real worker analyzed from the test registry: mappings and
//! image rules select by the reference admitted (never by another reference sharing the digest), every
//! spelling of a blacklisted repository is stopped, what is queued is `repo@digest`, a STOP rule whose
//! vulnerability data is missing denies (`services.webhook.unevaluable`), and the bundles the webhook
//! names must exist and cannot be deleted.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::Api;
use support::webhook::{message, review, workload, Hook};
use support::{fathom, free_addr, webhook_certs, Fleet};

/// Mappings: `*/prod-app` → a policy that always STOPs; `*/vuln-app` → STOP on any vulnerability (its
/// data is unavailable here: no feed); everything else → no rules (GO). `*/blocked-nginx` is
/// blacklisted.
fn bundle() -> Value {
    let mapping = |id: &str, repo: &str, policy: &str| {
        json!({"id": id, "registry": "*", "repository": repo, "image": {"type": "tag", "value": "*"},
               "policy_ids": [policy], "whitelist_ids": []})
    };
    json!({
        "id": "own-ref", "version": "1_0", "name": "own-ref",
        "policies": [
            {"id": "strict", "version": "1_0", "rules": [
                {"id": "always", "gate": "always", "trigger": "always", "action": "STOP", "params": []}]},
            {"id": "vulns", "version": "1_0", "rules": [
                {"id": "any-vuln", "gate": "vulnerabilities", "trigger": "package", "action": "STOP",
                 "params": [{"name": "package_type", "value": "all"}]}]},
            {"id": "lenient", "version": "1_0", "rules": []}
        ],
        "whitelists": [],
        "mappings": [mapping("prod", "*/prod-app", "strict"), mapping("vuln", "*/vuln-app", "vulns"),
                     mapping("rest", "*", "lenient")],
        "whitelisted_images": [],
        "blacklisted_images": [{"id": "no-nginx", "registry": "*", "repository": "*/blocked-nginx",
                                "image": {"type": "tag", "value": "*"}}]
    })
}

/// A core with the webhook on its own port (`extra`: more `services.webhook` lines).
fn core(fleet: &Fleet, name: &str, extra: &str) -> (Api, Hook) {
    let tls = fleet.path().join("tls");
    if !tls.join("tls.crt").exists() {
        webhook_certs(&tls);
    }
    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let dir = fleet.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "  webhook:\n    enabled: true\n    address: '{hook_addr}'\n    cert_file: '{}'\n    \
         key_file: '{}'\n    timeout: 5s\n{extra}registry:\n  insecure: ['{}']\n  timeout: 10s\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
        fleet.host,
    );
    let api = Api::start(&dir, fleet.url(), &config);
    (api, Hook::new(&tls, port))
}

/// `host/…/name:v1` → `host/…/name`.
fn repo(reference: &str) -> &str {
    reference.rsplit_once(':').unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_admission_is_judged_under_its_own_reference_and_with_its_data() {
    let fleet = Fleet::direct(&["alpine-apk", "rocky-rpm"]).await;
    let image = fleet.images[0].1.clone();
    let digest = fleet.digest(0);
    let dev = fleet.push("dev-app", &image).await;
    let prod = fleet.push("prod-app", &image).await;
    let blocked = fleet.push("blocked-nginx", &image).await;
    let vuln = fleet.push("vuln-app", &image).await;
    let (api, hook) = core(&fleet, "strict", "");
    let client = api.client();
    let (status, body) = client.post("/v1/policies?active=true", bundle()).await;
    assert!(status.is_success(), "{status} {body}");
    let _worker = fleet.worker("w1", &fleet.spec());
    fleet.submit(std::slice::from_ref(&dev), 3).await;
    fleet
        .wait_analyzed(std::slice::from_ref(&dev), Duration::from_secs(120))
        .await;
    let admit = |uid: &str, image: &str| {
        let object = workload("Pod", "shop", &[("app", image)], &[]);
        let review = review(uid, &object, false);
        let hook = &hook;
        async move { hook.admit(&review).await }
    };

    // prod-app:v1 was never submitted; its digest was analyzed as dev-app:v1. The prod mapping decides.
    let r = admit("u-prod", &prod).await;
    assert_eq!(r["allowed"], false, "prod-app is judged as prod-app: {r}");
    assert!(message(&r).contains("always"), "{r}");
    let r = admit("u-prod-pinned", &format!("{prod}@{digest}")).await;
    assert_eq!(r["allowed"], false, "{r}");
    let r = admit("u-dev", &dev).await;
    assert_eq!(r["allowed"], true, "{r}");

    // A blacklisted repository, in every spelling, none of them ever submitted.
    for (i, spelling) in [
        format!("{blocked}@{digest}"),
        blocked.clone(),
        format!("{}@{digest}", repo(&blocked)),
    ]
    .iter()
    .enumerate()
    {
        let r = admit(&format!("u-black-{i}"), spelling).await;
        assert_eq!(r["allowed"], false, "{spelling}: {r}");
        assert!(message(&r).contains("own-ref"), "{spelling}: {r}");
    }

    // The check route and `fathom check` take any reference of an analyzed digest the same way.
    let check = |reference: String| {
        let client = &client;
        let path = format!("/v1/images/{digest}/check?tag={reference}");
        async move { client.get(&path).await }
    };
    let (status, e) = check(prod.clone()).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["final_action"], "STOP", "{e}");
    assert_eq!(e["repo_tag"], prod.as_str(), "{e}");
    let (_, e) = check(blocked.clone()).await;
    assert_eq!(e["final_action_reason"], "blacklisted", "{e}");
    let (status, e) = check(format!("{dev}@sha256:{}", "0".repeat(64))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "another digest: {e}");
    let out = fathom()
        .args([
            "check",
            &format!("{prod}@{digest}"),
            "--database-url",
            fleet.url(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // Once prod-app:v1 is submitted too, dev-app keeps its own verdict, by tag or pinned.
    fleet.submit(std::slice::from_ref(&prod), 3).await;
    fleet
        .wait_analyzed(std::slice::from_ref(&prod), Duration::from_secs(120))
        .await;
    let r = admit("u-dev-again", &dev).await;
    assert_eq!(r["allowed"], true, "{r}");
    let r = admit("u-dev-pinned", &format!("{}@{digest}", repo(&dev))).await;
    assert_eq!(r["allowed"], true, "dev-app pinned is still dev-app: {r}");
    let r = admit("u-prod-again", &prod).await;
    assert_eq!(r["allowed"], false, "{r}");

    // An unanalyzed `repo:tag@digest` is queued as `repo@digest`: no tag left in the repository.
    let other = fleet.refs[1].clone();
    let other_digest = fleet.digest(1);
    let r = admit("u-queue", &format!("{other}@{other_digest}")).await;
    assert_eq!(r["allowed"], false, "{r}");
    let pinned = format!("{}@{other_digest}", repo(&other));
    assert!(message(&r).contains(&pinned), "{r}");
    let tagged = fleet
        .db
        .store
        .status(Some(&format!("{other}@{other_digest}")), 5)
        .await
        .unwrap();
    assert!(tagged.is_empty(), "queued with its tag: {tagged:?}");
    assert!(fleet.db.status(&pinned).await.job_id.is_some());

    // No feed here: the vulnerability rule cannot be evaluated. It is a STOP rule, so the webhook
    // denies, naming the key; the policy engine itself still reports WARN.
    let r = admit("u-vuln", &vuln).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("services.webhook.unevaluable")
            && message(&r).contains("vulnerabilities.package"),
        "{r}"
    );
    let (_, e) = check(vuln.clone()).await;
    assert_eq!(e["final_action"], "WARN", "{e}");
    drop(api);
    // `unevaluable: warn`: admitted, with the rule named in a warning.
    let (_api, hook) = core(&fleet, "warn", "    unevaluable: warn\n");
    let object = workload("Pod", "shop", &[("app", &vuln)], &[]);
    let r = hook.admit(&review("u-vuln-warn", &object, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("vulnerabilities.package") && warnings.contains("unevaluable"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_the_webhook_names_must_exist_and_cannot_be_deleted() {
    let fleet = Fleet::direct(&[]).await;
    let tls = fleet.path().join("tls");
    webhook_certs(&tls);
    // A misspelled bundle: the core does not start, naming the key and the bundle.
    let config = fleet.path().join("missing.yaml");
    std::fs::write(
        &config,
        format!(
            "database:\n  url: '{}'\nservices:\n  analyzer:\n    enabled: false\n  api:\n    enabled: true\n    \
             address: '{}'\n    auth: false\n  webhook:\n    enabled: true\n    address: '{}'\n    \
             cert_file: '{}'\n    key_file: '{}'\n    selectors:\n      \
             - {{namespace: '^prod$', mode: policy, bundle: strcit}}\n",
            fleet.url(),
            free_addr(),
            free_addr(),
            tls.join("tls.crt").display(),
            tls.join("tls.key").display()
        ),
    )
    .unwrap();
    let mut child = fathom()
        .args(["run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(fleet.path().join("missing.err")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the core started with a webhook bundle nobody stored");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(fleet.path().join("missing.err")).unwrap();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains("services.webhook.selectors[0].bundle") && err.contains("strcit"),
        "{err}"
    );

    // Stored (from the bundle file) and named: it cannot be deleted, even once another is active.
    let file = fleet.path().join("strict.json");
    let mut strict = bundle();
    strict["id"] = json!("strict-bundle");
    std::fs::write(&file, strict.to_string()).unwrap();
    let (api, _hook) = core(
        &fleet,
        "named",
        &format!(
            "    selectors:\n      - {{namespace: '^prod$', mode: policy, bundle: strict-bundle}}\n  \
             policy_engine:\n    bundle_file: '{}'\n",
            file.display()
        ),
    );
    let client = api.client();
    let (status, body) = client.post("/v1/policies?active=true", bundle()).await;
    assert!(status.is_success(), "{status} {body}");
    let (status, body) = client.delete("/v1/policies/strict-bundle").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body.to_string()
            .contains("services.webhook.selectors[0].bundle"),
        "{body}"
    );
    let (status, _) = client.get("/v1/policies/strict-bundle").await;
    assert_eq!(status, StatusCode::OK);
}
