//! The webhook over real HTTPS answering real AdmissionReview documents, against an in-memory oracle
//! whose calls are checked: every kind and container list, CREATE/UPDATE/dryRun, policy results, modes
//! and selectors.

mod support;

use std::sync::Arc;

use fathom_webhook::{AnalysisState, Finding, Mode, Outcome, SelectorConfig, Verdict};
use serde_json::json;
use support::docs::{pod_spec, review, workload, KINDS};
use support::{digest, start, Call, FakeOracle};

const WEB: &str = "registry.test/shop/web";
const SETUP: &str = "registry.test/tools/setup:1.2";

#[tokio::test]
async fn every_kind_checks_init_containers_and_queues_what_is_unanalyzed() {
    let oracle = Arc::new(FakeOracle::default());
    let web = format!("{WEB}@{}", digest("web"));
    oracle.analyzed(&digest("web"));
    oracle.tag(SETUP, &digest("setup"));
    let hook = start(oracle.clone(), |_| {}).await;
    for (i, kind) in KINDS.iter().enumerate() {
        let spec = pod_spec(&[("web", &web)], &[("setup", SETUP)]);
        let object = workload(kind, "web", "shop", json!({"team": "a"}), spec);
        let r = hook
            .post(&review(&format!("uid-{i}"), "CREATE", &object, None, false))
            .await;
        assert_eq!(r["allowed"], false, "{kind}: {r}");
        assert_eq!(r["status"]["code"], 403);
        let msg = r["status"]["message"].as_str().unwrap();
        let first = i == 0;
        let expect = if first {
            "queued at high priority"
        } else {
            "is queued for analysis"
        };
        assert!(
            msg.contains(&format!("image \"{SETUP}\" (init:setup)")),
            "{kind}: {msg}"
        );
        assert!(msg.contains(expect), "{kind}: {msg}");
        assert!(
            msg.contains(&format!(
                "fathom denied {kind} shop/web (mode policy, selector default)"
            )),
            "{msg}"
        );
        assert!(
            !msg.contains("shop/web@"),
            "the analyzed image is not named: {msg}"
        );
        assert_eq!(r["auditAnnotations"]["denied-images"], SETUP);
    }
    // Queued once, on first sight; later requests find it queued.
    assert_eq!(oracle.enqueued(), vec![digest("setup")]);
    assert_eq!(hook.counter("fathom_webhook_enqueued_total", &[]), 1.0);
    // Once analyzed, every kind is admitted (GO from the active bundle).
    oracle.analyzed(&digest("setup"));
    for kind in KINDS {
        let object = workload(
            kind,
            "web",
            "shop",
            json!({}),
            pod_spec(&[("web", &web)], &[("setup", SETUP)]),
        );
        let r = hook
            .post(&review("uid-ok", "CREATE", &object, None, false))
            .await;
        assert_eq!(r["allowed"], true, "{kind}: {r}");
        assert_eq!(r["auditAnnotations"]["reason"], "go");
    }
    let denied = [("result", "denied"), ("mode", "policy")];
    assert_eq!(hook.counter("fathom_webhook_decisions_total", &denied), 8.0);
    let allowed = [("result", "allowed"), ("reason", "go")];
    assert_eq!(
        hook.counter("fathom_webhook_decisions_total", &allowed),
        8.0
    );
    hook.stop().await;
}

#[tokio::test]
async fn digest_references_are_not_resolved_and_tags_are_cached() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.tag("docker.io/library/nginx:1.25", &digest("nginx"));
    oracle.analyzed(&digest("nginx"));
    oracle.analyzed(&digest("web"));
    let hook = start(oracle.clone(), |c| c.default_mode = Mode::Analysis).await;
    let web = format!("{WEB}@{}", digest("web"));
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({}),
        pod_spec(&[("a", "nginx:1.25"), ("b", &web)], &[]),
    );
    for uid in ["u1", "u2"] {
        let r = hook.post(&review(uid, "CREATE", &pod, None, false)).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(r["auditAnnotations"]["reason"], "analyzed");
    }
    let resolves: Vec<Call> = oracle
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Resolve(_)))
        .collect();
    // `nginx:1.25` canonicalized; resolved once (then cached); the digest reference never.
    assert_eq!(
        resolves,
        vec![Call::Resolve("docker.io/library/nginx:1.25".into())]
    );
    // Analysis mode evaluates no policy.
    assert!(!oracle
        .calls()
        .iter()
        .any(|c| matches!(c, Call::Evaluate(..))));
    assert_eq!(
        hook.counter("fathom_webhook_tag_cache_total", &[("result", "hit")]),
        1.0
    );
    // An unknown tag is denied as not found.
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({}),
        pod_spec(&[("a", "nginx:9.9")], &[]),
    );
    let r = hook.post(&review("u3", "CREATE", &pod, None, false)).await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("was not found in its registry"),
        "{r}"
    );
    hook.stop().await;
}

