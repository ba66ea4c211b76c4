//! Multi-platform images and images fathom cannot check, over real HTTPS with real AdmissionReview
//! documents, against the in-memory oracle: an index (by tag or by digest) is admitted only when every
//! configured platform it has is analyzed and passes, each unanalyzed platform is queued for its own
//! platform, and a registry's refusal is a denial, not a failure-policy admission.

mod support;

use std::sync::Arc;

use fathom_webhook::{AnalysisState, FailurePolicy, Finding, Mode, OracleError, Outcome, Verdict};
use serde_json::json;
use support::docs::{pod_spec, review, workload};
use support::{digest, start, Call, FakeOracle};

const APP: &str = "registry.test/shop/app";

fn pod(image: &str) -> serde_json::Value {
    workload(
        "Pod",
        "app",
        "shop",
        json!({}),
        pod_spec(&[("app", image)], &[]),
    )
}

fn message(r: &serde_json::Value) -> String {
    r["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An index at `APP:1` (and by its digest) with amd64 and arm64 manifests, and an s390x one no
/// configured platform asks for.
fn multi_arch(oracle: &FakeOracle) -> (String, String) {
    let entries = [
        ("linux/amd64", digest("amd")),
        ("linux/arm64", digest("arm")),
        ("linux/s390x", digest("s390x")),
    ];
    let entries: Vec<(&str, &str)> = entries.iter().map(|(p, d)| (*p, d.as_str())).collect();
    let pinned = format!("{APP}@{}", digest("index"));
    oracle.index(&format!("{APP}:1"), &digest("index"), &entries);
    oracle.index(&pinned, &digest("index"), &entries);
    (format!("{APP}:1"), pinned)
}

#[tokio::test]
async fn an_index_pinned_by_digest_is_admitted_once_every_platform_is_analyzed() {
    let oracle = Arc::new(FakeOracle::default());
    let (_, pinned) = multi_arch(&oracle);
    let hook = start(oracle.clone(), |_| {}).await;
    let r = hook
        .post(&review("u1", "CREATE", &pod(&pinned), None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = message(&r);
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(msg.contains(&format!("for platform {platform}")), "{msg}");
    }
    assert!(
        !msg.contains("s390x"),
        "platforms not configured are not checked: {msg}"
    );
    assert!(msg.contains("queued at high priority"), "{msg}");
    // Each platform queued as its own job: the manifest, the index it is picked from, the platform.
    let queued: Vec<Call> = oracle
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::EnqueuePlatform(..) | Call::Enqueue(_)))
        .collect();
    assert_eq!(
        queued,
        vec![
            Call::EnqueuePlatform(digest("amd"), digest("index"), "linux/amd64".into()),
            Call::EnqueuePlatform(digest("arm"), digest("index"), "linux/arm64".into()),
        ]
    );
    // Resubmission is not stuck: while queued the denial says so, and nothing is queued twice.
    let r = hook
        .post(&review("u2", "CREATE", &pod(&pinned), None, false))
        .await;
    assert!(message(&r).contains("is queued for analysis"), "{r}");
    assert_eq!(oracle.enqueued().len(), 2);
    // One platform analyzed is not enough.
    oracle.analyzed(&digest("amd"));
    let r = hook
        .post(&review("u3", "CREATE", &pod(&pinned), None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("for platform linux/arm64"), "{r}");
    assert!(!message(&r).contains("linux/amd64"), "{r}");
    // Both analyzed: admitted, both evaluated under the admitted reference.
    oracle.analyzed(&digest("arm"));
    let r = hook
        .post(&review("u4", "CREATE", &pod(&pinned), None, false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["reason"], "go");
    let calls = oracle.calls();
    for d in ["amd", "arm"] {
        assert!(
            calls.contains(&Call::Evaluate(digest(d), None)),
            "{calls:?}"
        );
    }
    assert!(!calls.contains(&Call::Evaluate(digest("s390x"), None)));
    hook.stop().await;
}

#[tokio::test]
async fn a_tag_of_an_index_is_denied_until_arm64_is_analyzed_and_then_judged_on_it() {
    let oracle = Arc::new(FakeOracle::default());
    let (tag, _) = multi_arch(&oracle);
    oracle.analyzed(&digest("amd"));
    let hook = start(oracle.clone(), |_| {}).await;
    let r = hook
        .post(&review("t1", "CREATE", &pod(&tag), None, false))
        .await;
    assert_eq!(r["allowed"], false, "only amd64 is analyzed: {r}");
    assert!(message(&r).contains("for platform linux/arm64"), "{r}");
    assert_eq!(
        oracle.enqueued(),
        vec![digest("arm")],
        "arm64 queued, amd64 not again"
    );
    assert!(oracle.calls().contains(&Call::EnqueuePlatform(
        digest("arm"),
        digest("index"),
        "linux/arm64".into()
    )));
    // arm64 analyzed but stopped by policy (amd64 passes): the index is denied, naming arm64.
    oracle.analyzed(&digest("arm"));
    oracle.verdicts.lock().unwrap().insert(
        digest("arm"),
        Verdict {
            outcome: Outcome::Stop,
            bundle: "strict".into(),
            unmapped: false,
            findings: vec![Finding {
                trigger: "packages.blacklist".into(),
                outcome: Outcome::Stop,
                message: "busybox on arm64".into(),
                unevaluable: false,
            }],
        },
    );
    let r = hook
        .post(&review("t2", "CREATE", &pod(&tag), None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = message(&r);
    assert!(
        msg.contains(&format!("for platform linux/arm64 ({})", digest("arm")))
            && msg.contains("packages.blacklist: busybox on arm64"),
        "{msg}"
    );
    assert_eq!(r["auditAnnotations"]["reason"], "stop");
    // The tag was resolved once (then cached), the index never treated as one image.
    let resolves = oracle
        .calls()
        .iter()
        .filter(|c| matches!(c, Call::Resolve(_)))
        .count();
    assert_eq!(resolves, 1);
    assert!(!oracle.calls().contains(&Call::State(digest("index"))));
    hook.stop().await;
}

#[tokio::test]
async fn an_index_with_none_of_the_platforms_is_denied_and_platforms_are_configurable() {
    let oracle = Arc::new(FakeOracle::default());
    let (tag, _) = multi_arch(&oracle);
    oracle.analyzed(&digest("s390x"));
    let hook = start(oracle.clone(), |c| {
        c.platforms = vec!["windows/amd64".into()];
    })
    .await;
    let r = hook
        .post(&review("n1", "CREATE", &pod(&tag), None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = message(&r);
    assert!(
        msg.contains("for none of the platforms in services.webhook.platforms (windows/amd64)")
            && msg.contains("it has: linux/amd64, linux/arm64, linux/s390x"),
        "{msg}"
    );
    assert_eq!(r["auditAnnotations"]["reason"], "unsupported");
    assert!(oracle.enqueued().is_empty());
    hook.stop().await;

    // Only s390x configured: the one analyzed platform decides.
    let oracle = Arc::new(FakeOracle::default());
    let (tag, _) = multi_arch(&oracle);
    oracle.analyzed(&digest("s390x"));
    let hook = start(oracle.clone(), |c| c.platforms = vec!["linux/s390x".into()]).await;
    let r = hook
        .post(&review("n2", "CREATE", &pod(&tag), None, false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    hook.stop().await;
}

#[tokio::test]
async fn a_registry_that_refuses_fathom_denies_whatever_the_failure_policy() {
    let oracle = Arc::new(FakeOracle::default());
    let private = "registry.test/private/app:1";
    let hostile = "registry.test/hostile/app:1";
    let flaky = "registry.test/flaky/app:1";
    let pinned = format!("registry.test/private/app@{}", digest("private"));
    oracle.refuse(
        private,
        OracleError::Refused("unauthorized at registry registry.test: HTTP 401".into()),
    );
    oracle.refuse(
        &pinned,
        OracleError::Refused("unauthorized at registry registry.test: HTTP 403".into()),
    );
    oracle.refuse(
        hostile,
        OracleError::Unsupported("invalid image manifest: larger than 16777216 bytes".into()),
    );
    oracle.refuse(
        flaky,
        OracleError::Unavailable("cannot reach registry registry.test".into()),
    );
    for mode in [Mode::Policy, Mode::Analysis] {
        let hook = start(oracle.clone(), |c| {
            c.default_mode = mode;
            c.failure_policy = FailurePolicy::Allow;
        })
        .await;
        for (uid, image, reason, said) in [
            ("r1", private, "registry_refused", "HTTP 401"),
            ("r2", pinned.as_str(), "registry_refused", "HTTP 403"),
            ("r3", hostile, "unsupported", "larger than 16777216 bytes"),
        ] {
            let r = hook
                .post(&review(uid, "CREATE", &pod(image), None, false))
                .await;
            assert_eq!(r["allowed"], false, "{mode:?} {image}: {r}");
            assert_eq!(r["auditAnnotations"]["reason"], reason, "{r}");
            assert!(message(&r).contains(said), "{r}");
            assert!(!message(&r).contains("failure_policy"), "{r}");
        }
        // Unreachable is not an answer about the image: the failure policy decides (allow here).
        let r = hook
            .post(&review("r4", "CREATE", &pod(flaky), None, false))
            .await;
        assert_eq!(r["allowed"], true, "{r}");
        assert!(
            message(&r).contains("services.webhook.failure_policy"),
            "{r}"
        );
        hook.stop().await;
    }
    assert!(
        oracle.enqueued().is_empty(),
        "nothing unresolvable is queued"
    );
    // A digest the store knows needs no registry: analyzed stays admitted though the registry refuses.
    oracle
        .states
        .lock()
        .unwrap()
        .insert(digest("private"), AnalysisState::Analyzed);
    let hook = start(oracle.clone(), |_| {}).await;
    let r = hook
        .post(&review("r5", "CREATE", &pod(&pinned), None, false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    hook.stop().await;
}

#[tokio::test]
async fn an_unknown_digest_is_denied_as_unanalyzed_even_when_its_registry_is_unreachable() {
    let oracle = Arc::new(FakeOracle::default());
    let pinned = format!("{APP}@{}", digest("never"));
    oracle.refuse(
        &pinned,
        OracleError::Unavailable("cannot reach registry registry.test".into()),
    );
    let hook = start(oracle.clone(), |_| {}).await;
    let r = hook
        .post(&review("d1", "CREATE", &pod(&pinned), None, true))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("dry run: no analysis was queued"),
        "{r}"
    );
    let r = hook
        .post(&review("d2", "CREATE", &pod(&pinned), None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(oracle.enqueued(), vec![digest("never")]);
    hook.stop().await;
}

#[tokio::test]
async fn each_platform_of_an_index_pinned_by_digest_is_judged_not_left_to_the_failure_policy() {
    // Both platform manifests analyzed, but not as entries of this index (on their own, or from another
    // index that shares them): the verdict is still the policy's. arm64 is STOPped; with
    // `failure_policy: allow` an evaluation asked under the index digest failed and admitted it.
    let oracle = Arc::new(FakeOracle::default());
    let (tag, pinned) = multi_arch(&oracle);
    oracle.analyzed(&digest("amd"));
    oracle.analyzed(&digest("arm"));
    oracle.verdicts.lock().unwrap().insert(
        digest("arm"),
        Verdict {
            outcome: Outcome::Stop,
            bundle: "strict".into(),
            unmapped: false,
            findings: vec![Finding {
                trigger: "packages.blacklist".into(),
                outcome: Outcome::Stop,
                message: "bash".into(),
                unevaluable: false,
            }],
        },
    );
    let hook = start(oracle.clone(), |c| c.failure_policy = FailurePolicy::Allow).await;
    let tagged_pin = format!("{tag}@{}", digest("index"));
    let entries = [
        ("linux/amd64", digest("amd")),
        ("linux/arm64", digest("arm")),
    ];
    let entries: Vec<(&str, &str)> = entries.iter().map(|(p, d)| (*p, d.as_str())).collect();
    oracle.index(&tagged_pin, &digest("index"), &entries);
    for (uid, image) in [("i1", pinned.as_str()), ("i2", tagged_pin.as_str())] {
        let r = hook
            .post(&review(uid, "CREATE", &pod(image), None, false))
            .await;
        assert_eq!(r["allowed"], false, "{image}: {r}");
        assert_eq!(r["auditAnnotations"]["reason"], "stop", "{image}: {r}");
        let msg = message(&r);
        assert!(
            msg.contains("for platform linux/arm64") && msg.contains("packages.blacklist"),
            "{msg}"
        );
    }
    // GO on every platform: admitted on the policy's word, not by failure policy.
    oracle.verdicts.lock().unwrap().clear();
    let r = hook
        .post(&review("i3", "CREATE", &pod(&pinned), None, false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["reason"], "go", "{r}");
    assert!(r["warnings"].is_null(), "{r}");
    hook.stop().await;
}

#[tokio::test]
async fn a_bundle_the_policy_engine_no_longer_has_denies_and_is_not_left_to_the_failure_policy() {
    // The bundle was deleted behind the webhook's back (by a process that does not protect it): every
    // evaluation answers 404. That is no outage fathom may wait out; admitting by failure policy would
    // wave every image through unchecked.
    let oracle = Arc::new(FakeOracle::default());
    let image = "registry.test/shop/web:1";
    oracle.tag(image, &digest("web"));
    oracle.analyzed(&digest("web"));
    oracle.missing_bundles.lock().unwrap().push("strict".into());
    let hook = start(oracle.clone(), |c| {
        c.failure_policy = FailurePolicy::Allow;
        c.bundle = Some("strict".into());
    })
    .await;
    let r = hook
        .post(&review("b1", "CREATE", &pod(image), None, false))
        .await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = message(&r);
    assert!(msg.contains("no policy bundle \"strict\""), "{msg}");
    assert!(!msg.contains("failure_policy"), "{msg}");
    hook.stop().await;
}
