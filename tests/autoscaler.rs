//! The autoscaler end to end with its local target: real Postgres, the real registry (behind a slow
//! proxy so analyses take seconds), and real `fathom autoscaler` / `fathom run` processes spawning real
//! `fathom worker` processes; `fathom scale` drives the override.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fathom_testkit::samples::{sample_images, SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, Compress};
use support::{cli, fathom, free_port, http_get, metric, push_image, test_db, Db, Proxy};

/// A running autoscaler process (local target), logging to `dir/autoscaler.log`.
struct AutoscalerProc {
    child: Child,
    metrics: String,
    log: PathBuf,
}

impl AutoscalerProc {
    fn spawn(mut cmd: Command, dir: &Path, database_url: &str, metrics: String) -> AutoscalerProc {
        let log = dir.join("autoscaler.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .env("DATABASE_URL", database_url)
            .env("FATHOM_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn fathom");
        let p = AutoscalerProc {
            child,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&p.metrics, "/readyz").is_none_or(|(s, _)| s != 200) {
            assert!(
                Instant::now() < deadline,
                "autoscaler never ready:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn scrape(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    fn current(&self) -> f64 {
        metric(&self.scrape(), "fathom_autoscaler_current_replicas")
    }

    fn exits(&self, kind: &str) -> f64 {
        metric(
            &self.scrape(),
            &format!("fathom_autoscaler_local_worker_exits_total{{kind=\"{kind}\"}}"),
        )
    }

    /// Polls until `cond` holds on the scraped metrics, or panics with the log.
    async fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM; the exit code (the autoscaler drains its workers first).
    fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "autoscaler did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn workers_started(&self) -> usize {
        // The autoscaler's line, not the one each worker logs (its stderr is the autoscaler's).
        self.log_text()
            .lines()
            .filter(|l| l.contains("fathom_autoscaler::local") && l.contains("worker started"))
            .count()
    }
}

impl Drop for AutoscalerProc {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // A failed test: SIGTERM first, so the autoscaler drains the workers it started (they are in
        // their own process groups and would outlive a SIGKILLed parent).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workers' configuration: one job at a time, images through `registry`.
fn worker_config(dir: &Path, registry: &str) -> PathBuf {
    let path = dir.join("worker.yaml");
    std::fs::write(
        &path,
        format!(
            "database: {{pool_size: 2}}\n\
             services:\n  analyzer:\n    concurrency: 1\n    lease_ttl: 30s\n    drain_timeout: 30s\n    \
             poll_interval: 1s\n    rescue_interval: 1s\n\
             registry:\n  insecure: ['{registry}']\n  timeout: 20s\n"
        ),
    )
    .unwrap();
    path
}

/// `count` distinct small images (the Alpine sample plus a file of their own, so every one has a layer
/// to fetch); their references through `registry`.
async fn distinct_images(count: usize, registry: &str) -> Vec<String> {
    let base = sample_images()
        .into_iter()
        .find(|s| s.name == "alpine-apk")
        .expect("alpine-apk sample");
    let mut refs = Vec::new();
    for i in 0..count {
        let mut sample = base.clone();
        sample.layers.push(vec![SampleEntry {
            path: format!("/srv/burst-{i}.txt"),
            mode: 0o644,
            kind: SampleKind::File(format!("build {i}\n").into_bytes()),
        }]);
        let image = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
        refs.push(format!("{registry}/{}", push_image("burst", &image).await));
    }
    refs
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "fathom failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_scales_workers_up_drains_and_returns_to_min_without_stopping_busy_ones() {
    let db = test_db().await;
    let proxy = Proxy::start(&support::registry()).await;
    let refs = distinct_images(8, &proxy.addr).await;
    // Every layer and config download takes a while, so each analysis lasts seconds and a single
    // worker would need far longer than the fleet.
    proxy.rules.blob_delay_ms.store(1200, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let workers = worker_config(dir.path(), &proxy.addr);
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut cmd = fathom();
    cmd.args(["autoscaler", "--target", "local", "--state-dir"])
        .arg(dir.path().join("state"))
        .arg("--worker-config")
        .arg(&workers)
        .args(["--metrics-address", &metrics])
        .args([
            "--poll-interval",
            "500ms",
            "--min-replicas",
            "0",
            "--max-replicas",
            "3",
        ])
        .args(["--max-scale-up-step", "3", "--scale-up-period", "1s"])
        .args([
            "--scale-down-stabilization",
            "2s",
            "--scale-to-zero-cooldown",
            "3s",
        ])
        .args(["--drain-timeout", "90s"]);
    let mut autoscaler = AutoscalerProc::spawn(cmd, dir.path(), db.url(), metrics);
    assert_eq!(
        autoscaler.current(),
        0.0,
        "min 0 and an empty queue: no workers"
    );

    let started = Instant::now();
    let mut args = vec!["submit", "--json"];
    args.extend(refs.iter().map(String::as_str));
    let submitted: serde_json::Value = serde_json::from_str(&ok(&cli(db.url(), &args))).unwrap();
    assert_eq!(submitted.as_array().unwrap().len(), refs.len());

    // Jobs per replica come from the workers' configuration (concurrency 1): 8 queued → capped at 3.
    let handles = Db::new(db.url());
    let mut peak = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(240);
    let statuses = loop {
        peak = peak.max(autoscaler.current());
        let mut all = Vec::new();
        for r in &refs {
            all.push(handles.status(r).await);
        }
        if all.iter().all(|s| s.status == "analyzed") {
            break all;
        }
        assert!(
            all.iter().all(|s| s.status != "failed"),
            "{all:#?}\n{}",
            autoscaler.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "burst not drained: {all:#?}\n{}",
            autoscaler.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let drained_after = started.elapsed();
    assert_eq!(
        peak,
        3.0,
        "scaled up to max; log:\n{}",
        autoscaler.log_text()
    );
    let scrape = autoscaler.scrape();
    assert!(
        metric(
            &scrape,
            // Every (direction, reason) series exists from the start at 0: name the one a burst writes.
            "fathom_autoscaler_scale_events_total{direction=\"up\",reason=\"burst\"}"
        ) >= 1.0,
        "{scrape}"
    );

    // Back to min once the queue stays empty for the cooldown, every worker drained, none killed.
    autoscaler
        .wait_until("scale back to 0", Duration::from_secs(90), |a| {
            a.current() == 0.0
        })
        .await;
    let workers_started = autoscaler.workers_started();
    assert!(workers_started >= 3, "{workers_started} workers started");
    autoscaler
        .wait_until("every worker reaped", Duration::from_secs(90), |a| {
            a.exits("drained") == workers_started as f64
        })
        .await;
    assert_eq!(autoscaler.exits("killed"), 0.0);
    assert_eq!(autoscaler.exits("crashed"), 0.0);
    let back_to_min = started.elapsed();

    // No busy worker was ever stopped: every job ran exactly once (a released or rescued job would have
    // been claimed again), and the work was spread over several workers.
    let mut owners = std::collections::BTreeSet::new();
    for s in &statuses {
        assert_eq!(s.attempts, 1, "{s:#?}");
        let job = handles.queue.job(s.job_id.unwrap()).await.unwrap().unwrap();
        assert_eq!(job.attempt, 1, "{job:#?}");
        owners.insert(job.lease_owner.unwrap());
    }
    assert!(owners.len() >= 2, "work spread over {owners:?}");
    let log = autoscaler.log_text();
    assert!(!log.contains("drain timeout"), "{log}");
    assert!(!log.contains("released"), "a worker released jobs:\n{log}");

    assert_eq!(autoscaler.terminate(Duration::from_secs(60)), Some(0));
    eprintln!(
        "burst of {}: drained after {:.1} s, back to 0 after {:.1} s, {workers_started} workers",
        refs.len(),
        drained_after.as_secs_f64(),
        back_to_min.as_secs_f64()
    );
}

/// `fathom scale` against a local autoscaler started by `fathom run --config` (the service path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_pins_clear_returns_to_policy_and_pause_holds() {
    let db = test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let workers = worker_config(dir.path(), &support::registry());
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("fathom.yaml");
    std::fs::write(
        &config,
        format!(
            "services:\n  analyzer: {{enabled: false}}\n  autoscaler:\n    enabled: true\n    target: local\n    \
             poll_interval: 300ms\n    metrics_address: '{metrics}'\n    min_replicas: 0\n    max_replicas: 4\n    \
             scale_down_stabilization: 1s\n    scale_to_zero_cooldown: 1s\n    drain_timeout: 60s\n    \
             state_dir: '{}'\n    worker_config: '{}'\n",
            state.display(),
            workers.display()
        ),
    )
    .unwrap();
    let mut cmd = fathom();
    cmd.arg("run").arg("--config").arg(&config);
    let mut autoscaler = AutoscalerProc::spawn(cmd, dir.path(), db.url(), metrics);
    let scale = |args: &[&str]| {
        let mut all = vec![
            "scale",
            "--target",
            "local",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        ok(&cli(db.url(), &all))
    };
    let status =
        || -> serde_json::Value { serde_json::from_str(&scale(&["status", "--json"])).unwrap() };
    let wait = Duration::from_secs(60);

    scale(&["override", "2"]);
    autoscaler
        .wait_until("pinned at 2", wait, |a| a.current() == 2.0)
        .await;
    // The next round's status file carries the decision; the override itself is read fresh.
    let deadline = Instant::now() + wait;
    let s = loop {
        let s = status();
        if s["current"] == 2 && s["reason"] == "pinned" {
            break s;
        }
        assert!(Instant::now() < deadline, "{s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(s["override"], serde_json::json!({"pinned": 2}), "{s:#}");
    assert_eq!(s["desired"], 2, "{s:#}");
    assert_eq!(s["queue"]["queued"], 0, "{s:#}");
    assert!(s["target"].as_str().unwrap().starts_with("local "), "{s:#}");
    assert_eq!(
        metric(
            &autoscaler.scrape(),
            "fathom_autoscaler_override{mode=\"pinned\"}"
        ),
        1.0
    );
    let text = scale(&["status"]);
    assert!(text.contains("override: pinned at 2"), "{text}");

    scale(&["clear"]);
    autoscaler
        .wait_until("back to the policy's 0", wait, |a| a.current() == 0.0)
        .await;
    assert_eq!(status()["override"], "none");

    scale(&["override", "1"]);
    autoscaler
        .wait_until("pinned at 1", wait, |a| a.current() == 1.0)
        .await;
    scale(&["pause"]);
    scale(&["clear"]);
    assert_eq!(status()["override"], "paused");
    // Paused: the policy would go to 0 within a second or two; the count stays for many rounds.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(autoscaler.current(), 1.0, "{}", autoscaler.log_text());
    }
    assert_eq!(status()["reason"], "paused");
    scale(&["resume"]);
    autoscaler
        .wait_until("resumed to 0", wait, |a| a.current() == 0.0)
        .await;
    let started = autoscaler.workers_started();
    autoscaler
        .wait_until("workers drained", wait, |a| {
            a.exits("drained") == started as f64
        })
        .await;
    assert_eq!(started, 3, "2 pinned, then 1: {}", autoscaler.log_text());
    assert_eq!(autoscaler.terminate(Duration::from_secs(60)), Some(0));
}

#[test]
fn invalid_settings_name_the_key() {
    for (args, key) in [
        (
            &["--max-replicas", "0"][..],
            "services.autoscaler.max_replicas",
        ),
        (
            &["--min-replicas", "5", "--max-replicas", "2"][..],
            "services.autoscaler.min_replicas",
        ),
        (
            &["--metrics-address", "nowhere"][..],
            "services.autoscaler.metrics_address",
        ),
        (
            &["--deployment", "Bad_Name"][..],
            "services.autoscaler.deployment",
        ),
    ] {
        let out = fathom()
            .args(["autoscaler", "--target", "local"])
            .args(args)
            .env("DATABASE_URL", "postgres://unused/db")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{args:?}: {err}");
    }
    let out = fathom()
        .args(["scale", "--target", "cloud", "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not kubernetes or local"));
}
