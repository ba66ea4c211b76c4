//! Policy checks through the core: a real `fathom run` (release build) on the shared test Postgres, one
//! analyzed sample image, and `GET /v1/images/{digest}/check` from one client, once against a core with
//! the evaluation cache off (every check loads the stored document, the matches and the feed state, and
//! evaluates) and once with it on (the feed-state query and a cache lookup).
//!
//! Prints one line per mode: `policy image=NAME packages=P rules=R matches=M mode=cold|cached
//! p50_ms=X p99_ms=Y`. Client and server share the machine's cores, so the figures are a ceiling.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use fathom_testkit::pg::TestDb;
use serde_json::{json, Value};
use support::api::{Api, TOKEN};
use support::{WorkerProc, WorkerSpec};

const IMAGE: &str = "debian-python-npm";
const WINDOW: Duration = Duration::from_secs(4);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let db = TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
        &fathom_policy::store::migrator(),
    ])
    .await
    .expect("test database");
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = Api::start(dir.path(), db.url(), "");
    let (digest, packages) = seed(&cached, dir.path(), db.url()).await;
    let cold_dir = tempfile::tempdir().expect("tempdir");
    let cold = Api::start(
        cold_dir.path(),
        db.url(),
        "  policy_engine:\n    cache: false\n",
    );
    for (mode, api) in [("cold", &cold), ("cached", &cached)] {
        let (rules, matches, p50, p99) = measure(api, &digest).await;
        println!(
            "policy image={IMAGE} packages={packages} rules={rules} matches={matches} mode={mode} \
             p50_ms={p50:.2} p99_ms={p99:.2}"
        );
    }
}

/// Analyzes the sample through the API and a real worker; returns its digest and package count.
async fn seed(api: &Api, dir: &std::path::Path, url: &str) -> (String, i64) {
    let pushed = support::push_samples(&[IMAGE]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let worker = WorkerProc::start(dir, "bench-seed", url, &WorkerSpec::default());
    let client = api.client();
    let (_, submitted) = client
        .post("/v1/images", json!({ "reference": reference }))
        .await;
    let job = submitted["job_id"].as_i64().expect("job id");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, entry) = client.get(&format!("/v1/images/by-job/{job}")).await;
        if entry["status"] == "analyzed" {
            drop(worker);
            let digest = entry["digest"].as_str().expect("digest").to_string();
            return (digest, entry["packages"].as_i64().unwrap_or(0));
        }
        assert!(Instant::now() < deadline, "image not analyzed: {entry}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sequential checks for [`WINDOW`] after a short warm-up; (rules, matches, p50 ms, p99 ms).
async fn measure(api: &Api, digest: &str) -> (usize, usize, f64, f64) {
    let http = reqwest::Client::new();
    let url = format!("{}/v1/images/{digest}/check", api.base);
    let mut latencies = Vec::new();
    let mut last = Value::Null;
    let started = Instant::now();
    while started.elapsed() < WINDOW + Duration::from_millis(500) {
        let sent = Instant::now();
        let response = http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("check");
        assert!(response.status().is_success(), "{}", response.status());
        last = response.json().await.expect("evaluation");
        if started.elapsed() > Duration::from_millis(500) {
            latencies.push(sent.elapsed());
        }
    }
    latencies.sort();
    let ms = |q: usize| {
        latencies[(latencies.len() * q / 100).min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    let rules = fathom_policy::default_bundle().rule_count();
    // Fired package triggers that are matches, not the "data unavailable" rows of a rule in error.
    let matches = last["rows"].as_array().map_or(0, |rows| {
        rows.iter()
            .filter(|r| r["trigger"] == "package" && r["error"] == false)
            .count()
    });
    (rules, matches, ms(50), ms(99))
}
