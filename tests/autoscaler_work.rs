//! `services.autoscaler.scale_on: work` end to end with the local target: real Postgres, the real registry
//! behind the test proxy, a real `fathom run` autoscaler spawning real `fathom worker` processes. A rescan
//! of 200 already-analyzed images stays on a worker or two; a handful of cold large images scales out —
//! where counting jobs does the opposite on both.

mod support;

use std::time::{Duration, Instant};

use fathom_queue::NewJob;
use fathom_testkit::samples::{sample_images, SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, Compress};
use support::autoscaler::AutoscalerProc;
use support::{metric, Fleet};

/// `count` distinct small images (the Alpine sample plus a file of their own).
async fn distinct_images(fleet: &Fleet, name: &str, count: usize) -> Vec<String> {
    let base = sample_images()
        .into_iter()
        .find(|s| s.name == "alpine-apk")
        .expect("alpine-apk sample");
    let mut refs = Vec::new();
    for i in 0..count {
        let mut sample = base.clone();
        sample.layers.push(vec![SampleEntry {
            path: format!("/srv/{name}-{i}.txt"),
            mode: 0o644,
            kind: SampleKind::File(format!("{name} {i}\n").into_bytes()),
        }]);
        let image = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
        refs.push(fleet.push(name, &image).await);
    }
    refs
}

/// Analysis jobs for `refs` (cycled to `count`), each with its own dedup key and the estimate given.
async fn enqueue(fleet: &Fleet, refs: &[String], count: usize, tag: &str, work_bytes: i64) {
    let jobs: Vec<NewJob> = (0..count)
        .map(|i| {
            let reference = &refs[i % refs.len()];
            NewJob::new("analyze", serde_json::json!({ "reference": reference }))
                .dedup_key(format!("{tag}-{i}"))
                .work_bytes(work_bytes)
        })
        .collect();
    fleet.db.queue.enqueue_many(&jobs).await.unwrap();
}

/// Polls until every job ever queued has succeeded; returns the highest replica count seen meanwhile.
async fn drain(fleet: &Fleet, autoscaler: &AutoscalerProc, total: i64, timeout: Duration) -> f64 {
    let deadline = Instant::now() + timeout;
    let mut peak = 0.0f64;
    loop {
        peak = peak.max(autoscaler.current());
        let stats = fleet.db.queue.stats().await.unwrap();
        assert_eq!(
            stats.failed + stats.dead,
            0,
            "{stats:?}\n{}",
            autoscaler.log_text()
        );
        if stats.succeeded >= total {
            return peak;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {stats:?}\n{}",
            autoscaler.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescans_stay_small_and_cold_large_images_scale_out() {
    let fleet = Fleet::new(&[]).await;
    let warm = distinct_images(&fleet, "warm", 4).await;
    let cold = distinct_images(&fleet, "cold", 4).await;
    // Four jobs per replica, as a worker of concurrency 4 would run: counting jobs, 200 queued jobs ask
    // for 50 replicas (capped at 4) and 4 queued jobs for one.
    let mut autoscaler = AutoscalerProc::service(
        &fleet,
        &[
            "scale_on: work",
            "jobs_per_replica: 4",
            "poll_interval: 500ms",
            "min_replicas: 0",
            "max_replicas: 4",
            "max_scale_up_step: 4",
            "scale_up_period: 1s",
            "scale_down_stabilization: 2s",
            "scale_to_zero_cooldown: 3s",
            "drain_timeout: 90s",
        ],
    );

    // History first, as a running fleet has it: the images analyzed once (cold, no estimate), then ten
    // re-analyses (nothing fetched), so per-job time and throughput are learned from the workers' reports.
    fleet.submit(&warm, 3).await;
    fleet.wait_analyzed(&warm, Duration::from_secs(180)).await;
    enqueue(&fleet, &warm, 10, "learn", 0).await;
    drain(&fleet, &autoscaler, 14, Duration::from_secs(180)).await;
    let stats = fleet.db.queue.stats().await.unwrap();
    assert_eq!(stats.recent.cached_jobs, 10, "{stats:?}");
    assert_eq!(stats.recent.cold_jobs, 4, "{stats:?}");

    // The rescan: 200 re-analyses of the analyzed images, estimated at 0 bytes to fetch.
    enqueue(&fleet, &warm, 200, "rescan", 0).await;
    let peak = drain(&fleet, &autoscaler, 214, Duration::from_secs(300)).await;
    assert!(
        peak <= 2.0,
        "200 cached re-analyses took {peak} workers; log:\n{}",
        autoscaler.log_text()
    );
    // What the workers reported: nothing fetched for any of them.
    let fetched = fleet.db.queue.stats().await.unwrap().recent;
    assert_eq!(fetched.cold_jobs, 0, "{fetched:?}");

    // Four cold images, each estimated at 2 GB to fetch: the fleet scales out while they run.
    fleet.slow_blobs(1500);
    enqueue(&fleet, &cold, 4, "cold", 2_000_000_000).await;
    let started = Instant::now();
    autoscaler
        .wait_until("scale out for cold work", Duration::from_secs(60), |a| {
            a.current() >= 3.0
        })
        .await;
    let scrape = autoscaler.scrape();
    assert!(
        metric(
            &scrape,
            "fathom_autoscaler_policy_desired_replicas{policy=\"work\"}"
        ) >= 3.0
            || metric(&scrape, "fathom_autoscaler_current_replicas") >= 3.0,
        "{scrape}"
    );
    drain(&fleet, &autoscaler, 218, Duration::from_secs(300)).await;
    eprintln!(
        "cold work scaled out within {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The estimate is kept honest: each cold job's actual fetched bytes sit next to its estimate.
    let recent = fleet.db.queue.stats().await.unwrap().recent;
    assert_eq!(recent.estimated_bytes, 4 * 2_000_000_000, "{recent:?}");
    assert!(
        recent.estimated_fetched_bytes > 0 && recent.estimated_fetched_bytes < 10_000_000,
        "{recent:?}"
    );
    assert_eq!(autoscaler.exits("killed"), 0.0);
    assert_eq!(autoscaler.terminate(Duration::from_secs(90)), Some(0));
}
