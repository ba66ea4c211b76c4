//! `services.webhook.stale_if_error` over real HTTPS against the in-memory oracle: with the store down or
//! hanging, a verdict this process computed for the same image (reference, digest, mode, bundle) within
//! the window answers, naming its age; a STOP stays a denial; beyond the window, for another mode,
//! bundle or digest, or after a fresh denial, the failure policy answers.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fathom_webhook::{
    AnalysisState, FailurePolicy, Finding, Mode, Outcome, SelectorConfig, Verdict,
};
use serde_json::{json, Value};
use support::docs::{pod_spec, review, workload};
use support::{digest, start, FakeOracle, Hook};

const REPO: &str = "registry.test/shop";

/// `registry.test/shop/NAME@digest(NAME)`, analyzed.
fn analyzed(oracle: &FakeOracle, name: &str) -> String {
    oracle.analyzed(&digest(name));
    format!("{REPO}/{name}@{}", digest(name))
}

async fn admit(hook: &Hook, ns: &str, image: &str) -> Value {
    let pod = workload("Pod", "p", ns, json!({}), pod_spec(&[("c", image)], &[]));
    hook.post(&review("u", "CREATE", &pod, None, false)).await
}

fn message(r: &Value) -> &str {
    r["status"]["message"].as_str().unwrap_or_default()
}

fn warnings(r: &Value) -> String {
    r["warnings"].to_string()
}

fn stop(bundle: &str) -> Verdict {
    Verdict {
        outcome: Outcome::Stop,
        bundle: bundle.into(),
        unmapped: false,
        findings: vec![Finding {
            trigger: "packages.blacklist".into(),
            outcome: Outcome::Stop,
            message: "musl is blacklisted".into(),
            unevaluable: false,
        }],
    }
}

#[tokio::test]
async fn with_the_store_down_a_recent_verdict_answers_and_a_stop_stays_denied() {
    let oracle = Arc::new(FakeOracle::default());
    let go = analyzed(&oracle, "go");
    let stopped = analyzed(&oracle, "stopped");
    oracle
        .verdicts
        .lock()
        .unwrap()
        .insert(digest("stopped"), stop("active"));
    let tagged = "registry.test/shop/web:1";
    oracle.tag(tagged, &digest("web"));
    oracle.analyzed(&digest("web"));
    let hook = start(oracle.clone(), |c| {
        // Another mode, another bundle: verdicts of the default's are not theirs.
        c.selectors = vec![
            SelectorConfig {
                namespace: Some("^audit$".into()),
                mode: Some(Mode::Analysis),
                ..SelectorConfig::default()
            },
            SelectorConfig {
                namespace: Some("^strict$".into()),
                mode: Some(Mode::Policy),
                bundle: Some("strict".into()),
                ..SelectorConfig::default()
            },
        ];
    })
    .await;
    for image in [go.as_str(), tagged] {
        assert_eq!(admit(&hook, "shop", image).await["allowed"], true);
    }
    let r = admit(&hook, "shop", &stopped).await;
    assert_eq!(r["allowed"], false, "{r}");

    oracle.down.store(true, Ordering::SeqCst);
    for image in [go.as_str(), tagged] {
        let r = admit(&hook, "shop", image).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(r["auditAnnotations"]["reason"], "stale", "{r}");
        let w = warnings(&r);
        assert!(
            w.contains("admitted on fathom's go verdict of ")
                && w.contains(" ago (services.webhook.stale_if_error): could not be checked")
                && !w.contains("failure_policy"),
            "{r}"
        );
    }
    // A STOP kept is a STOP: denied, never left to the failure policy (allow).
    let r = admit(&hook, "shop", &stopped).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("is stopped by policy bundle \"active\"")
            && message(&r).contains("fathom's stop verdict of "),
        "{r}"
    );
    // Another mode or bundle, and an image never decided: the failure policy.
    let never = analyzed(&oracle, "never-seen");
    for (ns, image) in [
        ("audit", go.as_str()),
        ("strict", go.as_str()),
        ("shop", never.as_str()),
    ] {
        let r = admit(&hook, ns, image).await;
        assert_eq!(r["allowed"], true, "{ns} {image}: {r}");
        assert_eq!(r["auditAnnotations"]["reason"], "unavailable", "{r}");
        assert!(warnings(&r).contains("failure_policy"), "{r}");
    }
    let stale = |result| {
        hook.counter(
            "fathom_webhook_decisions_total",
            &[("result", result), ("mode", "policy"), ("reason", "stale")],
        )
    };
    assert_eq!((stale("allowed"), stale("denied")), (2.0, 1.0));
    hook.stop().await;
}

