//! Dashboards and alerts hold in every deployment shape, proven against a real Prometheus (Debian's
//! `prometheus`): it scrapes a real core (the deployment's ConfigMap: API, admission webhook, feed cycle,
//! catalog), real analyzers and, in one shape, the autoscaler, while images, a tag watch, mistyped
//! references, a job that dies, policy checks and AdmissionReviews run; then every dashboard target and
//! every rule is evaluated through its HTTP API. Every target parses; every panel has data unless listed
//! below, with the reason, as empty in that shape; no alert is true on the healthy fleet while each alert's compared value exists
//! (its series are pre-created at 0); and in the manual-replicas shape four restarts of one analyzer make
//! the crash-loop alert true. `tests/metrics_names.rs` checks the names; this checks the answers.

mod support;

#[path = "prometheus/board.rs"]
mod board;
#[path = "prometheus/scene.rs"]
mod scene;
#[path = "prometheus/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::time::Duration;

use scene::{drive, now, scene, Scene, Shape};
use serde_json::json;
use server::{Prometheus, Series};
use support::process::repo;
use support::{http_get, metric, WorkerProc};

/// Panels with nothing to show without an autoscaler, and why.
const EMPTY_WITHOUT_AUTOSCALER: &[(&str, &str)] = &[
    (
        "Autoscaler: analyzer replicas desired vs current vs override",
        "no autoscaler decides replicas: `kubectl scale` does, and the queue row shows the backlog",
    ),
    (
        "Autoscaler: scale events",
        "nothing scales the analyzers but the operator",
    ),
    (
        "Autoscaler: failed rounds by kind, leadership, conflicts",
        "no autoscaler runs rounds",
    ),
    (
        "Autoscaler: round duration p99 and local worker exits",
        "no autoscaler runs rounds or workers",
    ),
    (
        "Autoscaler: work waiting (uncached bytes) and learned throughput per replica",
        "the work figures are the autoscaler's reading of the queue",
    ),
    (
        "Autoscaler: desired replicas by policy (scale_on jobs vs work) and the decision",
        "no autoscaler decides replicas under either policy",
    ),
];

/// Alerts whose compared value reads only the autoscaler's series, and why that is right.
const AUTOSCALER_ALERTS: &[(&str, &str)] = &[
    (
        "FathomAutoscalerPinnedAtMax",
        "its maximum is the autoscaler's",
    ),
    (
        "FathomReplicaOverrideLeftOn",
        "the override is an autoscaler setting",
    ),
    (
        "FathomConflictingAutoscaler",
        "the autoscaler is what detects an HPA or KEDA",
    ),
];

impl Shape {
    fn empty_panels(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Autoscaler => &[],
            Shape::ManualReplicas => EMPTY_WITHOUT_AUTOSCALER,
        }
    }

    fn valueless_alerts(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Shape::Autoscaler => &[],
            Shape::ManualReplicas => AUTOSCALER_ALERTS,
        }
    }
}

/// Every rule loaded, evaluated, and without error.
async fn rules_evaluate(prometheus: &Prometheus, rules: &[board::Rule]) {
    let groups = prometheus.api("rules").await["groups"].clone();
    let loaded: Vec<&serde_json::Value> = groups
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .collect();
    assert_eq!(loaded.len(), rules.len(), "{groups:#}");
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule:#}");
        assert!(
            rule["lastError"].as_str().unwrap_or_default().is_empty(),
            "{rule:#}"
        );
    }
}

/// Each panel's title and whether it has data over the range; a target Prometheus refuses is an error.
async fn panel_data(s: &Scene) -> (Vec<(String, bool)>, Vec<String>) {
    let range = (now() - s.start).ceil() as u64;
    let (mut out, mut errors) = (Vec::new(), Vec::new());
    for panel in board::panels(&repo().join("deploy/grafana/fathom.json")) {
        let mut data = false;
        for target in &panel.targets {
            let expr = match board::grafana_expr(&target.expr, range, 1, 1) {
                Ok(e) => e,
                Err(e) => {
                    errors.push(format!("{}: {e}", panel.title));
                    continue;
                }
            };
            let answer = if target.instant {
                s.prometheus.query(&expr).await
            } else {
                s.prometheus.query_range(&expr, s.start, 1).await
            };
            match answer {
                Ok(series) if series.iter().any(Series::has_data) => data = true,
                // Fine while another target of the panel has data; shown to explain a sparse panel.
                Ok(_) => eprintln!("no data yet: {} / {expr}", panel.title),
                Err(e) => errors.push(format!("{}: {expr}: {e}", panel.title)),
            }
        }
        out.push((panel.title, data));
    }
    (out, errors)
}

/// The alerts true now (their expressions' answers), and the compared values with no series.
async fn alert_states(
    prometheus: &Prometheus,
    rules: &[board::Rule],
) -> (Vec<String>, BTreeSet<String>) {
    let (mut firing, mut valueless) = (Vec::new(), BTreeSet::new());
    for rule in rules.iter().filter(|r| r.alert.is_some()) {
        let answer = prometheus
            .query(&rule.expr)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", rule.name()));
        if !answer.is_empty() {
            firing.push(format!("{} {answer:?}", rule.name()));
        }
        let value = prometheus
            .query(board::value_part(&rule.expr))
            .await
            .unwrap_or_else(|e| panic!("{} (value): {e}", rule.name()));
        if value.is_empty() {
            valueless.insert(rule.name().to_string());
        }
    }
    (firing, valueless)
}

