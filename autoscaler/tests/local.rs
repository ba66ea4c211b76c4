//! The local-process target with real child processes (`sh` scripts that record their `POD_NAME` and
//! trap SIGTERM), not mocks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fathom_autoscaler::local::{ExitKind, LocalConfig, LocalTarget, WorkerCommand};
use fathom_autoscaler::{BusyMap, Override, OverrideOp, ScaleTarget, SetOutcome};

/// A worker that writes `started` to `$dir/$POD_NAME`, and on SIGTERM appends `drained` and exits 0.
const GOOD: &str = r#"echo started > "$1/$POD_NAME"; trap 'echo drained >> "$1/$POD_NAME"; exit 0' TERM; while :; do sleep 0.05; done"#;
/// A worker that ignores SIGTERM.
const STUBBORN: &str =
    r#"echo started > "$1/$POD_NAME"; trap '' TERM; while :; do sleep 0.05; done"#;

fn target(dir: &Path, script: &str, drain: Duration) -> LocalTarget {
    LocalTarget::new(target_config(dir, script, drain))
}

fn target_config(dir: &Path, script: &str, drain: Duration) -> LocalConfig {
    LocalConfig {
        command: WorkerCommand {
            program: "sh".into(),
            args: vec![
                "-c".into(),
                script.into(),
                "worker".into(),
                dir.as_os_str().to_owned(),
            ],
            env: vec![],
        },
        id_prefix: "w".into(),
        drain_timeout: drain,
        override_file: dir.join("override.json"),
        metrics_host: None,
    }
}

/// Waits (bounded) until `path` holds `want`; processes start asynchronously.
async fn wait_for(path: PathBuf, want: &str) -> String {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(&path) {
            if s.contains(want) {
                return s;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{} never contained {want:?}", path.display());
}

#[tokio::test]
async fn workers_get_unique_ids_and_idle_ones_are_stopped_first() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(dir.path(), GOOD, Duration::from_secs(5));
    assert_eq!(t.set_replicas(0, 3).await.unwrap(), SetOutcome::Written);
    assert_eq!(t.worker_ids().await, ["w-1", "w-2", "w-3"]);
    for id in ["w-1", "w-2", "w-3"] {
        wait_for(dir.path().join(id), "started").await;
    }
    assert_eq!(t.observe().await.unwrap().replicas, 3);

    // w-1 holds 2 jobs, w-3 one, w-2 none: going to 1 stops w-2 (idle) then w-3 (least busy).
    let busy: BusyMap = [("w-1".to_string(), 2), ("w-3".to_string(), 1)].into();
    t.prepare_scale_in(1, &busy).await.unwrap();
    assert_eq!(t.set_replicas(3, 1).await.unwrap(), SetOutcome::Written);
    assert_eq!(t.worker_ids().await, ["w-1"]);
    assert_eq!(
        t.observe().await.unwrap().replicas,
        1,
        "draining workers no longer count"
    );
    let mut exits = t.wait_drained().await;
    exits.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        exits
            .iter()
            .map(|e| (e.id.as_str(), e.kind))
            .collect::<Vec<_>>(),
        [("w-2", ExitKind::Drained), ("w-3", ExitKind::Drained)]
    );
    wait_for(dir.path().join("w-2"), "drained").await;
    wait_for(dir.path().join("w-3"), "drained").await;
    let w1 = std::fs::read_to_string(dir.path().join("w-1")).unwrap();
    assert!(!w1.contains("drained"), "the busy worker was stopped");

    // Scaling up again never reuses an id.
    t.set_replicas(1, 2).await.unwrap();
    assert_eq!(t.worker_ids().await, ["w-1", "w-4"]);
    let stopped = t.stop_all().await;
    assert_eq!(stopped.len(), 2);
    assert!(
        stopped.iter().all(|e| e.kind == ExitKind::Drained),
        "{stopped:?}"
    );
}

#[tokio::test]
async fn a_worker_ignoring_sigterm_is_killed_after_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(dir.path(), STUBBORN, Duration::from_millis(300));
    t.set_replicas(0, 1).await.unwrap();
    wait_for(dir.path().join("w-1"), "started").await;
    t.set_replicas(1, 0).await.unwrap();
    let exits = t.wait_drained().await;
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0].kind, ExitKind::Killed, "{exits:?}");
    assert!(exits[0].status.contains("signal: 9"), "{exits:?}");
}