#[tokio::test]
async fn a_hanging_store_is_answered_from_a_recent_verdict_within_the_deadline() {
    let oracle = Arc::new(FakeOracle::default());
    let go = analyzed(&oracle, "go");
    let stopped = analyzed(&oracle, "stopped");
    oracle
        .verdicts
        .lock()
        .unwrap()
        .insert(digest("stopped"), stop("active"));
    let hook = start(oracle.clone(), |c| {
        c.timeout = Duration::from_secs(1);
        c.failure_policy = FailurePolicy::Allow;
    })
    .await;
    assert_eq!(admit(&hook, "shop", &go).await["allowed"], true);
    assert_eq!(admit(&hook, "shop", &stopped).await["allowed"], false);

    oracle.hang.store(true, Ordering::SeqCst);
    // Answered a margin before the deadline (past it, the failure policy would have: reason timeout).
    let r = admit(&hook, "shop", &go).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["reason"], "stale", "{r}");
    assert!(
        warnings(&r).contains("go verdict of ")
            && warnings(&r).contains("not checked within services.webhook.timeout (1s)"),
        "{r}"
    );
    let r = admit(&hook, "shop", &stopped).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["auditAnnotations"]["reason"], "stale", "{r}");
    // Nothing kept for it: the deadline and the failure policy, as before.
    let r = admit(&hook, "shop", &analyzed(&oracle, "other")).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["reason"], "timeout", "{r}");
    assert_eq!(hook.counter("fathom_webhook_timeouts_total", &[]), 1.0);
    hook.stop().await;
}

#[tokio::test]
async fn nothing_stale_answers_beyond_the_window_after_a_fresh_denial_or_for_a_moved_tag() {
    let oracle = Arc::new(FakeOracle::default());
    let go = analyzed(&oracle, "go");
    let failed = analyzed(&oracle, "failed");
    let tagged = "registry.test/shop/web:1";
    oracle.tag(tagged, &digest("web"));
    oracle.analyzed(&digest("web"));
    let hook = start(oracle.clone(), |c| {
        c.stale_if_error = Duration::from_secs(2);
        c.failure_policy = FailurePolicy::Deny;
        // The tag is looked up every time, so a move is seen.
        c.cache_ttl = Duration::ZERO;
    })
    .await;
    for image in [go.as_str(), failed.as_str(), tagged] {
        assert_eq!(admit(&hook, "shop", image).await["allowed"], true);
    }
    // Its analysis is found failed now: that fresh denial forgets the GO kept for it.
    oracle.states.lock().unwrap().insert(
        digest("failed"),
        AnalysisState::Failed {
            reason: "corrupt layer".into(),
        },
    );
    assert_eq!(admit(&hook, "shop", &failed).await["allowed"], false);
    // The tag moves to an image fathom never decided on.
    oracle.tag(tagged, &digest("web2"));

    oracle.down.store(true, Ordering::SeqCst);
    let r = admit(&hook, "shop", &go).await;
    assert_eq!(r["auditAnnotations"]["reason"], "stale", "{r}");
    for image in [failed.as_str(), tagged] {
        let r = admit(&hook, "shop", image).await;
        assert_eq!(r["allowed"], false, "{image}: {r}");
        assert_eq!(r["auditAnnotations"]["reason"], "unavailable", "{r}");
        assert!(
            message(&r).contains("denied by services.webhook.failure_policy"),
            "{r}"
        );
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = admit(&hook, "shop", &go).await;
    assert_eq!(r["allowed"], false, "past the window: {r}");
    assert_eq!(r["auditAnnotations"]["reason"], "unavailable", "{r}");
    hook.stop().await;
}

#[tokio::test]
async fn zero_turns_it_off() {
    let oracle = Arc::new(FakeOracle::default());
    let go = analyzed(&oracle, "go");
    let hook = start(oracle.clone(), |c| c.stale_if_error = Duration::ZERO).await;
    assert_eq!(admit(&hook, "shop", &go).await["allowed"], true);
    oracle.down.store(true, Ordering::SeqCst);
    let r = admit(&hook, "shop", &go).await;
    assert_eq!(r["auditAnnotations"]["reason"], "unavailable", "{r}");
    assert!(warnings(&r).contains("failure_policy"), "{r}");
    hook.stop().await;
}
