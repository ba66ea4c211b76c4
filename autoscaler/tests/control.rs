//! The control loop driving real worker processes (local target) from a queue the test fills and drains.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fathom_autoscaler::local::{LocalConfig, LocalTarget, WorkerCommand};
use fathom_autoscaler::{
    Autoscaler, BusyMap, LoopConfig, Metrics, OverrideOp, Policy, QueueSnapshot, Reason,
    ScaleTarget, SetOutcome, StatsSource,
};
use tokio::sync::Notify;

/// A queue stand-in: counts the test sets, and which worker holds how many jobs.
#[derive(Clone, Default)]
struct Queue(Arc<Mutex<(QueueSnapshot, BusyMap)>>);

impl Queue {
    fn set(&self, queued: u64, busy: &[(&str, u32)]) {
        let mut q = self.0.lock().unwrap();
        q.1 = busy.iter().map(|&(id, n)| (id.to_string(), n)).collect();
        q.0 = QueueSnapshot {
            queued,
            running: q.1.values().map(|&n| u64::from(n)).sum(),
            oldest_queued_age: None,
            ..Default::default()
        };
    }
}

impl StatsSource for Queue {
    async fn snapshot(&self) -> fathom_autoscaler::Result<QueueSnapshot> {
        Ok(self.0.lock().unwrap().0)
    }
    async fn busy(&self) -> fathom_autoscaler::Result<BusyMap> {
        Ok(self.0.lock().unwrap().1.clone())
    }
}

fn local(dir: &Path) -> LocalTarget {
    let script = r#"trap 'exit 0' TERM; while :; do sleep 0.05; done"#;
    LocalTarget::new(LocalConfig {
        command: WorkerCommand {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![],
        },
        id_prefix: "w".into(),
        drain_timeout: Duration::from_secs(5),
        override_file: dir.join("override.json"),
        metrics_host: None,
    })
}

fn policy() -> Policy {
    Policy {
        jobs_per_replica: 2,
        min_replicas: 0,
        max_replicas: 4,
        activation_queued: 0,
        max_scale_up_step: 10,
        scale_down_stabilization: Duration::from_secs(60),
        scale_to_zero_cooldown: Duration::from_secs(120),
        ..Policy::default()
    }
}

/// A value from the registry's text exposition (what Prometheus would scrape).
fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let base = series.split('{').next().unwrap_or("");
        if base == name
            && labels
                .iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        {
            return value.parse().unwrap();
        }
    }
    panic!("metric {name}{labels:?} not in:\n{text}");
}

