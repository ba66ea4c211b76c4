//! Cache notifications on a real fleet: a core whose feed cycle polls a generated OSV feed directory and
//! re-matches every second, a worker analyzing sample images pushed to a real registry, and a LISTEN on
//! the channels the policy caches follow. Every notification empties cached verdicts (`*`: all of them),
//! so an idle fleet must send none, and a new image only its own digest.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fathom_testkit::osv;
use sqlx::postgres::PgListener;
use support::api::{Api, Client};
use support::{WorkerProc, WorkerSpec};

/// The channels the policy engine's and the webhook's caches follow (`src/core/policy/fresh.rs`).
const CHANNELS: [&str; 3] = [
    fathom_vulns::CHANNEL,
    fathom_worker::store::IMAGES_CHANNEL,
    fathom_policy::store::CHANNEL,
];

type Notes = Arc<Mutex<Vec<(String, String)>>>;

/// Every notification on [`CHANNELS`] from now on, collected in the background.
async fn listen(url: &str) -> Notes {
    let mut listener = PgListener::connect(url).await.unwrap();
    listener.listen_all(CHANNELS).await.unwrap();
    let notes: Notes = Arc::default();
    let sink = Arc::clone(&notes);
    tokio::spawn(async move {
        while let Ok(n) = listener.recv().await {
            let mut sink = sink.lock().unwrap();
            sink.push((n.channel().to_string(), n.payload().to_string()));
        }
    });
    notes
}

/// Submits `reference`, waits until it is analyzed and its matches carry glibc's advisory (the re-match
/// round after the analysis); returns its digest.
async fn analyzed_and_matched(client: &Client, reference: &str) -> String {
    let done = client.submit_and_wait(reference).await;
    let digest = done["digest"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, answer) = client
            .get(&format!("/v1/images/{digest}/vulnerabilities"))
            .await;
        let matched = answer["matched"] == true
            && answer["vulnerabilities"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["id"] == osv::GLIBC));
        if matched {
            return digest;
        }
        assert!(
            Instant::now() < deadline,
            "{digest} never matched: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_minute_clears_no_cache_and_a_new_image_notifies_only_itself() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let pushed = support::push_samples(&["debian-python-npm", "debian-java-go"]).await;
    // The shortest interval there is: a poll of unchanged feeds falls inside the idle minute.
    let section = format!(
        "  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [{}]\n    interval: 1m\n    rematch_interval: 1s\n",
        feed.path().display(),
        osv::SAMPLE_FEEDS.join(", ")
    );
    let api = Api::start(dir.path(), db.url(), &section);
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let reference = |i: usize| format!("{}/{}", support::registry(), pushed[i].0);
    analyzed_and_matched(&client, &reference(0)).await;

    let notes = listen(db.url()).await;
    let polls_before = unchanged_polls(&client).await;
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert!(
        unchanged_polls(&client).await > polls_before,
        "no feed poll happened in the idle minute"
    );
    let idle: Vec<_> = notes.lock().unwrap().drain(..).collect();
    assert_eq!(idle, [], "cache clears in an idle minute");

    // A new image shares glibc with the first (matched already) and brings keys with no advisory: its
    // analysis, its index and its first match concern it alone.
    let second = analyzed_and_matched(&client, &reference(1)).await;
    // A few more rounds, for anything a round would still send.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent: Vec<_> = notes.lock().unwrap().clone();
    assert!(!sent.is_empty(), "the new image was not announced");
    for (channel, payload) in &sent {
        assert_eq!(payload, &second, "{channel}: {payload} (all: {sent:?})");
    }
    drop(worker);
}

/// `fathom_feed_sync_total{outcome="unchanged"}` summed over the feeds.
async fn unchanged_polls(client: &Client) -> f64 {
    let (_, metrics) = client.get("/metrics").await;
    let metrics: &str = metrics.as_str().unwrap_or_default();
    osv::SAMPLE_FEEDS
        .iter()
        .map(|f| {
            support::metric(
                metrics,
                &format!("fathom_feed_sync_total{{feed=\"{f}\",outcome=\"unchanged\"}}"),
            )
        })
        .sum()
}
