//! The holes an attacker or a careless rule would walk through, over real HTTPS with real AdmissionReview
//! documents: breakglass by a workload's own label, the old EphemeralContainers kind, kinds without pod
//! spec under `failure_policy: deny`, unchecked images named one by one, and a namespace flooding the
//! queue.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fathom_webhook::{FailurePolicy, Mode, SelectorConfig, WebhookConfig};
use serde_json::{json, Value};
use support::docs::{old_ephemeral_review, pod_spec, review, workload};
use support::{digest, start, Call, FakeOracle};

const WEB: &str = "registry.test/shop/web";

fn message(r: &Value) -> &str {
    r["status"]["message"].as_str().unwrap_or_default()
}

/// `registry.test/app/iN@sha256:...` for N in `range`: digest references (no tag resolution).
fn pinned_images(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| format!("registry.test/app/i{i}@{}", digest(&format!("i{i}"))))
        .collect()
}

fn pod_of(ns: &str, images: &[String]) -> Value {
    let names: Vec<String> = (0..images.len()).map(|i| format!("c{i}")).collect();
    let containers: Vec<(&str, &str)> = names
        .iter()
        .zip(images)
        .map(|(n, i)| (n.as_str(), i.as_str()))
        .collect();
    workload("Pod", "p", ns, json!({}), pod_spec(&containers, &[]))
}
#[tokio::test]
async fn breakglass_and_namespace_label_selectors() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.analyzed(&digest("web"));
    oracle.namespaces.lock().unwrap().extend([
        (
            "team-a".to_string(),
            [("env".to_string(), "staging".to_string())].into(),
        ),
        (
            "incident".to_string(),
            [("fathom.dev/breakglass".to_string(), "true".to_string())].into(),
        ),
    ]);
    let hook = start(oracle.clone(), |c| {
        c.selectors = vec![
            SelectorConfig {
                name: Some("incident".into()),
                namespace_labels: [("fathom.dev/breakglass".to_string(), "^true$".to_string())]
                    .into(),
                mode: Some(Mode::Breakglass),
                ..SelectorConfig::default()
            },
            SelectorConfig {
                name: Some("staging".into()),
                namespace_labels: [("env".to_string(), "^staging$".to_string())].into(),
                mode: Some(Mode::Analysis),
                ..SelectorConfig::default()
            },
        ]
    })
    .await;
    // Breakglass by the namespace's label (set by whoever may edit Namespaces): admitted unchecked,
    // one warning per image, and every image with its reason in the audit annotation.
    let glass = workload(
        "Pod",
        "p",
        "incident",
        json!({}),
        pod_spec(&[("x", "unknown.test/x:1"), ("y", "unknown.test/y:1")], &[]),
    );
    let r = hook.post(&review("b", "CREATE", &glass, None, false)).await;
    assert_eq!(r["allowed"], true);
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{r}");
    for (w, image) in warnings
        .iter()
        .zip(["unknown.test/x:1", "unknown.test/y:1"])
    {
        let w = w.as_str().unwrap();
        assert!(
            w.contains(image) && w.contains("breakglass, selector incident"),
            "{r}"
        );
    }
    let listed: Value =
        serde_json::from_str(r["auditAnnotations"]["unchecked-images"].as_str().unwrap()).unwrap();
    assert_eq!(listed[1]["image"], "unknown.test/y:1", "{r}");
    assert!(!oracle
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Resolve(_) | Call::State(_))));
    assert_eq!(
        hook.counter(
            "fathom_webhook_decisions_total",
            &[("mode", "breakglass"), ("reason", "breakglass")]
        ),
        1.0
    );
    // A Pod that labels itself as if breakglass were on object labels gets the default mode: denied.
    let sneaky = workload(
        "Pod",
        "p",
        "team-b",
        json!({"fathom.dev/breakglass": "true"}),
        pod_spec(&[("x", "unknown.test/x:1")], &[]),
    );
    oracle.tag("unknown.test/x:1", &digest("x"));
    let r = hook
        .post(&review("s0", "CREATE", &sneaky, None, true))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["auditAnnotations"]["mode"], "policy", "{r}");
    // team-a is labelled env=staging: analysis mode, no policy evaluated.
    let web = format!("{WEB}@{}", digest("web"));
    let pod = workload(
        "Pod",
        "p",
        "team-a",
        json!({}),
        pod_spec(&[("web", &web)], &[]),
    );
    let r = hook.post(&review("s", "CREATE", &pod, None, false)).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(r["auditAnnotations"]["mode"], "analysis");
    assert_eq!(r["auditAnnotations"]["selector"], "staging");
    // Elsewhere the default (policy) applies.
    let pod = workload(
        "Pod",
        "p",
        "team-b",
        json!({}),
        pod_spec(&[("web", &web)], &[]),
    );
    let r = hook.post(&review("d", "CREATE", &pod, None, false)).await;
    assert_eq!(r["auditAnnotations"]["mode"], "policy");
    assert!(oracle
        .calls()
        .contains(&Call::Evaluate(digest("web"), None)));
    hook.stop().await;
}