#[tokio::test]
async fn crashed_workers_are_reaped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(
        dir.path(),
        r#"echo started > "$1/$POD_NAME"; exit 3"#,
        Duration::from_secs(1),
    );
    t.set_replicas(0, 2).await.unwrap();
    let mut exits = Vec::new();
    for _ in 0..200 {
        exits.extend(t.take_exits().await);
        if exits.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(exits.len(), 2, "{exits:?}");
    assert!(
        exits
            .iter()
            .all(|e| e.kind == ExitKind::Crashed && e.status.contains("3")),
        "{exits:?}"
    );
    assert_eq!(t.observe().await.unwrap().replicas, 0);

    // Crash-looping: no respawn until the backoff (2 s after two quick crashes) has passed.
    match t.set_replicas(0, 2).await.unwrap() {
        SetOutcome::Backoff { retry_in_ms } => {
            assert!((1..=2000).contains(&retry_in_ms), "{retry_in_ms}")
        }
        other => panic!("respawned a crash-looping worker at once: {other:?}"),
    }
    assert!(t.worker_ids().await.is_empty());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(t.set_replicas(0, 1).await.unwrap(), SetOutcome::Written);
    assert_eq!(t.worker_ids().await, ["w-3"]);
}

#[tokio::test]
async fn a_write_from_a_stale_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(dir.path(), GOOD, Duration::from_secs(5));
    t.set_replicas(0, 2).await.unwrap();
    assert_eq!(
        t.set_replicas(5, 1).await.unwrap(),
        SetOutcome::Raced { found: 2 }
    );
    assert_eq!(t.set_replicas(2, 2).await.unwrap(), SetOutcome::Unchanged);
    assert_eq!(t.worker_ids().await.len(), 2);
    t.stop_all().await;
}

#[tokio::test]
async fn override_lives_in_a_file_and_pause_wins_over_a_pin() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(dir.path(), GOOD, Duration::from_secs(1));
    assert_eq!(t.observe().await.unwrap().ov, Override::None);
    t.apply_override(OverrideOp::Pin(4)).await.unwrap();
    assert_eq!(t.observe().await.unwrap().ov, Override::Pinned(4));
    t.apply_override(OverrideOp::Pause).await.unwrap();
    assert_eq!(t.observe().await.unwrap().ov, Override::Paused);
    t.apply_override(OverrideOp::Resume).await.unwrap();
    assert_eq!(t.observe().await.unwrap().ov, Override::Pinned(4));
    // Another target on the same file (e.g. the CLI) sees the same override.
    let cli = target(dir.path(), GOOD, Duration::from_secs(1));
    cli.apply_override(OverrideOp::Clear).await.unwrap();
    assert_eq!(t.observe().await.unwrap().ov, Override::None);

    std::fs::write(dir.path().join("override.json"), b"{ not json").unwrap();
    let err = t.observe().await.unwrap_err().to_string();
    assert!(err.contains("override.json"), "{err}");
}

#[tokio::test]
async fn each_worker_gets_its_own_metrics_address_and_is_told_it() {
    let dir = tempfile::tempdir().unwrap();
    // Records the address it was given instead of `started`.
    let script = r#"echo "$FATHOM_METRICS_ADDRESS" > "$1/$POD_NAME"; trap 'exit 0' TERM; while :; do sleep 0.05; done"#;
    let mut cfg = LocalConfig {
        metrics_host: Some([127, 0, 0, 1].into()),
        ..target_config(dir.path(), script, Duration::from_secs(5))
    };
    // The per-worker address wins over one the command's environment sets for every worker.
    cfg.command
        .env
        .push(("FATHOM_METRICS_ADDRESS".into(), "127.0.0.1:0".into()));
    let t = LocalTarget::new(cfg);
    t.set_replicas(0, 3).await.unwrap();
    let workers = t.workers().await;
    let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["w-1", "w-2", "w-3"]);
    let mut ports = std::collections::BTreeSet::new();
    for w in &workers {
        let addr = w.metrics.expect("a metrics address");
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
        assert!(w.pid.is_some());
        let told = wait_for(dir.path().join(&w.id), ":").await;
        assert_eq!(told.trim(), addr.to_string(), "{}", w.id);
        ports.insert(addr.port());
    }
    assert_eq!(ports.len(), 3, "distinct ports: {workers:?}");
    t.stop_all().await;
    assert!(t.workers().await.is_empty());
}
