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

/// An entry as an event and the API both show it: (id, package name, version) → (severity, fix).
type Entries = std::collections::BTreeMap<(String, String, String), (Value, Value)>;

fn entries(list: &Value) -> Entries {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let key = |v: &Value| v.as_str().unwrap().to_string();
            (
                (
                    key(&e["id"]),
                    key(&e["package"]["name"]),
                    key(&e["package"]["version"]),
                ),
                (e["severity"].clone(), e["fix"].clone()),
            )
        })
        .collect()
}

/// `GET /v1/images/{digest}/vulnerabilities` once the image is matched.
async fn api_entries(client: &support::api::Client, digest: &str) -> Entries {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, answer) = client
            .get(&format!("/v1/images/{digest}/vulnerabilities"))
            .await;
        if answer["matched"] == true {
            return entries(&answer["vulnerabilities"]);
        }
        assert!(Instant::now() < deadline, "never matched: {answer}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vulns_sync_as_its_own_process_writes_feed_synced_and_the_diff_the_api_shows() {
    use fathom_testkit::osv;
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let config = format!(
        "  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [{}]\n    rematch_interval: 1s\n",
        feed.path().display(),
        osv::SAMPLE_FEEDS.join(", ")
    );
    let api = Api::start(dir.path(), db.url(), &config);
    let client = api.client();
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let done = client
        .submit_and_wait(&format!("{}/{}", support::registry(), pushed[0].0))
        .await;
    let digest = done["digest"].as_str().unwrap().to_string();

    // The core's first round reports the image's first match whole: what the API shows.
    let changed = "dev.fathom.image.vulnerabilities.changed";
    let first = wait_events(db.url(), changed, 1, Duration::from_secs(60)).await;
    let before = api_entries(&client, &digest).await;
    assert_eq!(first[0].0, digest);
    assert_eq!(first[0].1["first_match"], true);
    assert!(!before.is_empty());
    assert_eq!(entries(&first[0].1["added"]), before);
    let synced_by_core = of(db.url(), "dev.fathom.feed.synced").await.len();

    // The feed's second edition (the pygments fix), synced by `fathom vulns sync` as its own process.
    osv::write_sample_feed(feed.path(), true).unwrap();
    let out = support::fathom()
        .args([
            "vulns",
            "sync",
            "--json",
            "--database-url",
            db.url(),
            "--from",
        ])
        .arg(feed.path())
        .args(["--ecosystems", &osv::SAMPLE_FEEDS.join(",")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let synced = of(db.url(), "dev.fathom.feed.synced").await;
    assert_eq!(synced.len(), synced_by_core + 1, "{synced:?}");
    let (subject, data) = synced.last().unwrap();
    assert_eq!(subject, "PyPI");
    assert!(data["changed_names"].as_u64().unwrap() >= 1, "{data}");

    // The image's diff equals the difference of what the API shows before and after.
    let diff = wait_events(db.url(), changed, 2, Duration::from_secs(30)).await;
    let after = api_entries(&client, &digest).await;
    let data = &diff[1].1;
    assert_eq!(data["first_match"], false);
    let updated: Entries = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(!updated.is_empty());
    assert_eq!(entries(&data["updated"]), updated);
    let added: Entries = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(entries(&data["added"]), added);
    let removed: Entries = before
        .iter()
        .filter(|(k, _)| !after.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(entries(&data["removed"]), removed);
    assert!(data["references"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r.as_str().unwrap().ends_with(&pushed[0].0)));
}

/// A bundle mapping every image to one policy that STOPs when package `name` is installed.
fn blacklist(id: &str, name: &str) -> Value {
    json!({
        "id": id, "version": "1_0", "name": id,
        "policies": [{"id": format!("{id}-policy"), "version": "1_0", "rules": [
            {"id": "no-pkg", "gate": "packages", "trigger": "blacklist", "action": "STOP",
             "params": [{"name": "name", "value": name}]}]}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"},
                      "policy_ids": [format!("{id}-policy")], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_changed_is_written_only_when_an_in_scope_final_action_changes() {
    let registry = support::registry();
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "  catalog:\n    watch_interval: 1s\n  policy_engine:\n    scope_interval: 1s\n\
         registry:\n  insecure: ['{registry}']\n"
    );
    let api = Api::start(dir.path(), db.url(), &config);
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let client = api.client();
    let kind = "dev.fathom.image.policy.changed";
    // A bundle the image passes (its blacklisted package is nowhere).
    let (status, answer) = client
        .post(
            "/v1/policies?active=true",
            blacklist("go-pkg", "no-such-package"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let repo = support::unique_repo("policy");
    let image = sample("alpine-apk");
    Pusher::new(&registry, None)
        .push(&repo, "prod", &image)
        .await
        .unwrap();
    let reference = format!("{registry}/{repo}:prod");
    let (status, watch) = client
        .post("/v1/watches", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
    let job = watch["history"][0]["job_id"].as_i64().unwrap();
    assert_eq!(client.wait_done(job).await["status"], "analyzed");

    // In scope (a watched tag's digest): its first evaluation is recorded, GO.
    let changed = wait_events(db.url(), kind, 1, Duration::from_secs(20)).await;
    let (subject, data) = &changed[0];
    assert_eq!(subject, &image.manifest_digest());
    assert_eq!(data["previous"], Value::Null);
    assert_eq!(data["final_action"], "go");
    assert_eq!(data["bundle_id"], "go-pkg");
    assert_eq!(data["tag"], reference.as_str());

    // Idle rounds: nothing more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(of(db.url(), kind).await.len(), 1);

    // Activating a bundle that stops it: GO -> STOP, with the trigger that fired.
    let (status, answer) = client
        .post("/v1/policies?active=true", blacklist("stop-pkg", "musl"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let changed = wait_events(db.url(), kind, 2, Duration::from_secs(10)).await;
    let data = &changed[1].1;
    assert_eq!(data["previous"], "go");
    assert_eq!(data["final_action"], "stop");
    assert_eq!(data["bundle_id"], "stop-pkg");
    assert!(data["bundle_digest"].as_str().unwrap().len() > 10, "{data}");
    assert_eq!(data["triggers"][0]["gate"], "packages", "{data}");
    let _: fathom_notify::data::PolicyChanged = serde_json::from_value(data.clone()).unwrap();

    // Another bundle that agrees (still STOP) is no news.
    let (status, answer) = client
        .post("/v1/policies?active=true", blacklist("stop-too", "musl"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(of(db.url(), kind).await.len(), 2);
}