#[tokio::test]
async fn object_label_breakglass_is_refused_at_startup_unless_allowed() {
    let glass = SelectorConfig {
        name: Some("self-service".into()),
        object_labels: [("fathom.dev/breakglass".to_string(), "^true$".to_string())].into(),
        mode: Some(Mode::Breakglass),
        ..SelectorConfig::default()
    };
    let config = WebhookConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        selectors: vec![glass.clone()],
        ..WebhookConfig::default()
    };
    let oracle: Arc<dyn fathom_webhook::ImageOracle> = Arc::new(FakeOracle::default());
    let e = fathom_webhook::WebhookServer::bind(&config, oracle, &prometheus::Registry::new())
        .await
        .err()
        .expect("refused");
    assert!(
        e.to_string()
            .starts_with("services.webhook.selectors[0].object_labels:"),
        "{e}"
    );
    // The operator who means it says so; then the label works (and anyone creating Pods can set it).
    let oracle = Arc::new(FakeOracle::default());
    let hook = start(oracle.clone(), |c| {
        c.selectors = vec![glass];
        c.allow_object_label_breakglass = true;
    })
    .await;
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({"fathom.dev/breakglass": "true"}),
        pod_spec(&[("x", "unknown.test/x:1")], &[]),
    );
    let r = hook.post(&review("o", "CREATE", &pod, None, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["selector"], "self-service", "{r}");
    hook.stop().await;
}

#[tokio::test]
async fn the_old_ephemeral_containers_kind_is_checked_like_the_subresource() {
    let oracle = Arc::new(FakeOracle::default());
    let hook = start(oracle.clone(), |_| {}).await;
    let debugger = format!("registry.test/tools/debug@{}", digest("debug"));
    let r = hook
        .post(&old_ephemeral_review(
            "e1",
            "shop",
            "web",
            &[("dbg", &debugger)],
        ))
        .await;
    assert_eq!(r["allowed"], false, "an unanalyzed debug image: {r}");
    assert!(message(&r).contains("registry.test/tools/debug"), "{r}");
    assert!(message(&r).contains("ephemeral:dbg"), "{r}");
    assert_eq!(oracle.enqueued(), vec![digest("debug")]);
    // Analyzed: admitted.
    oracle.analyzed(&digest("debug"));
    let r = hook
        .post(&old_ephemeral_review(
            "e2",
            "shop",
            "web",
            &[("dbg", &debugger)],
        ))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    hook.stop().await;
}