#[tokio::test]
async fn dry_run_has_no_side_effects() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.tag(SETUP, &digest("setup"));
    let hook = start(oracle.clone(), |_| {}).await;
    let job = workload(
        "Job",
        "j",
        "batch",
        json!({}),
        pod_spec(&[("setup", SETUP)], &[]),
    );
    let r = hook.post(&review("dry", "CREATE", &job, None, true)).await;
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("dry run: no analysis was queued"), "{msg}");
    assert!(oracle.enqueued().is_empty());
    assert_eq!(hook.counter("fathom_webhook_enqueued_total", &[]), 0.0);
    // The same request for real queues it.
    let r = hook.post(&review("wet", "CREATE", &job, None, false)).await;
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("queued at high priority"));
    assert_eq!(oracle.enqueued(), vec![digest("setup")]);
    hook.stop().await;
}

#[tokio::test]
async fn policy_stop_warn_and_go_with_the_selected_bundle() {
    let oracle = Arc::new(FakeOracle::default());
    for name in ["bad", "meh", "good"] {
        oracle.analyzed(&digest(name));
    }
    let finding = |trigger: &str, outcome, message: &str| Finding {
        trigger: trigger.into(),
        outcome,
        message: message.into(),
        unevaluable: false,
    };
    oracle.verdicts.lock().unwrap().insert(
        digest("bad"),
        Verdict {
            outcome: Outcome::Stop,
            bundle: "strict".into(),
            unmapped: false,
            findings: vec![
                finding(
                    "vulnerabilities.package",
                    Outcome::Stop,
                    "CVE-2024-3094 critical in xz-utils 5.6.0",
                ),
                finding("dockerfile.effective_user", Outcome::Warn, "runs as root"),
            ],
        },
    );
    oracle.verdicts.lock().unwrap().insert(
        digest("meh"),
        Verdict {
            outcome: Outcome::Warn,
            bundle: "strict".into(),
            unmapped: false,
            findings: vec![finding(
                "dockerfile.effective_user",
                Outcome::Warn,
                "runs as root",
            )],
        },
    );
    let hook = start(oracle.clone(), |c| {
        c.selectors = vec![SelectorConfig {
            name: Some("prod".into()),
            namespace: Some("^prod-".into()),
            mode: Some(Mode::Policy),
            bundle: Some("strict".into()),
            ..SelectorConfig::default()
        }]
    })
    .await;
    let image = |n: &str| format!("registry.test/app/{n}@{}", digest(n));
    let deploy = |n: &str| {
        workload(
            "Deployment",
            n,
            "prod-eu",
            json!({}),
            pod_spec(&[(n, &image(n))], &[]),
        )
    };
    let r = hook
        .post(&review("s", "CREATE", &deploy("bad"), None, false))
        .await;
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("stopped by policy bundle \"strict\": vulnerabilities.package: CVE-2024-3094"),
        "{msg}"
    );
    assert!(msg.contains("selector prod"), "{msg}");
    assert!(
        !msg.contains("runs as root"),
        "only STOP triggers explain a denial: {msg}"
    );
    assert_eq!(r["auditAnnotations"]["reason"], "stop");
    let r = hook
        .post(&review("w", "CREATE", &deploy("meh"), None, false))
        .await;
    assert_eq!(r["allowed"], true);
    let warning = r["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("registry.test/app/meh")
            && warning.contains("WARN dockerfile.effective_user: runs as root"),
        "{warning}"
    );
    let r = hook
        .post(&review("g", "CREATE", &deploy("good"), None, false))
        .await;
    assert_eq!(r["allowed"], true);
    assert!(r.get("warnings").is_none());
    // The selector's bundle was asked for.
    assert!(oracle
        .calls()
        .contains(&Call::Evaluate(digest("good"), Some("strict".into()))));
    hook.stop().await;
}

