//! The Kubernetes target against a scripted API server: exact requests, conflict handling, leases.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;

use super::fixtures::{hpa, mock_client, scaled_object, Scenario, NS};
use super::*;

fn config() -> KubeConfig {
    KubeConfig {
        conflict_retries: 3,
        ..KubeConfig::new(NS, "analyzer")
    }
}

fn lease_config() -> LeaseConfig {
    LeaseConfig::new("me")
}

/// Runs `op` against a target served by `scenario`; the server's assertions fail first, then the op's.
async fn against<T, F, Fut>(scenario: Scenario, op: F) -> T
where
    F: FnOnce(KubeTarget) -> Fut,
    Fut: Future<Output = T>,
{
    let (client, server) = mock_client();
    let verifier = server.run(scenario.steps());
    let target = KubeTarget::new(client, config());
    let out = tokio::time::timeout(Duration::from_secs(5), op(target)).await;
    if let Err(panic) = verifier.await {
        std::panic::resume_unwind(panic.into_panic());
    }
    out.expect("target operation finished")
}

#[tokio::test]
async fn scale_to_n_reads_then_puts_with_the_resource_version() {
    let out = against(Scenario::ScaleTo { from: 2, to: 5 }, |t| async move {
        t.set_replicas(2, 5).await
    })
    .await;
    assert_eq!(out.unwrap(), SetOutcome::Written);
}

#[tokio::test]
async fn conflict_is_reread_and_retried() {
    let s = Scenario::ConflictThenRetry { from: 2, to: 6 };
    let out = against(s, |t| async move { t.set_replicas(2, 6).await }).await;
    assert_eq!(out.unwrap(), SetOutcome::Written);
}

#[tokio::test]
async fn conflict_with_a_changed_count_is_not_clobbered() {
    let s = Scenario::ConflictThenRaced { from: 4, found: 9 };
    let out = against(s, |t| async move { t.set_replicas(4, 3).await }).await;
    assert_eq!(out.unwrap(), SetOutcome::Raced { found: 9 });
}

#[tokio::test]
async fn deletion_costs_mark_idle_pods_cheapest_before_scale_in() {
    let busy: BusyMap = [("pod-b".to_string(), 3)].into();
    let out = against(Scenario::DeletionCosts, |t| async move {
        t.prepare_scale_in(1, &busy).await
    })
    .await;
    out.unwrap();
}

#[tokio::test]
async fn override_and_pause_annotations_are_read() {
    let ann = json!({ OVERRIDE_ANNOTATION: "7" });
    let s = Scenario::Observe {
        replicas: 3,
        annotations: ann,
        hpas: vec![],
        sos: None,
    };
    let seen = against(s, |t| async move { t.observe().await })
        .await
        .unwrap();
    assert_eq!(
        seen,
        Observed {
            replicas: 3,
            ov: Override::Pinned(7),
            conflict: None
        }
    );

    let ann = json!({ OVERRIDE_ANNOTATION: "7", PAUSED_ANNOTATION: "true" });
    let s = Scenario::Observe {
        replicas: 3,
        annotations: ann,
        hpas: vec![],
        sos: None,
    };
    let seen = against(s, |t| async move { t.observe().await })
        .await
        .unwrap();
    assert_eq!(seen.ov, Override::Paused);
}

#[tokio::test]
async fn malformed_override_is_an_error_naming_the_annotation() {
    let ann = json!({ OVERRIDE_ANNOTATION: "lots" });
    // The deployment read fails the parse, so the HPA lists are never requested.
    let (client, server) = mock_client();
    let steps = Scenario::Observe {
        replicas: 3,
        annotations: ann,
        hpas: vec![],
        sos: None,
    }
    .steps()
    .into_iter()
    .take(1)
    .collect();
    let verifier = server.run(steps);
    let err = KubeTarget::new(client, config())
        .observe()
        .await
        .unwrap_err();
    verifier.await.unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("fathom.dev/replicas-override=\"lots\""),
        "{msg}"
    );
    assert!(msg.contains("deployment fathom/analyzer"), "{msg}");
}

#[tokio::test]
async fn an_hpa_on_the_same_deployment_is_reported() {
    let hpas = vec![
        hpa("other-app", "something-else"),
        hpa("analyzer-hpa", "analyzer"),
    ];
    let s = Scenario::Observe {
        replicas: 3,
        annotations: json!({}),
        hpas,
        sos: None,
    };
    let seen = against(s, |t| async move { t.observe().await })
        .await
        .unwrap();
    let conflict = seen.conflict.expect("conflict detected");
    assert!(
        conflict.contains("HorizontalPodAutoscaler fathom/analyzer-hpa"),
        "{conflict}"
    );
}

