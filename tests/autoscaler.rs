//! The autoscaler end to end with its local target: real Postgres, the real registry (behind a slow
//! proxy so analyses take seconds), and real `fathom autoscaler` / `fathom run` processes spawning real
//! `fathom worker` processes; `fathom scale` drives the override.

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::samples::{sample_images, SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, Compress};
use support::autoscaler::AutoscalerProc;
use support::{cli, fathom, metric, ok, Fleet};

/// `count` distinct small images (the Alpine sample plus a file of their own, so every one has a layer
/// to fetch); their references through the fleet's host.
async fn distinct_images(fleet: &Fleet, count: usize) -> Vec<String> {
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
        refs.push(fleet.push("burst", &image).await);
    }
    refs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_scales_workers_up_drains_and_returns_to_min_without_stopping_busy_ones() {
    let fleet = Fleet::new(&[]).await;
    let refs = distinct_images(&fleet, 8).await;
    // Every layer and config download takes a while, so each analysis lasts seconds and a single
    // worker would need far longer than the fleet.
    fleet.slow_blobs(1200);
    let mut autoscaler = AutoscalerProc::command(
        &fleet,
        &[
            "--poll-interval",
            "500ms",
            "--min-replicas",
            "0",
            "--max-replicas",
            "3",
            "--max-scale-up-step",
            "3",
            "--scale-up-period",
            "1s",
            "--scale-down-stabilization",
            "2s",
            "--scale-to-zero-cooldown",
            "3s",
            "--drain-timeout",
            "90s",
        ],
    );
    assert_eq!(
        autoscaler.current(),
        0.0,
        "min 0 and an empty queue: no workers"
    );

    let started = Instant::now();
    let mut args = vec!["submit", "--json"];
    args.extend(refs.iter().map(String::as_str));
    let submitted = fleet.cli_json(&args).await;
    assert_eq!(submitted.as_array().unwrap().len(), refs.len());

    // Jobs per replica come from the workers' configuration (concurrency 1): 8 queued → capped at 3.
    let mut peak = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(240);
    let statuses = loop {
        peak = peak.max(autoscaler.current());
        let mut all = Vec::new();
        for r in &refs {
            all.push(fleet.db.status(r).await);
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
        let job = fleet
            .db
            .queue
            .job(s.job_id.unwrap())
            .await
            .unwrap()
            .unwrap();
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
    let fleet = Fleet::direct(&[]).await;
    let mut autoscaler = AutoscalerProc::service(
        &fleet,
        &[
            "poll_interval: 300ms",
            "min_replicas: 0",
            "max_replicas: 4",
            "scale_down_stabilization: 1s",
            "scale_to_zero_cooldown: 1s",
            "drain_timeout: 60s",
        ],
    );
    let state = fleet.path().join("state");
    let scale = |args: &[&str]| {
        let mut all = vec![
            "scale",
            "--target",
            "local",
            "--state-dir",
            state.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        ok(&cli(fleet.url(), &all))
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