/// The checks both shapes share; the scene afterwards, for shape-specific ones.
async fn dashboards_and_alerts_hold(shape: Shape) -> Scene {
    let s = scene(shape).await;
    drive(&s).await;
    let rules = board::rules(&repo().join("deploy/prometheus/rules.yaml"));
    rules_evaluate(&s.prometheus, &rules).await;

    let (panels, errors) = panel_data(&s).await;
    assert!(
        errors.is_empty(),
        "targets Prometheus refuses:\n{}",
        errors.join("\n")
    );
    let empty: BTreeSet<&str> = panels
        .iter()
        .filter(|(_, data)| !data)
        .map(|(t, _)| t.as_str())
        .collect();
    let expected: BTreeSet<&str> = shape.empty_panels().iter().map(|(t, _)| *t).collect();
    eprintln!(
        "{shape:?}: {} of {} panels have data; empty: {empty:?}",
        panels.len() - empty.len(),
        panels.len()
    );
    assert_eq!(
        empty, expected,
        "{shape:?}: panels without data differ from the ones listed as empty by design"
    );

    let (firing, valueless) = alert_states(&s.prometheus, &rules).await;
    assert!(
        firing.is_empty(),
        "{shape:?}: alerts true on a healthy fleet:\n{}",
        firing.join("\n")
    );
    let active = s.prometheus.api("alerts").await["alerts"].clone();
    assert_eq!(active, json!([]), "{shape:?}: pending or firing alerts");
    let expected: BTreeSet<String> = shape
        .valueless_alerts()
        .iter()
        .map(|(a, _)| a.to_string())
        .collect();
    assert_eq!(
        valueless, expected,
        "{shape:?}: alerts whose compared value has no series (not pre-created at 0?)"
    );

    // The 5xx ratio of a healthy core is 0, not nothing: every route's 5xx series exists from the start.
    let errors_rule = rules
        .iter()
        .find(|r| r.name() == "FathomApiServerErrors")
        .expect("the 5xx alert");
    let ratio = s
        .prometheus
        .query(board::value_part(&errors_rule.expr))
        .await
        .expect("5xx ratio");
    assert_eq!(ratio.len(), 1, "{ratio:?}");
    assert_eq!(ratio[0].values, [0.0], "{ratio:?}");
    // Two typos and a dead job of four analyses: a ratio far past the threshold, yet no alert on so
    // quiet a fleet (the volume floor).
    let failures = rules
        .iter()
        .find(|r| r.name() == "FathomAnalysisFailureRate")
        .expect("the failure-rate alert");
    let ratio = s
        .prometheus
        .query(board::value_part(&failures.expr))
        .await
        .expect("failure ratio");
    assert!(
        ratio.len() == 1 && ratio[0].values[0] > 0.2,
        "the typos should weigh: {ratio:?}"
    );
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_hold_with_the_autoscaler() {
    let s = dashboards_and_alerts_hold(Shape::Autoscaler).await;
    // The Kubernetes-discovery shape: the per-pod series carry the scrape's pod label.
    let up = s
        .prometheus
        .query("fathom_worker_database_up * on (job, instance) group_left (pod) fathom_build_info")
        .await
        .expect("database up by pod");
    let pods: BTreeSet<&str> = up.iter().map(|x| x.labels["pod"].as_str()).collect();
    assert_eq!(pods.len(), 2, "{up:?}");
    assert!(pods.iter().all(|p| p.contains("-worker-")), "{up:?}");
    drop(s.autoscaler);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_hold_with_manual_replicas_and_a_crash_loop_shows() {
    let mut s = dashboards_and_alerts_hold(Shape::ManualReplicas).await;
    let crash = board::rules(&repo().join("deploy/prometheus/rules.yaml"))
        .into_iter()
        .find(|r| r.name() == "FathomCrashLooping")
        .expect("the crash-loop alert");
    // One analyzer restarts four times on its pod's address (as a container restart does); it claims
    // nothing in between, so no counter of its ever moves.
    let victim = s.workers.remove(0);
    let (name, addr) = (victim.name.clone(), victim.metrics.clone());
    drop(victim);
    for restart in 1..=4 {
        let worker = WorkerProc::start_at(
            s.fleet.path(),
            &name,
            s.fleet.url(),
            &s.fleet.spec(),
            addr.clone(),
        );
        let started = metric(&worker.scrape(), "process_start_time_seconds");
        s.prometheus
            .wait_for(
                "the restarted analyzer's start time",
                &format!("process_start_time_seconds{{instance=\"{addr}\"}}"),
                Duration::from_secs(30),
                |a| a.len() == 1 && (a[0].values[0] - started).abs() < 1e-3,
            )
            .await;
        let answer = s
            .prometheus
            .query(&crash.expr)
            .await
            .expect("crash-loop expr");
        if restart < 4 {
            assert!(answer.is_empty(), "after {restart} restarts: {answer:?}");
            drop(worker);
        } else {
            assert_eq!(answer.len(), 1, "after 4 restarts: {answer:?}");
            let labels = &answer[0].labels;
            // No pod label from this scrape: the process's own (POD_NAME) names it.
            assert_eq!(
                labels.get("pod").map(String::as_str),
                Some(name.as_str()),
                "{labels:?}"
            );
            assert_eq!(
                labels.get("role").map(String::as_str),
                Some("worker"),
                "{labels:?}"
            );
            assert_eq!(labels.get("instance"), Some(&addr), "{labels:?}");
            assert_eq!(answer[0].values, [4.0], "{answer:?}");
            s.workers.push(worker);
        }
    }
    assert!(http_get(&s.core.metrics, "/readyz").is_some());
}
