//! Registry outages lose no work: real `fathom worker` processes pulling from the real registry through
//! the fault proxy (an outage, 404s, 429 with Retry-After, counted concurrency), and dead jobs brought
//! back through the CLI and the API.

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::api::Api;
use support::{metric, Fleet, WorkerSpec};

/// The same small image pushed under `n` repositories: `n` references on the proxy.
async fn copies(fleet: &Fleet, n: usize) -> Vec<String> {
    let image = fleet.images[0].1.clone();
    let mut refs = vec![fleet.refs[0].clone()];
    for i in 1..n {
        refs.push(fleet.push(&format!("copy{i}"), &image).await);
    }
    refs
}

/// (state, attempt, last_error_kind) of a job, read straight from the queue table.
async fn job_row(fleet: &Fleet, id: i64) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT state, attempt, last_error_kind FROM fathom_jobs WHERE id = $1")
        .bind(id)
        .fetch_one(fleet.db.store.pool())
        .await
        .unwrap()
}

/// The breaker state of `host`, `closed` when it has no row.
async fn breaker_state(fleet: &Fleet, host: &str) -> String {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT state FROM fathom_registry_breakers WHERE host = $1")
            .bind(host)
            .fetch_optional(fleet.db.store.pool())
            .await
            .unwrap();
    row.map_or_else(|| "closed".into(), |(s,)| s)
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_longer_than_the_attempt_budget_loses_no_work() {
    let fleet = Fleet::new(&["alpine-apk"]).await;
    let refs = copies(&fleet, 3).await;
    fleet.proxy.rules.down.store(true, Ordering::SeqCst);
    let spec = WorkerSpec {
        breaker_failures: 3,
        breaker_probe_interval: "1s",
        ..fleet.spec()
    };
    let worker = fleet.worker("w-outage", &spec);
    // 5 attempts, 200 ms backoff doubling: without the breaker every job is dead within ~3 s.
    let ids = fleet.submit(&refs, 5).await;
    wait_until("the breaker to open", Duration::from_secs(60), || async {
        breaker_state(&fleet, &fleet.host).await != "closed"
    })
    .await;
    let opened = Instant::now();
    // Down four times the old budget, probed every second meanwhile.
    while opened.elapsed() < Duration::from_secs(12) {
        for id in &ids {
            let (state, _, _) = job_row(&fleet, *id).await;
            assert!(
                state == "queued" || state == "running",
                "job {id} is {state} during the outage"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let probes = fleet.proxy.rules.requests();
    fleet.proxy.rules.down.store(false, Ordering::SeqCst);
    fleet.wait_analyzed(&refs, Duration::from_secs(60)).await;

    assert!(
        probes > 3,
        "the registry was probed while down ({probes} requests)"
    );
    // Charged: one successful attempt each, plus the failures before the breaker opened (the failure
    // that opens it is deferred); probes and deferrals while it was open cost nothing.
    let mut charged = 0;
    for id in &ids {
        let (state, attempt, _) = job_row(&fleet, *id).await;
        assert_eq!(state, "succeeded");
        charged += attempt;
    }
    assert!(charged <= 3 + 2, "attempts charged: {charged}");
    assert_eq!(breaker_state(&fleet, &fleet.host).await, "closed");
    let text = worker.scrape();
    assert!(
        metric(
            &text,
            "fathom_worker_jobs_deferred_total{reason=\"breaker_open\"}"
        ) >= 1.0,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_at_once() {
    let fleet = Fleet::new(&["alpine-apk"]).await;
    let _worker = fleet.worker("w-404", &fleet.spec());
    let missing = fleet.reference("nowhere/never-pushed:v1");
    let ids = fleet.submit(std::slice::from_ref(&missing), 5).await;
    fleet
        .db
        .wait_for(
            std::slice::from_ref(&missing),
            Duration::from_secs(60),
            |s| s.status == "failed",
        )
        .await;
    let (state, attempt, kind) = job_row(&fleet, ids[0]).await;
    assert_eq!(
        (state.as_str(), attempt, kind.as_deref()),
        ("failed", 1, Some("manifest_unknown"))
    );
    assert_eq!(breaker_state(&fleet, &fleet.host).await, "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_jobs_come_back_through_the_cli_and_the_api() {
    let fleet = Fleet::new(&["alpine-apk"]).await;
    let refs = copies(&fleet, 2).await;
    fleet.proxy.rules.down.store(true, Ordering::SeqCst);
    // No breaker: one attempt each, so both die at their first failure.
    let spec = WorkerSpec {
        breaker_failures: 0,
        ..fleet.spec()
    };
    let _worker = fleet.worker("w-dead", &spec);
    let ids = fleet.submit(&refs, 1).await;
    fleet
        .db
        .wait_for(&refs, Duration::from_secs(60), |s| s.status == "failed")
        .await;
    let stats = fleet.cli_json(&["queue", "stats", "--json"]).await;
    assert_eq!(stats["dead"], 2, "{stats}");
    assert_eq!(stats["dead_by_kind"]["registry_unavailable"], 2, "{stats}");
    fleet.proxy.rules.down.store(false, Ordering::SeqCst);

    // The CLI, filtered by reference: only the first comes back.
    let out = fleet
        .cli_json(&[
            "queue",
            "retry",
            "--dead",
            "--reference",
            &refs[0],
            "--json",
        ])
        .await;
    assert_eq!(out["requeued"], serde_json::json!([ids[0]]), "{out}");
    fleet
        .wait_analyzed(&refs[..1], Duration::from_secs(60))
        .await;
    let record = fleet.db.queue.job(ids[0]).await.unwrap().unwrap();
    assert_eq!(record.attempt, 2, "the dead attempt is kept in the history");

    // The API: one job by id, then a batch that finds nothing left.
    let api = Api::start(fleet.path(), fleet.url(), "");
    let client = api.client();
    let (status, stats) = client.get("/v1/queue").await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["dead"], 1, "{stats}");
    assert_eq!(stats["dead_by_kind"]["registry_unavailable"], 1, "{stats}");
    let (status, body) = client
        .post(&format!("/v1/jobs/{}/retry", ids[1]), serde_json::json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requeued"], serde_json::json!([ids[1]]));
    fleet.wait_analyzed(&refs, Duration::from_secs(60)).await;
    let (status, body) = client
        .post(&format!("/v1/jobs/{}/retry", ids[1]), serde_json::json!({}))
        .await;
    assert_eq!(status, 409, "a succeeded job is not retried: {body}");
    let (status, body) = client
        .post("/v1/jobs/retry", serde_json::json!({ "states": ["dead"] }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["requeued"], serde_json::json!([]));
    let (status, _) = client
        .post(
            "/v1/jobs/retry",
            serde_json::json!({ "states": ["running"] }),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = client
        .post("/v1/jobs/999999/retry", serde_json::json!({}))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_jobs_on_one_host_stay_within_its_limit() {
    let fleet = Fleet::new(&["alpine-apk"]).await;
    // 50 jobs at once on one host (the figure), two registry requests allowed at a time.
    let refs = copies(&fleet, 50).await;
    // Slow answers keep every admitted job talking to the registry for a while.
    fleet.proxy.rules.delay_ms.store(150, Ordering::SeqCst);
    let spec = WorkerSpec {
        concurrency: 50,
        max_concurrent_per_host: 2,
        layers_in_flight: Some(1),
        ..fleet.spec()
    };
    let worker = fleet.worker("w-limit", &spec);
    fleet.submit(&refs, 3).await;
    fleet.wait_analyzed(&refs, Duration::from_secs(120)).await;
    let most = fleet.proxy.rules.max_in_flight();
    assert!(most <= 2, "{most} requests in flight at once");
    assert_eq!(most, 2, "the limit was reached, so the bound was exercised");
    let text = worker.scrape();
    assert!(
        metric(&text, "fathom_worker_registry_slot_waits_total") >= 1.0,
        "{text}"
    );
}

/// Needs issue 17's registry HTTP layer, which exposes `Retry-After` as `AnalyzeError::RegistryStatus {
/// retry_after }`; until it lands the 429 carries no delay and the worker retries after its backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_holds_the_host_that_long() {
    let fleet = Fleet::new(&["alpine-apk"]).await;
    // One job: no other job's request already in flight can follow the 429 within the pause.
    let refs = fleet.refs.clone();
    fleet.proxy.rules.retry_after_s.store(3, Ordering::SeqCst);
    fleet.proxy.rules.rate_limit_next.store(1, Ordering::SeqCst);
    let _worker = fleet.worker("w-429", &fleet.spec());
    fleet.submit(&refs, 5).await;
    fleet.wait_analyzed(&refs, Duration::from_secs(60)).await;
    let log = fleet.proxy.rules.log();
    let at = log
        .iter()
        .position(|(_, injected)| *injected == Some(429))
        .expect("a 429 was answered");
    let (limited, _) = log[at];
    let (next, _) = log.get(at + 1).expect("a request after the 429");
    assert!(
        next.duration_since(limited) >= Duration::from_secs(3),
        "next request {:?} after the 429",
        next.duration_since(limited)
    );
}
