//! Data before verdicts, in a real `fathom run`: an image analyzed after the core's feed round (its
//! next round an hour away) is matched on demand when it is checked, so a STOP rule on its
//! vulnerabilities fires instead of reading "vulnerability data unavailable".

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::osv;
use reqwest::StatusCode;
use serde_json::json;
use support::api::Api;
use support::{test_db, WorkerProc, WorkerSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_the_match_round_has_not_reached_is_matched_on_demand_and_judged() {
    let db = test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let digest = pushed[0].1.manifest_digest();
    let api = Api::start(
        dir.path(),
        db.url(),
        &format!(
            "  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [{}]\n    rematch_interval: 1h\n",
            feed.path().display(),
            osv::SAMPLE_FEEDS.join(", ")
        ),
    );
    let client = api.client();
    // The core's first round syncs the feeds (nothing analyzed yet to match); the next is an hour away.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM fathom_vuln_feeds WHERE generation IS NOT NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if live as usize == osv::SAMPLE_FEEDS.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the feeds never synced");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    client.submit_and_wait(&reference).await;
    let indexed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fathom_vuln_images WHERE manifest_digest = $1")
            .bind(&digest)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        indexed, 0,
        "the round already reached the image: nothing to prove"
    );

    let critical = json!({
        "id": "no-critical", "version": "1_0", "name": "no-critical",
        "policies": [{"id": "p", "version": "1_0", "rules": [
            {"id": "crit", "gate": "vulnerabilities", "trigger": "package", "action": "STOP",
             "params": [{"name": "package_type", "value": "all"},
                        {"name": "severity_comparison", "value": ">="},
                        {"name": "severity", "value": "critical"}]}]}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    });
    let (status, body) = client.post("/v1/policies?active=true", critical).await;
    assert!(status.is_success(), "{status} {body}");
    let (status, e) = client.get(&format!("/v1/images/{digest}/check")).await;
    assert_eq!(status, StatusCode::OK, "{e}");
    assert_eq!(e["final_action"], "STOP", "{e}");
    let rows = e["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["check_output"]
            .as_str()
            .is_some_and(|o| o.contains(osv::GLIBC))),
        "the critical glibc match decides: {e}"
    );
    assert!(rows.iter().all(|r| r["error"] == false), "{e}");
    // The image's vulnerabilities now read as matched through the API too.
    let (_, v) = client
        .get(&format!("/v1/images/{digest}/vulnerabilities"))
        .await;
    assert_eq!(v["matched"], true, "{v}");
}
