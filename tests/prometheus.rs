//! Dashboards and alerts hold in every deployment shape, proven against a real Prometheus (Debian's
//! `prometheus`): it scrapes a real core (the deployment's ConfigMap: API, admission webhook, feed cycle),
//! real analyzers and, in one shape, the autoscaler, while images, mistyped references, a job that dies,
//! policy checks and AdmissionReviews run; then every dashboard target and every rule is evaluated
//! through its HTTP API. Every target parses; every panel has data unless listed below, with the reason,
//! as empty in that shape; no alert is true on the healthy fleet while each alert's compared value exists
//! (its series are pre-created at 0); and in the manual-replicas shape four restarts of one analyzer make
//! the crash-loop alert true. `tests/metrics_names.rs` checks the names; this checks the answers.

mod support;

#[path = "prometheus/board.rs"]
mod board;
#[path = "prometheus/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::json;
use server::{Prometheus, Series};
use support::api::Client;
use support::autoscaler::AutoscalerProc;
use support::process::{repo, DeployedCore, Running};
use support::webhook::{review, workload, Hook};
use support::{free_addr, http_get, metric, Fleet, WorkerProc};

/// The core's bearer token.
const TOKEN: &str = "prometheus-test-token-0123456789";

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

/// The two deployment shapes of `deploy/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `deploy/base`: the autoscaler starts the analyzers; Kubernetes discovery labels each target's pod.
    Autoscaler,
    /// `deploy/overlays/manual-replicas`: analyzers started by hand, no autoscaler, and a scrape that
    /// adds no `pod` label (the processes' own `fathom_build_info{pod}` stands in).
    ManualReplicas,
}

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

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// `text` without terminal colour sequences (the log's field names are coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `(worker id, metrics address)` of each worker the local autoscaler logged as started.
fn started_workers(log: &str) -> Vec<(String, String)> {
    plain(log)
        .lines()
        .filter(|l| l.contains("fathom_autoscaler::local") && l.contains("worker started"))
        .filter_map(|l| {
            let id = l.split_once(" worker=")?.1.split_whitespace().next()?;
            let addr = l.split_once("http://")?.1.split('/').next()?;
            Some((id.trim_matches('"').to_string(), addr.to_string()))
        })
        .collect()
}

/// A scrape job of static targets, each with its extra labels.
fn job(name: &str, targets: &[(String, Option<String>)]) -> String {
    let mut out = format!("  - job_name: {name}\n    static_configs:\n");
    for (addr, pod) in targets {
        out += &format!("      - targets: ['{addr}']\n");
        if let Some(pod) = pod {
            out += &format!("        labels: {{pod: '{pod}'}}\n");
        }
    }
    out
}

/// The fleet of one shape, scraped by its own Prometheus.
struct Scene {
    fleet: Fleet,
    core: Running,
    hook: Hook,
    api: Client,
    workers: Vec<WorkerProc>,
    autoscaler: Option<AutoscalerProc>,
    prometheus: Prometheus,
    /// When Prometheus began scraping (Unix seconds): the dashboard's range starts here.
    start: f64,
}

