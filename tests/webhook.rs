//! The admission webhook inside a real `fathom run` (API + webhook) on a throwaway Postgres, over real
//! HTTPS with a certificate from `fathom webhook certs`, answering real AdmissionReview documents about
//! images in the test registry that a real worker analyzes.

mod support;

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use support::api::Api;
use support::webhook::{message, review, workload, Hook};
use support::{fathom, free_addr, http_get, metric, webhook_certs, Fleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_admits_analyzed_images_denies_and_queues_unknown_ones_and_honours_breakglass() {
    let fleet = Fleet::direct(&["alpine-apk", "rocky-rpm"]).await;
    let host = fleet.host.clone();

    // TLS as an operator without cert-manager makes it.
    let tls = fleet.path().join("tls");
    let patch: Value = serde_json::from_str(webhook_certs(&tls).trim()).unwrap();
    let ca_pem = std::fs::read_to_string(tls.join("ca.crt")).unwrap();
    assert_eq!(patch[0]["path"], "/webhooks/0/clientConfig/caBundle");
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(patch[0]["value"].as_str().unwrap())
        .unwrap();
    assert_eq!(bundle, ca_pem.as_bytes(), "the patch carries ca.crt");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tls.join("tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "tls.key is private: {mode:o}");
    }

    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // No feed here: the default bundle's vulnerability STOP rule cannot be evaluated; `warn` admits
    // with warnings (tests/webhook_reference.rs covers the default, `stop`).
    let extra = format!(
        "  webhook:\n    enabled: true\n    address: '{hook_addr}'\n    \
         cert_file: '{}'\n    key_file: '{}'\n    timeout: 5s\n    unevaluable: warn\n    selectors:\n      \
         - {{name: emergency, namespace: '^breakglass$', mode: breakglass}}\n\
         registry:\n  insecure: ['{host}']\n  timeout: 10s\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
    );
    let api = Api::start(fleet.path(), fleet.url(), &extra);
    let hook = Hook::new(&tls, port);
    let _worker = fleet.worker("w1", &fleet.spec());

    // An analyzed image, by tag in a container and by digest in an init container: admitted.
    let analyzed = fleet.refs[0].clone();
    fleet.submit(std::slice::from_ref(&analyzed), 3).await;
    fleet
        .wait_analyzed(std::slice::from_ref(&analyzed), Duration::from_secs(120))
        .await;
    let repo0 = analyzed.rsplit_once(':').unwrap().0;
    let by_digest = format!("{repo0}@{}", fleet.digest(0));
    let deployment = workload(
        "Deployment",
        "shop",
        &[("web", &analyzed)],
        &[("init", &by_digest)],
    );
    let r = hook.admit(&review("u-analyzed", &deployment, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["mode"], "policy", "{r}");
    assert!(
        r["warnings"].as_array().is_some_and(|w| !w.is_empty()),
        "the default bundle warns: {r}"
    );

    // An image fathom never saw, as a dry run: denied, and nothing is queued.
    let unknown = fleet.refs[1].clone();
    let repo1 = unknown.rsplit_once(':').unwrap().0;
    let pinned = format!("{repo1}@{}", fleet.digest(1));
    let pod = workload("Pod", "shop", &[("db", &unknown)], &[]);
    let r = hook.admit(&review("u-dry", &pod, true)).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("dry run: no analysis was queued"),
        "{r}"
    );
    for reference in [&pinned, &unknown] {
        let entries = fleet.db.store.status(Some(reference), 5).await.unwrap();
        assert!(
            entries.is_empty(),
            "a dry run queued {reference}: {entries:?}"
        );
    }

    // The same for real: denied, and its analysis queued at high priority under the pinned digest.
    let r = hook.admit(&review("u-unknown", &pod, false)).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("analysis was queued at high priority"),
        "{r}"
    );
    assert!(message(&r).contains(&pinned), "{r}");
    let entry = fleet.db.status(&pinned).await;
    let job = fleet
        .db
        .queue
        .job(entry.job_id.expect("a job"))
        .await
        .unwrap()
        .expect("the queued job");
    assert!(
        job.priority < 0,
        "admission analyses jump the queue: {job:?}"
    );
    assert_eq!(job.payload["reference"], pinned.as_str());
    // Once the worker has analyzed it, the same workload is admitted (by tag, resolved to that digest).
    fleet
        .wait_analyzed(std::slice::from_ref(&pinned), Duration::from_secs(120))
        .await;
    let r = hook.admit(&review("u-later", &pod, false)).await;
    assert_eq!(r["allowed"], true, "{r}");

    // A tag that does not exist: denied, named.
    let missing = format!("{host}/nowhere/none:v1");
    let pod = workload("Pod", "shop", &[("x", &missing)], &[]);
    let r = hook.admit(&review("u-missing", &pod, false)).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("was not found in its registry"), "{r}");

    // Breakglass by namespace: admitted unchecked, with a warning, and nothing queued.
    let pod = workload("Pod", "breakglass", &[("x", &missing)], &[]);
    let r = hook.admit(&review("u-breakglass", &pod, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        r["warnings"][0].as_str().unwrap().contains("breakglass"),
        "{r}"
    );
    assert_eq!(r["auditAnnotations"]["selector"], "emergency", "{r}");

    // The webhook's metrics on the core's /metrics, beside the API's.
    let (status, text) = http_get(&api.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let decided = |result: &str, mode: &str, reason: &str| {
        metric(
            &text,
            &format!(
                "fathom_webhook_decisions_total{{mode=\"{mode}\",reason=\"{reason}\",result=\"{result}\"}}"
            ),
        )
    };
    // The built-in default bundle WARNs (no vulnerability feed here, no HEALTHCHECK): admitted with warnings.
    assert_eq!(decided("allowed", "policy", "warn"), 2.0, "{text}");
    assert_eq!(decided("denied", "policy", "unanalyzed"), 2.0, "{text}");
    assert_eq!(decided("denied", "policy", "not_found"), 1.0, "{text}");
    assert_eq!(
        decided("allowed", "breakglass", "breakglass"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "fathom_webhook_enqueued_total"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "fathom_webhook_request_duration_seconds_count"),
        6.0,
        "{text}"
    );
    assert!(
        metric(&text, "fathom_webhook_tag_cache_total{result=\"miss\"}") >= 3.0,
        "{text}"
    );
    for name in ["fathom_webhook_timeouts_total", "fathom_api_requests_total"] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }

    // Policy mode asks the core's policy engine: a bundle that STOPs on a package the analyzed image
    // carries denies it, naming the trigger; the built-in default bundle admitted it above.
    let stop = serde_json::json!({
        "id": "no-musl", "version": "1_0", "name": "no-musl",
        "policies": [{"id": "p", "version": "1_0", "rules": [
            {"id": "no-pkg", "gate": "packages", "trigger": "blacklist", "action": "STOP",
             "params": [{"name": "name", "value": "musl"}]}]}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    });
    let (status, body) = api.client().post("/v1/policies?active=true", stop).await;
    assert!(status.is_success(), "{status} {body}");
    let r = hook.admit(&review("u-stopped", &deployment, false)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let why = message(&r);
    assert!(
        why.contains("no-musl") && why.contains("packages.blacklist"),
        "{r}"
    );

    // A bundle none of whose mappings selects the image: the policy engine answers anchore's
    // fall-through GO, saying so, and the webhook denies by `services.webhook.unmapped` (default deny).
    let unmapped = serde_json::json!({
        "id": "elsewhere", "version": "1_0", "name": "elsewhere",
        "policies": [{"id": "p", "version": "1_0", "rules": [
            {"id": "always", "gate": "always", "trigger": "always", "action": "STOP"}]}],
        "mappings": [{"id": "other", "name": "other", "registry": "*", "repository": "other/*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"]}]
    });
    let (status, body) = api
        .client()
        .post("/v1/policies?active=true", unmapped)
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, check) = api
        .client()
        .get(&format!("/v1/images/{}/check", fleet.digest(0)))
        .await;
    assert!(status.is_success(), "{status} {check}");
    assert_eq!(check["final_action"], "GO", "{check}");
    assert_eq!(
        check["final_action_reason"], "no_matching_mapping",
        "{check}"
    );
    let r = hook.admit(&review("u-unmapped", &deployment, false)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let why = message(&r);
    assert!(
        why.contains("elsewhere") && why.contains("services.webhook.unmapped"),
        "{r}"
    );
}

#[test]
fn the_webhook_needs_the_core_and_its_own_port() {
    let dir = tempfile::tempdir().unwrap();
    let check = |yaml: &str| {
        let config = dir.path().join("run.yaml");
        std::fs::write(&config, yaml).unwrap();
        let out = fathom()
            .args(["run", "--config"])
            .arg(&config)
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check("services: {webhook: {enabled: true}, analyzer: {enabled: true}}");
    assert!(err.contains("services.webhook.enabled"), "{err}");
    let err = check(
        "services: {api: {enabled: true, auth: false, address: '127.0.0.1:9443'}, \
         webhook: {enabled: true, address: '127.0.0.1:9443'}}",
    );
    assert!(err.contains("services.webhook.address"), "{err}");
    assert!(err.contains("services.api.address"), "{err}");
    // No certificate (the Secret not mounted): the core does not start, and says which file is missing.
    let missing = dir.path().join("absent/tls.crt");
    let err = check(&format!(
        "services: {{api: {{enabled: true, auth: false, address: '{}'}}, \
         webhook: {{enabled: true, address: '{}', cert_file: '{}'}}}}",
        free_addr(),
        free_addr(),
        missing.display()
    ));
    assert!(err.contains("starting services.webhook"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

/// Requests the stand-in API server saw: (namespace, Authorization header).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// (namespace, label key, label value) the stand-in API server knows.
type NsLabels = &'static [(&'static str, &'static str, &'static str)];

/// A stand-in for the API server's namespace endpoint: `GET /api/v1/namespaces/{name}` answers the
/// Namespace with its labels (a 404 Status for others) and records each request.
async fn namespace_server(labels: NsLabels) -> (String, Seen) {
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    async fn get(
        State((labels, seen)): State<(NsLabels, Seen)>,
        headers: HeaderMap,
        Path(name): Path<String>,
    ) -> (StatusCode, axum::Json<Value>) {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        seen.lock().unwrap().push((name.clone(), auth));
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .filter(|(ns, _, _)| *ns == name)
            .map(|(_, k, v)| (k.to_string(), json!(v)))
            .collect();
        if labels.is_empty() {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                "reason": "NotFound", "code": 404,
                                "message": format!("namespaces \"{name}\" not found")});
            return (StatusCode::NOT_FOUND, axum::Json(status));
        }
        let ns = json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": name, "labels": labels}});
        (StatusCode::OK, axum::Json(ns))
    }
    let seen: Seen = Default::default();
    let app = axum::Router::new()
        .route("/api/v1/namespaces/{name}", axum::routing::get(get))
        .with_state((labels, seen.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_label_selector_picks_the_mode_from_the_namespace_in_the_kubernetes_api() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let (api_server, seen) = namespace_server(&[
        ("team-a", "fathom.dev/tier", "incident"),
        ("team-b", "fathom.dev/tier", "regular"),
    ])
    .await;
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: '{api_server}'}}}}]\n\
             users: [{{name: test, user: {{token: s3cret}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: test}}}}]\n"
        ),
    )
    .unwrap();
    let tls = dir.path().join("tls");
    webhook_certs(&tls);
    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let extra = format!(
        "  webhook:\n    enabled: true\n    address: '{hook_addr}'\n    \
         cert_file: '{}'\n    key_file: '{}'\n    kubeconfig: '{}'\n    namespace_cache_ttl: 1h\n    \
         selectors:\n      \
         - {{name: incident, namespace_labels: {{fathom.dev/tier: '^incident$'}}, mode: breakglass}}\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
        kubeconfig.display(),
    );
    let _api = Api::start(dir.path(), db.url(), &extra);
    let hook = Hook::new(&tls, port);
    // An image fathom never saw, as dry runs (nothing queued): only the mode differs per namespace.
    let image = format!("registry.test/app@sha256:{}", "ab".repeat(32));
    let in_ns =
        |ns: &str, uid: &str| review(uid, &workload("Pod", ns, &[("app", &image)], &[]), true);

    // team-a is labelled fathom.dev/tier=incident: breakglass, by that selector.
    let r = hook.admit(&in_ns("team-a", "a1")).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["selector"], "incident", "{r}");
    // team-b's label does not match, nor does a namespace the API server does not know: the default.
    for (ns, uid) in [("team-b", "b1"), ("unknown", "u1")] {
        let r = hook.admit(&in_ns(ns, uid)).await;
        assert_eq!(r["allowed"], false, "{ns}: {r}");
        assert_eq!(r["auditAnnotations"]["mode"], "policy", "{ns}: {r}");
        assert!(message(&r).contains("dry run"), "{ns}: {r}");
    }
    // Again, concurrently: the labels are cached (namespace_cache_ttl), no further API request.
    let again: Vec<_> = (0..8)
        .map(|i| {
            let (client, doc) = (hook.client.clone(), in_ns("team-a", &format!("a{}", i + 2)));
            tokio::spawn(async move { Hook { client, port }.admit(&doc).await })
        })
        .collect();
    for r in again {
        let r = r.await.unwrap();
        assert_eq!(r["auditAnnotations"]["selector"], "incident", "{r}");
    }
    let seen = seen.lock().unwrap().clone();
    let asked = |ns: &str| seen.iter().filter(|(n, _)| n == ns).count();
    assert_eq!(
        (asked("team-a"), asked("team-b"), asked("unknown")),
        (1, 1, 1),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, auth)| auth == "Bearer s3cret"),
        "the kubeconfig's credentials: {seen:?}"
    );
}