#[tokio::test]
async fn update_checks_only_changed_images() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.analyzed(&digest("new"));
    let hook = start(oracle.clone(), |_| {}).await;
    // `old` was never analyzed here (admitted before fathom, or under breakglass): not re-checked.
    let old_image = format!("{WEB}@{}", digest("old"));
    let new_image = format!("{WEB}@{}", digest("new"));
    let before = workload(
        "StatefulSet",
        "db",
        "shop",
        json!({}),
        pod_spec(&[("db", &old_image)], &[]),
    );
    let scaled = {
        let mut o = before.clone();
        o["spec"]["replicas"] = json!(5);
        o
    };
    let r = hook
        .post(&review("scale", "UPDATE", &scaled, Some(&before), false))
        .await;
    assert_eq!(r["allowed"], true);
    assert_eq!(r["auditAnnotations"]["reason"], "unchanged");
    assert!(oracle.calls().is_empty(), "{:?}", oracle.calls());
    let sidecar = workload(
        "StatefulSet",
        "db",
        "shop",
        json!({}),
        pod_spec(&[("db", &old_image), ("s", &new_image)], &[]),
    );
    let r = hook
        .post(&review("side", "UPDATE", &sidecar, Some(&before), false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(!oracle
        .calls()
        .iter()
        .any(|c| *c == Call::State(digest("old"))));
    // `kubectl debug`: an ephemeral container added through the pod's subresource is checked.
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({}),
        pod_spec(&[("db", &old_image)], &[]),
    );
    let mut debugged = pod.clone();
    debugged["spec"]["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "busybox:1.36"}]);
    let mut req = review("dbg", "UPDATE", &debugged, Some(&pod), false);
    req["request"]["subResource"] = json!("ephemeralcontainers");
    let r = hook.post(&req).await;
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .unwrap()
            .contains("\"busybox:1.36\" (ephemeral:debugger)"),
        "{r}"
    );
    // A status update is not checked.
    req["request"]["subResource"] = json!("status");
    assert_eq!(hook.post(&req).await["allowed"], true);
    hook.stop().await;
}

#[tokio::test]
async fn failed_analysis_and_a_store_outage() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.states.lock().unwrap().insert(
        digest("broken"),
        AnalysisState::Failed {
            reason: "manifest list without linux/amd64".into(),
        },
    );
    let hook = start(oracle.clone(), |_| {}).await;
    let broken = format!("{WEB}@{}", digest("broken"));
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({}),
        pod_spec(&[("b", &broken)], &[]),
    );
    let r = hook.post(&review("f", "CREATE", &pod, None, false)).await;
    assert_eq!(r["allowed"], false);
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("could not be analyzed by fathom (manifest list without linux/amd64)"));
    assert!(
        oracle.enqueued().is_empty(),
        "a failed analysis is not retried by admission"
    );
    // Store down: failure policy allow (the default) admits with a warning saying why.
    oracle.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let r = hook.post(&review("o", "CREATE", &pod, None, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    let w = r["warnings"][0].as_str().unwrap();
    assert!(
        w.contains("could not be checked: looking up its analysis failed")
            && w.contains("failure_policy"),
        "{w}"
    );
    assert_eq!(
        hook.counter(
            "fathom_webhook_decisions_total",
            &[("result", "allowed"), ("reason", "unavailable")]
        ),
        1.0
    );
    hook.stop().await;
}

#[tokio::test]
async fn a_short_wait_admits_an_image_analyzed_meanwhile() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.tag(SETUP, &digest("setup"));
    // The "worker" finishes after the third state lookup following the enqueue.
    oracle
        .analyze_after_polls
        .store(3, std::sync::atomic::Ordering::SeqCst);
    let hook = start(oracle.clone(), |c| {
        c.default_mode = Mode::Analysis;
        c.timeout = std::time::Duration::from_secs(5);
        c.analysis_wait = std::time::Duration::from_secs(4);
    })
    .await;
    let pod = workload(
        "Pod",
        "p",
        "shop",
        json!({}),
        pod_spec(&[("s", SETUP)], &[]),
    );
    let r = hook.post(&review("w", "CREATE", &pod, None, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(oracle.enqueued(), vec![digest("setup")]);
    hook.stop().await;
}
