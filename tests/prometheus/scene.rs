//! One deployment shape's fleet, scraped by its own Prometheus, and the load an operator's fleet sees.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::json;

use crate::server::Prometheus;
use crate::support::api::Client;
use crate::support::autoscaler::AutoscalerProc;
use crate::support::process::{repo, DeployedCore, Running};
use crate::support::webhook::{review, workload, Hook};
use crate::support::{free_addr, Fleet, WorkerProc};

/// The core's bearer token.
const TOKEN: &str = "prometheus-test-token-0123456789";

/// The two deployment shapes of `deploy/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `deploy/base`: the autoscaler starts the analyzers; Kubernetes discovery labels each target's pod.
    Autoscaler,
    /// `deploy/overlays/manual-replicas`: analyzers started by hand, no autoscaler, and a scrape that
    /// adds no `pod` label (the processes' own `fathom_build_info{pod}` stands in).
    ManualReplicas,
}

pub fn now() -> f64 {
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
pub struct Scene {
    pub fleet: Fleet,
    pub core: Running,
    pub hook: Hook,
    pub api: Client,
    pub workers: Vec<WorkerProc>,
    pub autoscaler: Option<AutoscalerProc>,
    pub prometheus: Prometheus,
    /// When Prometheus began scraping (Unix seconds): the dashboard's range starts here.
    pub start: f64,
}

pub async fn scene(shape: Shape) -> Scene {
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

/// What an operator's fleet does in a few minutes, compressed: images analyzed through the API, a tag
/// watch, two mistyped references, one job that dies (its registry never answers), policy checks, AdmissionReviews
/// of an analyzed and of an unknown image (queued, analyzed, then admitted), client errors.
pub async fn drive(s: &Scene) {
    let api = &s.api;
    let analyzed = &s.fleet.refs[0];
    api.submit_and_wait(analyzed).await;
    // A tag watch: the catalog resolves it at once and keeps looking.
    let (status, watch) = api
        .post("/v1/watches", json!({"reference": analyzed}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
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