#[tokio::test]
async fn a_keda_scaled_object_on_the_same_deployment_is_reported() {
    let sos = Some(vec![
        scaled_object("unrelated", "web"),
        scaled_object("analyzer-so", "analyzer"),
    ]);
    let s = Scenario::Observe {
        replicas: 2,
        annotations: json!({}),
        hpas: vec![hpa("web", "web")],
        sos,
    };
    let seen = against(s, |t| async move { t.observe().await })
        .await
        .unwrap();
    let conflict = seen.conflict.expect("conflict detected");
    assert!(
        conflict.contains("KEDA ScaledObject fathom/analyzer-so"),
        "{conflict}"
    );
    // And a cluster with KEDA but no ScaledObject for us is no conflict.
    let sos = Some(vec![scaled_object("unrelated", "web")]);
    let s = Scenario::Observe {
        replicas: 2,
        annotations: json!({}),
        hpas: vec![],
        sos,
    };
    let seen = against(s, |t| async move { t.observe().await })
        .await
        .unwrap();
    assert_eq!(seen.conflict, None);
}

#[tokio::test]
async fn override_operations_patch_the_annotations() {
    use super::fixtures::{deployment, Step, DEPLOY};
    use http::Method;
    for (op, ann) in [
        (OverrideOp::Pin(4), json!({ OVERRIDE_ANNOTATION: "4" })),
        (OverrideOp::Clear, json!({ OVERRIDE_ANNOTATION: null })),
        (OverrideOp::Pause, json!({ PAUSED_ANNOTATION: "true" })),
        (OverrideOp::Resume, json!({ PAUSED_ANNOTATION: null })),
    ] {
        let (client, server) = mock_client();
        let step = Step::new(Method::PATCH, DEPLOY)
            .body(json!({ "metadata": { "annotations": ann } }))
            .reply(200, deployment(3, "50", json!({})));
        let verifier = server.run(vec![step]);
        KubeTarget::new(client, config())
            .apply_override(op)
            .await
            .unwrap();
        verifier.await.unwrap();
    }
}

#[tokio::test]
async fn dry_run_writes_nothing() {
    let (client, server) = mock_client();
    let verifier = server.run(vec![]);
    let target = KubeTarget::new(
        client,
        KubeConfig {
            dry_run: true,
            ..config()
        },
    );
    assert_eq!(target.set_replicas(1, 8).await.unwrap(), SetOutcome::DryRun);
    verifier.await.unwrap();
}

async fn elect(scenario: Scenario, rounds: &[Duration]) -> Vec<bool> {
    let (client, server) = mock_client();
    let verifier = server.run(scenario.steps());
    let mut elector = LeaderElector::new(client, NS, lease_config());
    let t0 = Instant::now();
    let mut out = Vec::new();
    for &at in rounds {
        out.push(elector.try_acquire_or_renew(t0 + at).await.unwrap());
    }
    verifier.await.unwrap();
    out
}

#[tokio::test]
async fn lease_is_created_when_absent() {
    assert_eq!(
        elect(Scenario::LeaseAcquire, &[Duration::ZERO]).await,
        [true]
    );
}

#[tokio::test]
async fn own_lease_is_renewed() {
    assert_eq!(elect(Scenario::LeaseRenew, &[Duration::ZERO]).await, [true]);
}

#[tokio::test]
async fn live_lease_of_another_means_not_leader() {
    let s = Scenario::LeaseHeldByOther {
        rounds: 2,
        takeover: false,
    };
    // 14 s unchanged is still within the 15 s lease duration.
    assert_eq!(
        elect(s, &[Duration::ZERO, Duration::from_secs(14)]).await,
        [false, false]
    );
}

#[tokio::test]
async fn expired_lease_is_taken_over() {
    let s = Scenario::LeaseHeldByOther {
        rounds: 2,
        takeover: true,
    };
    assert_eq!(
        elect(s, &[Duration::ZERO, Duration::from_secs(15)]).await,
        [false, true]
    );
}

/// A fixed queue for driving the loop against the scripted server.
struct FixedQueue(crate::decision::QueueSnapshot);

