//! API load check: a real `fathom run` serving the API (release build) on the shared test Postgres, and
//! 64 concurrent keep-alive clients in this process hammering one route at a time for a fixed window.
//! `submit` posts a new reference per request (a real enqueue + submission row per call); `get` reads
//! one analyzed image record; `submit-batch100` posts 100 new references per request (jobs/s is 100× its
//! rps). Client and server share the machine's cores, so the figures are a floor.
//!
//! Prints exactly one line per route on stdout: `api route=R rps=X p99_ms=Y` (R: submit, get,
//! submit-batch100).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::api::{Api, TOKEN};
use support::{WorkerProc, WorkerSpec};

const CLIENTS: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone, Copy)]
enum Route {
    Submit,
    /// 100 new references per request: the path CI pipelines with many images should take.
    SubmitBatch,
    Get,
}

/// References per request of the batch route.
const BATCH: usize = 100;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let api = Api::start(dir.path(), db.url(), "    max_page_size: 1000\n");
    let digest = seed(&api, dir.path(), db.url()).await;
    for (name, route) in [
        ("submit", Route::Submit),
        ("get", Route::Get),
        ("submit-batch100", Route::SubmitBatch),
    ] {
        let (rps, p99) = load(&api, route, &digest).await;
        println!("api route={name} rps={rps:.0} p99_ms={p99:.2}");
    }
}

/// Analyzes one sample image through the API and a real worker; returns its digest.
async fn seed(api: &Api, dir: &std::path::Path, url: &str) -> String {
    let pushed = support::push_samples(&["alpine-apk"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let worker = WorkerProc::start(dir, "bench-seed", url, &WorkerSpec::default());
    let client = api.client();
    let (_, submitted) = client
        .post("/v1/images", json!({ "reference": reference }))
        .await;
    let job = submitted["job_id"].as_i64().expect("job id");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, entry) = client.get(&format!("/v1/images/by-job/{job}")).await;
        if entry["status"] == "analyzed" {
            drop(worker);
            return entry["digest"].as_str().expect("digest").to_string();
        }
        assert!(
            Instant::now() < deadline,
            "seed image not analyzed: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `CLIENTS` loops on one route; returns (requests per second, p99 latency in ms) over the window.
async fn load(api: &Api, route: Route, digest: &str) -> (f64, f64) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + WARMUP;
    let end = measure_from + WINDOW;
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, counter) = (http.clone(), Arc::clone(&counter));
        let base = api.base.clone();
        let digest = digest.to_string();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let sent = Instant::now();
                let request = match route {
                    Route::Submit => {
                        let id = counter.fetch_add(1, Ordering::Relaxed);
                        http.post(format!("{base}/v1/images"))
                            .json(&json!({ "reference": format!("bench.example/load/c{c}:n{id}") }))
                    }
                    Route::SubmitBatch => {
                        let id = counter.fetch_add(1, Ordering::Relaxed);
                        let references: Vec<String> = (0..BATCH)
                            .map(|i| format!("bench.example/batch/c{c}:n{id}-{i}"))
                            .collect();
                        http.post(format!("{base}/v1/images"))
                            .json(&json!({ "references": references }))
                    }
                    Route::Get => http.get(format!("{base}/v1/images/{digest}")),
                };
                let response = request.bearer_auth(TOKEN).send().await.expect("request");
                let status = response.status();
                let _ = response.bytes().await;
                assert!(status.is_success(), "{status}");
                if sent >= measure_from && Instant::now() <= end {
                    latencies.push(sent.elapsed());
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort();
    let rps = all.len() as f64 / WINDOW.as_secs_f64();
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    (rps, p99)
}