async fn scene(shape: Shape) -> Scene {
    let fleet = Fleet::direct(&["alpine-apk", "rocky-rpm"]).await;
    let dir = fleet.path().to_path_buf();
    let feeds = dir.join("feeds");
    std::fs::create_dir_all(&feeds).expect("feeds dir");
    fathom_testkit::osv::write_sample_feed(&feeds, false).expect("sample feed");
    let mut core = DeployedCore::new(&dir, fleet.url(), TOKEN);
    core.command
        .env("FATHOM_SERVICES_FEEDS_BASE_URL", &feeds)
        .env("FATHOM_SERVICES_FEEDS_REMATCH_INTERVAL", "1s")
        .env("FATHOM_SERVICES_API_QUEUE_STATS_INTERVAL", "1s")
        .env("FATHOM_REGISTRY_INSECURE", &fleet.host)
        .env("POD_NAME", "fathom-core-0");
    let port: u16 = core
        .webhook
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .expect("webhook port");
    let hook = Hook::new(&core.tls, port);
    let core = Running::spawn("fathom run (core)", core.command, core.api, &dir);
    let api = Client {
        base: format!("http://{}", core.metrics),
        http: reqwest::Client::new(),
        token: Some(TOKEN.to_string()),
    };
    let (workers, autoscaler, scrape) = match shape {
        Shape::ManualReplicas => {
            let workers: Vec<WorkerProc> = ["fathom-analyzer-a", "fathom-analyzer-b"]
                .iter()
                .map(|name| {
                    WorkerProc::start_at(&dir, name, fleet.url(), &fleet.spec(), free_addr())
                })
                .collect();
            let unlabelled = |addr: &str| (addr.to_string(), None);
            let scrape = job("fathom-core", &[unlabelled(&core.metrics)])
                + &job(
                    "fathom-analyzer",
                    &workers
                        .iter()
                        .map(|w| unlabelled(&w.metrics))
                        .collect::<Vec<_>>(),
                );
            (workers, None, scrape)
        }
        Shape::Autoscaler => {
            let autoscaler = AutoscalerProc::command(
                &fleet,
                &[
                    "--min-replicas",
                    "2",
                    "--max-replicas",
                    "2",
                    "--poll-interval",
                    "1s",
                ],
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            let started = loop {
                let started = started_workers(&autoscaler.log_text());
                if started.len() >= 2 {
                    break started;
                }
                assert!(
                    Instant::now() < deadline,
                    "the autoscaler started no 2 workers:\n{}",
                    autoscaler.log_text()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let labelled = |addr: &str, pod: &str| (addr.to_string(), Some(pod.to_string()));
            let scrape = job("fathom-core", &[labelled(&core.metrics, "fathom-core-0")])
                + &job(
                    "fathom-analyzer",
                    &started
                        .iter()
                        .map(|(id, addr)| labelled(addr, id))
                        .collect::<Vec<_>>(),
                )
                + &job(
                    "fathom-autoscaler",
                    &[labelled(&autoscaler.metrics, "fathom-autoscaler-0")],
                );
            (Vec::new(), Some(autoscaler), scrape)
        }
    };
    let prometheus =
        Prometheus::start(&dir, &repo().join("deploy/prometheus/rules.yaml"), &scrape).await;
    let start = now();
    let targets = scrape.matches("- targets:").count();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = prometheus.api("targets").await["activeTargets"].clone();
        let up = active
            .as_array()
            .map_or(0, |t| t.iter().filter(|t| t["health"] == "up").count());
        if up == targets {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every target is up: {active:#}\n{}",
            prometheus.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Scene {
        fleet,
        core,
        hook,
        api,
        workers,
        autoscaler,
        prometheus,
        start,
    }
}

/// What an operator's fleet does in a few minutes, compressed: images analyzed through the API, two
/// mistyped references, one job that dies (its registry never answers), policy checks, AdmissionReviews
/// of an analyzed and of an unknown image (queued, analyzed, then admitted), client errors.
async fn drive(s: &Scene) {
    let api = &s.api;
    let analyzed = &s.fleet.refs[0];
    api.submit_and_wait(analyzed).await;
    let repo = analyzed.rsplit_once(':').expect("repo:tag").0;
    for typo in ["v1-typo", "latset"] {
        let (status, job) = api
            .post("/v1/images", json!({"reference": format!("{repo}:{typo}")}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let done = api.wait_done(job["job_id"].as_i64().expect("job id")).await;
        assert_eq!(done["status"], "failed", "{done}");
    }
    // Nothing listens on port 9: a retryable failure on the only attempt, so the job dies.
    let unreachable = "127.0.0.1:9/nowhere/image:v1".to_string();
    s.fleet.submit(std::slice::from_ref(&unreachable), 1).await;
    s.fleet
        .db
        .wait_for(
            std::slice::from_ref(&unreachable),
            Duration::from_secs(60),
            |e| e.status == "failed",
        )
        .await;
    let digest = s.fleet.digest(0);
    for _ in 0..3 {
        let (status, check) = api.get(&format!("/v1/images/{digest}/check")).await;
        assert_eq!(status, StatusCode::OK, "{check}");
    }
    let admitted = s
        .hook
        .admit(&review(
            "analyzed",
            &workload("Deployment", "shop", &[("web", analyzed)], &[]),
            false,
        ))
        .await;
    // Checked against the default bundle (the sample feed's HIGH vulnerabilities may stop it).
    let decided = |r: &serde_json::Value| {
        matches!(
            r["auditAnnotations"]["reason"].as_str(),
            Some("go" | "warn" | "stop")
        )
    };
    assert!(decided(&admitted), "{admitted}");
    let unknown = &s.fleet.refs[1];
    let pod = workload("Pod", "shop", &[("db", unknown)], &[]);
    let denied = s.hook.admit(&review("unknown", &pod, false)).await;
    assert_eq!(denied["allowed"], false, "{denied}");
    assert!(
        denied["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("analysis was queued")),
        "{denied}"
    );
    let pinned = format!(
        "{}@{}",
        unknown.rsplit_once(':').expect("repo:tag").0,
        s.fleet.digest(1)
    );
    s.fleet
        .wait_analyzed(std::slice::from_ref(&pinned), Duration::from_secs(120))
        .await;
    let later = s.hook.admit(&review("later", &pod, false)).await;
    assert!(decided(&later), "{later}");
    let (status, _) = api.get("/v1/images/sha256:0000/packages").await;
    assert!(status.is_client_error(), "{status}");
    let (status, _) = api.anonymous().get("/v1/queue").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for path in ["/v1/queue", "/v1/feeds", "/v1/images"] {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    // Every scrape after the last request, and a full rate window of them, before anything is read.
    tokio::time::sleep(Duration::from_secs(6)).await;
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
                Ok(series) => data |= series.iter().any(Series::has_data),
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