#[tokio::test]
async fn kinds_without_pod_spec_are_allowed_even_when_failure_policy_denies() {
    let oracle = Arc::new(FakeOracle::default());
    let hook = start(oracle.clone(), |c| c.failure_policy = FailurePolicy::Deny).await;
    for kind in ["ConfigMap", "Service"] {
        let object = workload(kind, "x", "shop", json!({}), json!({}));
        let r = hook
            .post(&review(kind, "CREATE", &object, None, false))
            .await;
        assert_eq!(r["allowed"], true, "{kind}: {r}");
        assert_eq!(r["auditAnnotations"]["reason"], "skipped", "{kind}: {r}");
    }
    assert!(oracle.calls().is_empty(), "{:?}", oracle.calls());
    let skipped = [("result", "allowed"), ("reason", "skipped")];
    assert_eq!(
        hook.counter("fathom_webhook_decisions_total", &skipped),
        2.0
    );
    // A kind the webhook checks still follows the failure policy when it cannot decide.
    oracle.down.store(true, Ordering::SeqCst);
    let pod = pod_of("shop", &pinned_images(0..1));
    let r = hook
        .post(&review("down", "CREATE", &pod, None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    hook.stop().await;
}

#[tokio::test]
async fn every_image_admitted_unchecked_is_named_in_its_own_warning_and_the_audit() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.down.store(true, Ordering::SeqCst);
    let hook = start(oracle.clone(), |_| {}).await;
    let images = pinned_images(0..3);
    let r = hook
        .post(&review(
            "down",
            "CREATE",
            &pod_of("shop", &images),
            None,
            false,
        ))
        .await;
    assert_eq!(r["allowed"], true, "failure_policy allow: {r}");
    let warnings: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 3, "one per image: {r}");
    for (w, image) in warnings.iter().zip(&images) {
        assert!(w.len() <= 256, "{w}");
        // The image first: clipping cuts the reason, never the name.
        assert!(
            w.starts_with(&format!("fathom admitted image {image:?} unchecked")),
            "{w}"
        );
    }
    let listed: Value =
        serde_json::from_str(r["auditAnnotations"]["unchecked-images"].as_str().unwrap()).unwrap();
    let named: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert_eq!(named, images.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("connection refused (store)"),
        "{listed}"
    );

    // 40 images: 14 warnings and one saying how many more; the annotation bounded, ending with the rest.
    let many = pinned_images(0..40);
    let r = hook
        .post(&review(
            "many",
            "CREATE",
            &pod_of("shop", &many),
            None,
            false,
        ))
        .await;
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 15, "{r}");
    assert!(
        warnings[14].as_str().unwrap().contains("26 more images"),
        "{r}"
    );
    let text = r["auditAnnotations"]["unchecked-images"].as_str().unwrap();
    assert!(text.len() <= 8192, "{}", text.len());
    let listed: Vec<Value> = serde_json::from_str(text).unwrap();
    let (named, more) = listed.split_at(listed.len() - 1);
    assert_eq!(
        named.len() as u64 + more[0]["more"].as_u64().unwrap_or(0),
        40,
        "{text}"
    );
    hook.stop().await;

    // Out of time: every image of the request is named, not only the request.
    let oracle = Arc::new(FakeOracle::default());
    oracle.hang.store(true, Ordering::SeqCst);
    let hook = start(oracle, |c| c.timeout = Duration::from_millis(200)).await;
    let images = pinned_images(0..2);
    let r = hook
        .post(&review(
            "slow",
            "CREATE",
            &pod_of("shop", &images),
            None,
            false,
        ))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{r}");
    assert!(warnings[1].as_str().unwrap().contains(&images[1]), "{r}");
    assert!(
        warnings[1]
            .as_str()
            .unwrap()
            .contains("services.webhook.timeout"),
        "{r}"
    );
    hook.stop().await;
}

#[tokio::test]
async fn a_namespace_cannot_queue_more_than_its_enqueue_limit() {
    assert_eq!(WebhookConfig::default().max_enqueues_per_minute, 60);
    let oracle = Arc::new(FakeOracle::default());
    let hook = start(oracle.clone(), |c| c.max_enqueues_per_minute = 2).await;
    let images = pinned_images(0..3);
    // A dry run queues nothing and costs nothing.
    let r = hook
        .post(&review(
            "dry",
            "CREATE",
            &pod_of("flood", &images),
            None,
            true,
        ))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(oracle.enqueued().is_empty());
    let r = hook
        .post(&review(
            "f1",
            "CREATE",
            &pod_of("flood", &images),
            None,
            false,
        ))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(
        oracle.enqueued().len(),
        2,
        "two tokens: {:?}",
        oracle.enqueued()
    );
    let limited = message(&r);
    assert!(
        limited.contains("namespace \"flood\" reached its enqueue limit")
            && limited.contains("services.webhook.max_enqueues_per_minute: 2")
            && limited.contains("nothing was queued"),
        "{r}"
    );
    assert_eq!(
        hook.counter("fathom_webhook_enqueues_limited_total", &[]),
        1.0
    );
    // Another batch in the same namespace: nothing more is queued.
    let more = pinned_images(10..15);
    let r = hook
        .post(&review(
            "f2",
            "CREATE",
            &pod_of("flood", &more),
            None,
            false,
        ))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(oracle.enqueued().len(), 2);
    assert_eq!(
        hook.counter("fathom_webhook_enqueues_limited_total", &[]),
        6.0
    );
    // Other namespaces have their own budget.
    let r = hook
        .post(&review(
            "q",
            "CREATE",
            &pod_of("quiet", &more[..1]),
            None,
            false,
        ))
        .await;
    assert!(message(&r).contains("queued at high priority"), "{r}");
    assert_eq!(oracle.enqueued().len(), 3);
    assert_eq!(hook.counter("fathom_webhook_enqueued_total", &[]), 3.0);
    hook.stop().await;
}
