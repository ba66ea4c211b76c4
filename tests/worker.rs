//! The worker service end to end: real Postgres, the real `docker-registry`, real `fathom worker`
//! processes (killed, signalled), and the CLI reading the results back.

mod support;

use std::time::{Duration, Instant};

use fathom_worker::store::PackageQuery;
use support::{metric, Fleet, WorkerSpec};

/// The samples of the Debian, Java/Go, Rocky and Alpine kinds.
const ALL_KINDS: [&str; 4] = [
    "debian-python-npm",
    "debian-java-go",
    "rocky-rpm",
    "alpine-apk",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_images_are_analyzed_and_queryable() {
    let fleet = Fleet::direct(&ALL_KINDS).await;
    let _worker = fleet.worker("w-all", &fleet.spec());

    let mut args = vec!["submit", "--wait", "--json", "--timeout", "120s"];
    args.extend(fleet.refs.iter().map(String::as_str));
    let statuses = fleet.cli_json(&args).await;
    let statuses = statuses.as_array().unwrap();
    assert_eq!(statuses.len(), ALL_KINDS.len());
    for ((name, (_, image)), status) in ALL_KINDS.iter().zip(&fleet.images).zip(statuses) {
        assert_eq!(status["status"], "analyzed", "{status}");
        assert_eq!(
            status["digest"],
            image.manifest_digest().as_str(),
            "{status}"
        );
        assert!(status["error"].is_null());
        assert!(status["finished_at"].is_string());
        // The stored document lists exactly the packages the sample is known to contain.
        let digest = image.manifest_digest();
        let doc = fleet.cli_json(&["results", &digest, "-o", "json"]).await;
        let mut found: Vec<(String, String)> = doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["version"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        found.sort();
        found.dedup();
        let mut expected: Vec<(String, String)> = fathom_testkit::samples::expected_packages(name)
            .into_iter()
            .map(|p| (p.name, p.version))
            .collect();
        expected.sort();
        expected.dedup();
        assert_eq!(found, expected, "packages of {name}");
        assert_eq!(
            status["packages"].as_u64(),
            Some(doc["packages"].as_array().unwrap().len() as u64)
        );
    }
    // Other output formats come from the stored document too.
    let cdx = fleet
        .cli_json(&["results", &fleet.digest(0), "-o", "cyclonedx-json"])
        .await;
    assert_eq!(cdx["bomFormat"], "CycloneDX");

    // Packages are queryable across images: the Debian base's packages are in both Debian images.
    let first_deb = fathom_testkit::samples::expected_packages("debian-python-npm")
        .into_iter()
        .find(|p| p.package_type.as_str() == "deb")
        .unwrap();
    let hits = fleet
        .db
        .store
        .find_packages(&PackageQuery {
            name: first_deb.name.clone(),
            package_type: Some("deb".into()),
            version: Some(first_deb.version.clone()),
            limit: 100,
        })
        .await
        .unwrap();
    let mut images: Vec<&str> = hits.iter().map(|h| h.manifest_digest.as_str()).collect();
    images.sort();
    images.dedup();
    let mut debian: Vec<String> = vec![fleet.digest(0), fleet.digest(1)];
    debian.sort();
    assert_eq!(images, debian, "{hits:#?}");

    // `status DIGEST` and `queue stats --json` agree.
    let by_digest = fleet
        .cli_json(&["status", &fleet.digest(2), "--json"])
        .await;
    assert_eq!(by_digest[0]["reference"], fleet.refs[2].as_str());
    let stats = fleet.cli_json(&["queue", "stats", "--json"]).await;
    assert_eq!(stats["succeeded"], 4);
    assert_eq!(stats["ready"], 0);

    // Resubmitting an analyzed image completes without touching its layers.
    let again = fleet
        .cli_json(&["submit", "--wait", "--json", &fleet.refs[0]])
        .await;
    assert_eq!(again[0]["status"], "analyzed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_fetch_a_shared_cold_layer_once() {
    let fleet = Fleet::new(&["debian-python-npm", "debian-java-go"]).await;
    let base = fleet.images[0].1.layers[0].digest();
    assert_eq!(base, fleet.images[1].1.layers[0].digest());
    // Slow blobs: both workers miss the base layer in the cache while the first is still on it.
    fleet.slow_blobs(700);
    let spec = WorkerSpec {
        concurrency: 1,
        ..fleet.spec()
    };
    let _a = fleet.worker("w-flight-a", &spec);
    let _b = fleet.worker("w-flight-b", &spec);

    fleet.submit(&fleet.refs, 3).await;
    fleet
        .wait_analyzed(&fleet.refs, Duration::from_secs(90))
        .await;
    let gets = fleet.blob_gets();
    assert_eq!(gets.get(&base), Some(&1), "base layer GETs: {gets:?}");
    let mut hits = 0;
    for i in 0..fleet.images.len() {
        let doc = fleet
            .db
            .store
            .document(&fleet.digest(i))
            .await
            .unwrap()
            .unwrap();
        hits += doc.stats.cache_hits;
    }
    assert_eq!(hits, 1, "one image waited for the other's base layer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_base_layer_is_fetched_once() {
    let fleet = Fleet::new(&["debian-python-npm", "debian-java-go"]).await;
    let base = fleet.images[0].1.layers[0].digest();
    assert_eq!(
        base,
        fleet.images[1].1.layers[0].digest(),
        "the samples share their base layer"
    );
    let spec = WorkerSpec {
        concurrency: 1,
        ..fleet.spec()
    };
    let worker = fleet.worker("w-shared", &spec);

    for r in &fleet.refs {
        // One after the other, so the second finds the first's layers in the cache.
        let one = std::slice::from_ref(r);
        fleet.submit(one, 3).await;
        fleet.wait_analyzed(one, Duration::from_secs(60)).await;
    }
    let gets = fleet.blob_gets();
    assert_eq!(gets.get(&base), Some(&1), "base layer GETs: {gets:?}");
    let second = fleet
        .db
        .store
        .document(&fleet.digest(1))
        .await
        .unwrap()
        .unwrap();
    assert!(second.layers[0].from_cache);
    assert_eq!(second.stats.cache_hits, 1);
    let metrics = worker.scrape();
    assert_eq!(
        metric(&metrics, "fathom_worker_layer_cache_hits_total"),
        1.0
    );
    assert!(metric(&metrics, "fathom_worker_fetched_bytes_total") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_errors_are_retried_and_missing_images_fail_clearly() {
    let fleet = Fleet::new(&["alpine-apk"]).await;
    fleet.fail_next(3);
    let spec = WorkerSpec {
        concurrency: 1,
        ..fleet.spec()
    };
    let worker = fleet.worker("w-faults", &spec);

    let good = fleet.refs[0].clone();
    let missing = fleet.reference(&(support::unique_repo("nothing-here") + ":v1"));
    // The missing image goes in after the injected 500s are spent: every registry request is a manifest or
    // blob request now (no pings to absorb them), and a 500 on its manifest would rightly cost an attempt.
    fleet.submit(std::slice::from_ref(&good), 5).await;
    fleet
        .db
        .wait_for(std::slice::from_ref(&good), Duration::from_secs(60), |s| {
            matches!(s.status.as_str(), "analyzed" | "failed")
        })
        .await;
    fleet.submit(std::slice::from_ref(&missing), 5).await;
    let both = [good, missing];
    let done = fleet
        .db
        .wait_for(&both, Duration::from_secs(60), |s| {
            matches!(s.status.as_str(), "analyzed" | "failed")
        })
        .await;
    assert_eq!(done[0].status, "analyzed", "{:?}", done[0]);
    assert!(
        done[0].attempts >= 2,
        "the 500s cost at least one attempt: {:?}",
        done[0]
    );
    assert_eq!(done[1].status, "failed", "{:?}", done[1]);
    assert_eq!(done[1].attempts, 1, "a missing image is not retried");
    let error = done[1].error.as_deref().unwrap_or_default();
    assert!(
        error.contains("manifest unknown") && error.contains("nothing-here"),
        "{error}"
    );
    let metrics = worker.scrape();
    assert!(
        metric(
            &metrics,
            "fathom_worker_jobs_failed_total{outcome=\"retry\",reason=\"registry_unavailable\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "fathom_worker_jobs_failed_total{outcome=\"failed\",reason=\"manifest_unknown\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_job_is_finished_by_another_exactly_once() {
    let fleet = Fleet::new(&["alpine-apk"]).await;
    fleet.slow_blobs(1500);
    let spec = WorkerSpec {
        concurrency: 1,
        lease_ttl: "2s",
        rescue_interval: "300ms",
        ..fleet.spec()
    };
    let mut victim = fleet.worker("w-victim", &spec);

    let job = fleet.submit(&fleet.refs, 5).await[0];
    // Wait until the victim holds the lease and is fetching layers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = fleet.db.queue.job(job).await.unwrap().unwrap();
        if record.lease_owner.as_deref() == Some("w-victim") && !fleet.blob_gets().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "victim never started: {record:?}\n{}",
            victim.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.signal("KILL");
    let killed_at = Instant::now();
    victim.wait_exit(Duration::from_secs(5));
    let _rescuer = fleet.worker("w-rescuer", &spec);
    let done = fleet
        .wait_analyzed(&fleet.refs, Duration::from_secs(30))
        .await;
    let elapsed = killed_at.elapsed();
    let record = fleet.db.queue.job(job).await.unwrap().unwrap();
    assert_eq!(record.attempt, 2, "{record:?}");
    assert_eq!(record.lease_owner.as_deref(), Some("w-rescuer"));
    // Lease TTL (2 s) + rescue + a fresh analysis with slowed blob downloads; generous for a loaded CI box.
    assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
    let images = fleet.db.store.images(100).await.unwrap();
    assert_eq!(images.len(), 1, "{images:#?}");
    assert_eq!(done[0].digest.as_deref(), Some(fleet.digest(0).as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_in_flight_work_within_a_second() {
    let fleet = Fleet::new(&["rocky-rpm"]).await;
    fleet.slow_blobs(5000);
    let spec = WorkerSpec {
        concurrency: 1,
        drain_timeout: "200ms",
        ..fleet.spec()
    };
    let mut w = fleet.worker("w-term", &spec);

    let job = fleet.submit(&fleet.refs, 5).await[0];
    let deadline = Instant::now() + Duration::from_secs(30);
    while fleet.blob_gets().is_empty() {
        assert!(
            Instant::now() < deadline,
            "worker never started the job:\n{}",
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    w.signal("TERM");
    let signalled = Instant::now();
    loop {
        let record = fleet.db.queue.job(job).await.unwrap().unwrap();
        if record.state == fathom_queue::JobState::Queued {
            break;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "job still {:?} {:?} after SIGTERM:\n{}",
            record.state,
            signalled.elapsed(),
            w.log_text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back_in_queue = signalled.elapsed();
    assert_eq!(
        w.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        w.log_text()
    );
    let record = fleet.db.queue.job(job).await.unwrap().unwrap();
    assert_eq!(record.attempt, 0, "a release does not use up an attempt");
    assert!(back_in_queue < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_health_answers() {
    let fleet = Fleet::direct(&["alpine-apk"]).await;
    let worker = fleet.worker("w-metrics", &fleet.spec());

    fleet.submit(&fleet.refs, 3).await;
    fleet
        .wait_analyzed(&fleet.refs, Duration::from_secs(60))
        .await;
    let text = worker.scrape();
    for name in [
        "fathom_worker_jobs_claimed_total 1",
        "fathom_worker_jobs_completed_total{outcome=\"analyzed\"} 1",
        "fathom_worker_analysis_duration_seconds_count 1",
        "fathom_worker_queue_wait_seconds_count 1",
        "fathom_worker_layer_cache_misses_total",
        "fathom_worker_inflated_bytes_total",
        "fathom_worker_jobs_in_flight 0",
        "fathom_worker_database_up 1",
        "fathom_build_info{",
        "role=\"worker\"",
        "process_start_time_seconds ",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    // What the job cost the registry: one manifest, the config and every layer, no token or ping.
    let host = fleet.refs[0].split('/').next().unwrap();
    let requests = |kind: &str| {
        metric(
            &text,
            &format!("fathom_worker_registry_requests_total{{host=\"{host}\",kind=\"{kind}\"}}"),
        )
    };
    assert_eq!(requests("manifest"), 1.0, "{text}");
    let blobs = fleet.images[0].1.layers.len() as f64 + 1.0;
    assert_eq!(requests("blob"), blobs, "{text}");
    assert_eq!(requests("token"), 0.0, "{text}");
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus; see scripts/deps.d/50-worker.sh)");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        support::http_get(&worker.metrics, "/healthz").unwrap().0,
        200
    );
    assert_eq!(
        support::http_get(&worker.metrics, "/readyz").unwrap().0,
        200
    );
}

#[test]
fn invalid_config_fails_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "database: {url: 'postgres://x/y'}\nservices:\n  analyzer:\n    concurrency: lots\n",
    )
    .unwrap();
    let out = support::fathom()
        .args(["worker", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("services.analyzer.concurrency"), "{err}");
    let out = support::fathom()
        .args(["run", "--config"])
        .arg(&path)
        .env("FATHOM_SERVICES_ANALYZER_CONCURRENCY", "3")
        .env("FATHOM_METRICS_ADDRESS", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.address"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_run_loses_nothing() {
    use fathom_testkit::pg::{Durability, OwnedCluster};
    let cluster = tokio::task::spawn_blocking(|| OwnedCluster::start(Durability::Throwaway))
        .await
        .unwrap()
        .expect("a cluster of our own to restart");
    let url = cluster.info().url("postgres");
    let fleet = Fleet::on_database(&url, &ALL_KINDS).await;
    fleet.cli(&["migrate"]).await;
    fleet.slow_blobs(300);
    let spec = WorkerSpec {
        concurrency: 1,
        lease_ttl: "5s",
        ..fleet.spec()
    };
    let mut worker = fleet.worker("w-restart", &spec);
    {
        // Handles of their own, closed before the restart; the fleet's connect after it.
        let handles = support::Db::new(&url);
        handles.store.submit(&fleet.refs, 10).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stats = handles.queue.stats().await.unwrap();
            if stats.succeeded >= 1 {
                assert!(
                    stats.succeeded < 4,
                    "the run finished before the restart; slow it down"
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nothing finished:\n{}",
                worker.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop postgres");
        std::thread::sleep(Duration::from_secs(2));
        cluster.start_again().expect("start postgres again");
        cluster
    })
    .await
    .unwrap();
    assert!(
        worker.alive(),
        "the worker died with Postgres:\n{}",
        worker.log_text()
    );
    let done = fleet
        .wait_analyzed(&fleet.refs, Duration::from_secs(90))
        .await;
    assert_eq!(done.len(), 4);
    assert!(worker.alive());
    let stats = fleet.db.queue.stats().await.unwrap();
    assert_eq!(
        (stats.succeeded, stats.ready, stats.running),
        (4, 0, 0),
        "{stats:?}"
    );
    assert_eq!(fleet.db.store.images(100).await.unwrap().len(), 4);
    drop(worker);
    drop(cluster);
}