#[tokio::test]
async fn burst_override_drain_and_scale_to_zero_with_real_workers() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::default();
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    let cfg = LoopConfig {
        policy: policy(),
        ..LoopConfig::default()
    };
    let mut a = Autoscaler::new(local(dir.path()), queue.clone(), cfg, Some(metrics)).unwrap();
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);

    // Burst: 6 queued / 2 per replica → 3 workers.
    queue.set(6, &[]);
    let s = a.tick(at(0)).await.unwrap();
    assert_eq!(
        s.decision.as_ref().map(|d| (d.desired, d.reason)),
        Some((3, Reason::Burst))
    );
    assert_eq!(s.outcome, Some(SetOutcome::Written));
    assert_eq!(a.target().worker_ids().await, ["w-1", "w-2", "w-3"]);
    assert_eq!(
        metric(
            &registry,
            "fathom_autoscaler_scale_events_total",
            &[("direction", "up"), ("reason", "burst")]
        ),
        1.0
    );
    assert_eq!(
        metric(&registry, "fathom_autoscaler_desired_replicas", &[]),
        3.0
    );
    assert_eq!(
        metric(
            &registry,
            "fathom_autoscaler_queue_jobs",
            &[("state", "queued")]
        ),
        6.0
    );

    // Operator pins 1 while w-2 holds both running jobs: the idle w-1 and w-3 go, w-2 stays.
    a.target().apply_override(OverrideOp::Pin(1)).await.unwrap();
    queue.set(0, &[("w-2", 2)]);
    let s = a.tick(at(1)).await.unwrap();
    assert_eq!(
        s.decision.as_ref().map(|d| (d.desired, d.reason)),
        Some((1, Reason::Pinned))
    );
    assert_eq!(a.target().worker_ids().await, ["w-2"]);
    assert_eq!(
        metric(
            &registry,
            "fathom_autoscaler_override",
            &[("mode", "pinned")]
        ),
        1.0
    );
    assert_eq!(
        metric(&registry, "fathom_autoscaler_override_replicas", &[]),
        1.0
    );

    // Cleared and drained: the window still holds 3, so no change yet.
    a.target().apply_override(OverrideOp::Clear).await.unwrap();
    queue.set(0, &[]);
    let s = a.tick(at(2)).await.unwrap();
    assert_eq!(
        s.decision.as_ref().map(|d| (d.desired, d.reason)),
        Some((1, Reason::Stabilized))
    );
    assert_eq!(s.outcome, None);
    assert_eq!(
        metric(&registry, "fathom_autoscaler_override", &[("mode", "none")]),
        1.0
    );

    // Paused: a burst changes nothing.
    a.target().apply_override(OverrideOp::Pause).await.unwrap();
    queue.set(40, &[]);
    let s = a.tick(at(3)).await.unwrap();
    assert_eq!(s.decision.as_ref().map(|d| d.reason), Some(Reason::Paused));
    assert_eq!(a.target().worker_ids().await, ["w-2"]);
    a.target().apply_override(OverrideOp::Resume).await.unwrap();

    // Idle past the window and the cooldown: to zero.
    queue.set(0, &[]);
    a.tick(at(4)).await.unwrap();
    let s = a.tick(at(200)).await.unwrap();
    assert_eq!(
        s.decision.as_ref().map(|d| (d.desired, d.reason)),
        Some((0, Reason::Idle))
    );
    assert!(a.target().worker_ids().await.is_empty());
    let exits = a.target().wait_drained().await;
    assert_eq!(exits.len(), 3, "{exits:?}");
    assert_eq!(
        metric(
            &registry,
            "fathom_autoscaler_scale_events_total",
            &[("direction", "down"), ("reason", "idle")]
        ),
        1.0
    );
}

#[tokio::test]
async fn a_nudge_runs_a_round_at_once_and_errors_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::default();
    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry).unwrap();
    // An hour between polls: only the nudge can explain a prompt scale-up.
    let cfg = LoopConfig {
        policy: policy(),
        poll_interval: Duration::from_secs(3600),
        min_interval: Duration::from_millis(10),
    };
    let a = Autoscaler::new(local(dir.path()), queue.clone(), cfg, Some(metrics)).unwrap();
    let mut status = a.status();
    let nudge = Arc::new(Notify::new());
    let stop = Arc::new(Notify::new());
    let stopped = stop.clone();
    let running = tokio::spawn(a.run(nudge.clone(), async move { stopped.notified().await }));

    // The first round (empty queue) happens at start; wait for it, then enqueue and nudge.
    tokio::time::timeout(Duration::from_secs(5), status.changed())
        .await
        .unwrap()
        .unwrap();
    queue.set(4, &[]);
    nudge.notify_one();
    tokio::time::timeout(Duration::from_secs(5), status.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.borrow().decision.as_ref().map(|d| d.desired),
        Some(2)
    );

    // A broken override file fails the round: counted, reported, loop still alive.
    std::fs::write(dir.path().join("override.json"), b"garbage").unwrap();
    nudge.notify_one();
    tokio::time::timeout(Duration::from_secs(5), status.changed())
        .await
        .unwrap()
        .unwrap();
    assert!(status
        .borrow()
        .error
        .as_deref()
        .unwrap_or("")
        .contains("override.json"));
    assert_eq!(
        metric(
            &registry,
            "fathom_autoscaler_decision_errors_total",
            &[("kind", "bad_override")]
        ),
        1.0
    );

    stop.notify_one();
    let a = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.target().stop_all().await.len(), 2);
}

#[test]
fn an_invalid_policy_is_rejected_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LoopConfig {
        policy: Policy {
            jobs_per_replica: 0,
            ..policy()
        },
        ..LoopConfig::default()
    };
    let err = Autoscaler::new(local(dir.path()), Queue::default(), cfg, None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("jobs_per_replica"), "{err}");
}
