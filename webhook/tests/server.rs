//! The HTTPS shell: bad input answered (never a 500 or a hang), the time budget with a hanging oracle,
//! certificate rotation without a restart, health, and the deploy manifest's agreement with the config.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fathom_webhook::{certs, FailurePolicy, WebhookConfig};
use serde_json::json;
use support::docs::{pod_spec, review, workload};
use support::{client, client_as, digest, start, FakeOracle};

#[tokio::test]
async fn bad_input_gets_an_admission_review_answer_and_the_server_keeps_running() {
    let oracle = Arc::new(FakeOracle::default());
    let hook = start(oracle.clone(), |c| c.max_request_bytes = 4 << 20).await;
    // Not JSON: no uid to echo, so HTTP 400 (the API server applies its failurePolicy), with a body.
    let (status, r) = hook
        .post_raw(b"{\"apiVersion\": \"admission.k8s.io/v1\", ".to_vec())
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        r["status"]["code"], 200,
        "allowed by the default failure policy: {r}"
    );
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("the body is not JSON"),
        "{r}"
    );
    // A wrong apiVersion with a readable uid: answered, by failure policy, uid echoed.
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({}),
        pod_spec(&[("a", "nginx")], &[]),
    );
    let mut old = review("v1beta1", "CREATE", &pod, None, false);
    old["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let r = hook.post(&old).await;
    assert_eq!(r["allowed"], true);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("admission.k8s.io/v1beta1"),
        "{r}"
    );
    // A kind without pod spec: nothing to check, admitted (tests/gate.rs: whatever the failure policy).
    let cm = workload("ConfigMap", "c", "shop", json!({}), json!({}));
    let r = hook.post(&review("cm", "CREATE", &cm, None, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["reason"], "skipped", "{r}");
    // A 10 MiB object: refused before parsing.
    let mut huge = review("huge", "CREATE", &pod, None, false);
    huge["request"]["object"]["metadata"]["annotations"] = json!({"blob": "x".repeat(10 << 20)});
    let (status, r) = hook.post_raw(serde_json::to_vec(&huge).unwrap()).await;
    assert_eq!(status, 413);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("max_request_bytes"),
        "{r}"
    );
    // 500 containers of 250 distinct images: each distinct image checked once.
    let images: Vec<String> = (0..250)
        .map(|i| format!("registry.test/many/i{i}@{}", digest(&format!("i{i}"))))
        .collect();
    for i in 0..250 {
        oracle.analyzed(&digest(&format!("i{i}")));
    }
    let names: Vec<String> = (0..500).map(|i| format!("c{i}")).collect();
    let containers: Vec<(&str, &str)> = (0..500)
        .map(|i| (names[i].as_str(), images[i % 250].as_str()))
        .collect();
    let big = workload(
        "Deployment",
        "big",
        "shop",
        json!({}),
        pod_spec(&containers, &[]),
    );
    let before = oracle.calls().len();
    let r = hook.post(&review("big", "CREATE", &big, None, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(
        oracle.calls().len() - before,
        500,
        "250 state lookups and 250 evaluations"
    );
    let invalid = [
        ("result", "allowed"),
        ("mode", "none"),
        ("reason", "invalid"),
    ];
    assert_eq!(
        hook.counter("fathom_webhook_decisions_total", &invalid),
        2.0
    );
    let health = client(&hook.certs.ca_pem, hook.port)
        .get(hook.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    hook.stop().await;
}

#[tokio::test]
async fn a_hanging_oracle_is_answered_by_failure_policy_within_the_deadline() {
    for policy in [FailurePolicy::Deny, FailurePolicy::Allow] {
        let oracle = Arc::new(FakeOracle::default());
        oracle.hang.store(true, Ordering::SeqCst);
        let hook = start(oracle.clone(), |c| {
            c.timeout = Duration::from_millis(300);
            c.failure_policy = policy;
        })
        .await;
        let pod = workload(
            "Pod",
            "p",
            "shop",
            json!({}),
            pod_spec(&[("a", "registry.test/slow/app:1")], &[]),
        );
        // The client gives up after the API server's default 10 s: an answer at all means in time.
        let r = hook
            .post(&review("slow", "CREATE", &pod, None, false))
            .await;
        let allowed = policy == FailurePolicy::Allow;
        assert_eq!(r["allowed"], allowed, "{r}");
        let msg = r["status"]["message"].as_str().unwrap();
        assert!(
            msg.contains("could not check the images within services.webhook.timeout (300ms)"),
            "{msg}"
        );
        assert_eq!(r["status"]["code"], if allowed { 200 } else { 504 });
        assert_eq!(hook.counter("fathom_webhook_timeouts_total", &[]), 1.0);
        let labels = [("mode", "policy"), ("reason", "timeout")];
        assert_eq!(hook.counter("fathom_webhook_decisions_total", &labels), 1.0);
        hook.stop().await;
    }
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_a_restart() {
    let hook = start(Arc::new(FakeOracle::default()), |_| {}).await;
    let old_ca = hook.certs.ca_pem.clone();
    let get = |ca: String| {
        let url = hook.url("/healthz");
        let port = hook.port;
        async move {
            client(&ca, port)
                .get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    assert_eq!(get(old_ca.clone()).await.unwrap(), 200);
    let next = certs::generate("fathom-core", "fathom").unwrap();
    // Written as a Secret update lands: key and certificate replaced (a reload between the two writes
    // sees a mismatched pair and keeps the old one).
    std::fs::write(&hook.key_file, &next.key_pem).unwrap();
    std::fs::write(&hook.cert_file, &next.cert_pem).unwrap();
    let mut served = false;
    for _ in 0..400 {
        if get(next.ca_pem.clone()).await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(served, "the new certificate was never served");
    assert!(
        get(old_ca).await.is_err(),
        "the old certificate is still served"
    );
    assert!(hook.counter("fathom_webhook_cert_reloads_total", &[("result", "ok")]) >= 1.0);
    hook.stop().await;
}

#[tokio::test]
async fn with_a_client_ca_only_its_certificates_get_an_answer_and_it_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("client-ca.crt");
    let apiserver = certs::generate_client("kube-apiserver").unwrap();
    let stranger = certs::generate_client("kube-apiserver").unwrap();
    std::fs::write(&ca_file, &apiserver.ca_pem).unwrap();
    let file = ca_file.clone();
    let hook = start(Arc::new(FakeOracle::default()), move |c| {
        c.client_ca_file = Some(file)
    })
    .await;
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({}),
        pod_spec(&[("a", "registry.test/x@sha256:00")], &[]),
    );
    let body = serde_json::to_vec(&review("mtls", "CREATE", &pod, None, false)).unwrap();
    let ask = |identity: Option<(&str, &str)>| {
        let request = client_as(&hook.certs.ca_pem, hook.port, identity)
            .post(hook.url("/validate"))
            .header("content-type", "application/json")
            .body(body.clone());
        async move {
            let r = request.send().await?;
            let status = r.status().as_u16();
            r.bytes().await.map(|_| status)
        }
    };
    let (cert, key) = (apiserver.cert_pem.as_str(), apiserver.key_pem.as_str());
    let (other_cert, other_key) = (stranger.cert_pem.as_str(), stranger.key_pem.as_str());
    // Without a certificate, and with one from another CA: the handshake is refused, no answer.
    assert!(
        ask(None).await.is_err(),
        "answered without a client certificate"
    );
    assert!(
        ask(Some((other_cert, other_key))).await.is_err(),
        "answered a certificate of another CA"
    );
    // The API server's certificate: answered.
    assert_eq!(ask(Some((cert, key))).await.unwrap(), 200);
    // The CA rotated in place (a Secret update): the new one's certificates are answered, the old
    // one's refused, without a restart.
    std::fs::write(&ca_file, &stranger.ca_pem).unwrap();
    let mut rotated = false;
    for _ in 0..400 {
        if ask(Some((other_cert, other_key))).await.is_ok() {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(rotated, "the new client CA was never used");
    assert!(
        ask(Some((cert, key))).await.is_err(),
        "the old CA still admits"
    );
    hook.stop().await;
}

#[tokio::test]
async fn startup_errors_name_the_file_or_key() {
    let registry = prometheus::Registry::new();
    let oracle: Arc<dyn fathom_webhook::ImageOracle> = Arc::new(FakeOracle::default());
    let config = WebhookConfig {
        cert_file: "/nonexistent/tls.crt".into(),
        address: "127.0.0.1:0".parse().unwrap(),
        ..WebhookConfig::default()
    };
    let e = fathom_webhook::WebhookServer::bind(&config, oracle.clone(), &registry)
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .starts_with("TLS material /nonexistent/tls.crt:"),
        "{e}"
    );
    let config = WebhookConfig {
        timeout: Duration::from_secs(40),
        ..config
    };
    let e = fathom_webhook::WebhookServer::bind(&config, oracle, &registry)
        .await
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with("services.webhook.timeout:"),
        "{e}"
    );
}

#[test]
fn the_deploy_manifest_agrees_with_the_webhook() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/base/webhook.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let vwc = docs
        .iter()
        .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
        .expect("a ValidatingWebhookConfiguration");
    // The cert-manager annotation belongs to deploy/overlays/cert-manager (tests/deploy.rs checks it);
    // the base gets its caBundle from `fathom webhook certs`.
    assert!(
        vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
            .as_str()
            .is_none()
    );
    let hook = &vwc["webhooks"][0];
    assert_eq!(hook["sideEffects"], "NoneOnDryRun");
    assert_eq!(hook["failurePolicy"], "Ignore");
    assert_eq!(hook["admissionReviewVersions"][0], "v1");
    assert_eq!(hook["clientConfig"]["service"]["path"], "/validate");
    // The webhook answers within its timeout, below the API server's.
    let seconds = hook["timeoutSeconds"].as_u64().unwrap();
    assert!(WebhookConfig::default().timeout < Duration::from_secs(seconds));
    let mut resources: Vec<String> = Vec::new();
    for rule in hook["rules"].as_sequence().unwrap() {
        for r in rule["resources"].as_sequence().unwrap() {
            resources.push(r.as_str().unwrap().to_owned());
        }
    }
    for want in [
        "pods",
        "pods/ephemeralcontainers",
        "deployments",
        "replicasets",
        "statefulsets",
        "daemonsets",
        "jobs",
        "cronjobs",
        "replicationcontrollers",
    ] {
        assert!(
            resources.iter().any(|r| r == want),
            "rules miss {want}: {resources:?}"
        );
    }
    let exempt = serde_yaml::to_string(&hook["namespaceSelector"]).unwrap();
    assert!(
        exempt.contains("kube-system") && exempt.contains("fathom.dev/admission"),
        "{exempt}"
    );
}