impl crate::target::StatsSource for FixedQueue {
    async fn snapshot(&self) -> Result<crate::decision::QueueSnapshot> {
        Ok(self.0)
    }
    async fn busy(&self) -> Result<BusyMap> {
        Ok([("pod-b".to_string(), 3)].into())
    }
}

fn burst() -> FixedQueue {
    FixedQueue(crate::decision::QueueSnapshot {
        queued: 40,
        running: 0,
        oldest_queued_age: None,
        ..Default::default()
    })
}

#[tokio::test]
async fn loop_writes_nothing_while_an_hpa_owns_the_deployment() {
    let (client, server) = mock_client();
    let hpas = vec![hpa("analyzer-hpa", "analyzer")];
    let verifier = server.run(
        Scenario::Observe {
            replicas: 2,
            annotations: json!({}),
            hpas,
            sos: None,
        }
        .steps(),
    );
    let registry = prometheus::Registry::new();
    let metrics = crate::metrics::Metrics::register(&registry).unwrap();
    let target = KubeTarget::new(client, config());
    let mut a = crate::control::Autoscaler::new(target, burst(), Default::default(), Some(metrics))
        .unwrap();
    let status = a.tick(Instant::now()).await.unwrap();
    verifier.await.unwrap();
    assert_eq!(
        status.decision.map(|d| d.desired),
        Some(10),
        "the decision is still shown"
    );
    assert_eq!(status.outcome, None);
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("fathom_autoscaler_conflicting_autoscaler 1"),
        "{text}"
    );
}

#[tokio::test]
async fn loop_scales_in_after_marking_deletion_costs() {
    let (client, server) = mock_client();
    // Pinned to 1 with 3 running: deletion costs first, then GET scale → PUT scale.
    let mut steps = Scenario::Observe {
        replicas: 3,
        annotations: json!({ OVERRIDE_ANNOTATION: "1" }),
        hpas: vec![],
        sos: None,
    }
    .steps();
    steps.extend(Scenario::DeletionCosts.steps());
    steps.extend(Scenario::ScaleTo { from: 3, to: 1 }.steps());
    let verifier = server.run(steps);
    let target = KubeTarget::new(client, config());
    let mut a = crate::control::Autoscaler::new(target, burst(), Default::default(), None).unwrap();
    let status = a.tick(Instant::now()).await.unwrap();
    verifier.await.unwrap();
    assert_eq!(status.outcome, Some(SetOutcome::Written));
}

#[tokio::test]
async fn a_follower_neither_reads_nor_writes_the_deployment() {
    let (client, server) = mock_client();
    let verifier = server.run(
        Scenario::LeaseHeldByOther {
            rounds: 1,
            takeover: false,
        }
        .steps(),
    );
    let target = KubeTarget::with_leader_election(client, config(), lease_config());
    let mut a = crate::control::Autoscaler::new(target, burst(), Default::default(), None).unwrap();
    let status = a.tick(Instant::now()).await.unwrap();
    verifier.await.unwrap();
    assert!(!status.leader);
    assert_eq!(status.decision, None);
}

#[tokio::test]
async fn endless_conflicts_give_up_with_an_error_after_the_retries() {
    use super::fixtures::{scale, status, Step, SCALE};
    let mut steps = Vec::new();
    for rv in ["41", "42", "43"] {
        steps.push(Step::get(SCALE).reply(200, scale(2, rv)));
        steps.push(
            Step::new(http::Method::PUT, SCALE)
                .body(json!({ "metadata": { "resourceVersion": rv } }))
                .reply(409, status(409, "Conflict")),
        );
    }
    let (client, server) = mock_client();
    let verifier = server.run(steps);
    let err = KubeTarget::new(client, config())
        .set_replicas(2, 4)
        .await
        .unwrap_err();
    verifier.await.unwrap();
    assert_eq!(err.kind(), "conflict");
    assert!(
        err.to_string()
            .contains("deployment fathom/analyzer: still conflicting after 3 attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn releasing_the_lease_clears_the_holder() {
    use super::fixtures::{lease, Step, LEASE};
    let steps = vec![
        Step::get(LEASE).reply(200, lease(Some("me"), "7")),
        Step::new(http::Method::PUT, LEASE)
            .body(json!({ "metadata": { "resourceVersion": "7" }, "spec": { "holderIdentity": null } }))
            .reply(200, lease(None, "8")),
    ];
    let (client, server) = mock_client();
    let verifier = server.run(steps);
    let target = KubeTarget::with_leader_election(client, config(), lease_config());
    target.release_leadership().await.unwrap();
    verifier.await.unwrap();
}
