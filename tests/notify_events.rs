//! The events of the notifications outbox (`notify_events`), each written by a real process in the
//! transaction of the change it reports: a real `fathom run` core watching a tag on the test registry,
//! a real `fathom worker` analyzing what it queues. Delivery is not looked at here; the outbox is read
//! directly.

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::{BuiltImage, Compress, Pusher};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::Api;
use support::{WorkerProc, WorkerSpec};

/// Every event of the outbox as `(type, subject, data)`, oldest first.
pub async fn events(url: &str) -> Vec<(String, String, Value)> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let rows = sqlx::query_as("SELECT type, subject, data FROM notify_events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows
}

/// The events of `kind`.
async fn of(url: &str, kind: &str) -> Vec<(String, Value)> {
    events(url)
        .await
        .into_iter()
        .filter(|e| e.0 == kind)
        .map(|e| (e.1, e.2))
        .collect()
}

/// Polls until at least `n` events of `kind` exist; panics after `timeout` listing what there is.
async fn wait_events(url: &str, kind: &str, n: usize, timeout: Duration) -> Vec<(String, Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = of(url, kind).await;
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{n} {kind} events never came; the outbox holds {:?}",
            events(url).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sample(name: &str) -> BuiltImage {
    let samples = fathom_testkit::samples::sample_images();
    let s = samples.iter().find(|s| s.name == name).unwrap();
    BuiltImage::from_sample(s, Compress::Gzip).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyzed_failed_and_tag_moved_appear_exactly_when_they_should() {
    let registry = support::registry();
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let config =
        format!("  catalog:\n    watch_interval: 1s\nregistry:\n  insecure: ['{registry}']\n");
    let api = Api::start(dir.path(), db.url(), &config);
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let client = api.client();
    let repo = support::unique_repo("events");
    let pusher = Pusher::new(&registry, None);
    let (first, second) = (sample("alpine-apk"), sample("rocky-rpm"));
    pusher.push(&repo, "prod", &first).await.unwrap();
    let reference = format!("{registry}/{repo}:prod");

    // Watching submits the tag: its analysis writes one `analyzed`, and nothing moved yet.
    let (status, watch) = client
        .post("/v1/watches", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
    let job = watch["history"][0]["job_id"].as_i64().unwrap();
    assert_eq!(client.wait_done(job).await["status"], "analyzed");
    let analyzed = wait_events(
        db.url(),
        "dev.fathom.image.analyzed",
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(analyzed.len(), 1, "{analyzed:?}");
    let (subject, data) = &analyzed[0];
    assert_eq!(subject, &first.manifest_digest());
    assert_eq!(data["digest"], first.manifest_digest().as_str());
    assert_eq!(data["reference"], reference.as_str());
    assert_eq!(data["references"], json!([reference]));
    assert_eq!(data["reused"], false);
    assert!(of(db.url(), "dev.fathom.tag.moved").await.is_empty());

    // The tag moves: one `tag.moved` (previous and new digest) and the new digest's `analyzed`.
    pusher.push(&repo, "prod", &second).await.unwrap();
    let moved = wait_events(db.url(), "dev.fathom.tag.moved", 1, Duration::from_secs(10)).await;
    let (subject, data) = &moved[0];
    assert_eq!(subject, &reference);
    assert_eq!(data["reference"], reference.as_str());
    assert_eq!(data["previous"], first.manifest_digest().as_str());
    assert_eq!(data["digest"], second.manifest_digest().as_str());
    let job = data["job_id"]
        .as_i64()
        .expect("the move queued an analysis");
    assert_eq!(client.wait_done(job).await["status"], "analyzed");
    let analyzed = wait_events(
        db.url(),
        "dev.fathom.image.analyzed",
        2,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(analyzed[1].0, second.manifest_digest());

    // A tag that does not exist fails for good: one `analysis_failed` naming the reference (no
    // manifest was read, so no digest) and the error kind; no `analyzed`.
    let missing = format!("{registry}/{repo}:nope");
    let (status, submitted) = client
        .post("/v1/images", json!({"reference": missing}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let done = client
        .wait_done(submitted["job_id"].as_i64().unwrap())
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    let failed = wait_events(
        db.url(),
        "dev.fathom.image.analysis_failed",
        1,
        Duration::from_secs(5),
    )
    .await;
    let (subject, data) = &failed[0];
    assert_eq!(subject, &missing);
    assert_eq!(data["digest"], Value::Null);
    assert_eq!(data["reference"], missing.as_str());
    assert_eq!(data["state"], "failed");
    assert_eq!(data["error_kind"], "manifest_unknown", "{data}");
    // The data is the documented shape.
    let _: fathom_notify::data::AnalysisFailed = serde_json::from_value(data.clone()).unwrap();

    // Idle passes (the tag no longer moves) write nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = events(db.url()).await;
    let count = |kind: &str| all.iter().filter(|e| e.0 == kind).count();
    assert_eq!(count("dev.fathom.tag.moved"), 1, "{all:?}");
    assert_eq!(count("dev.fathom.image.analyzed"), 2, "{all:?}");
    assert_eq!(count("dev.fathom.image.analysis_failed"), 1, "{all:?}");
}
