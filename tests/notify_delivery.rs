//! Notifications delivered on real parts: a real `fathom run` core, a real PostgreSQL, a real HTTP
//! receiver on loopback. Events are written by this test process (another process than the core), as a
//! worker or `fathom vulns sync` writes them; the core's dispatcher delivers them signed, in order per
//! subject, around endpoints that fail, hang, redirect or present a certificate nobody trusts.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use fathom_notify::{types, write_many, NewEvent};
use serde_json::{json, Value};
use sqlx::PgPool;
use support::api::Api;
use support::delivery::{endpoint, Scene, SECRET};
use support::free_addr;
use support::receiver::{Got, Mode};

/// Writes `per_subject` events for each subject, interleaved over several transactions (one rolled
/// back, which must write nothing); returns the committed events' (subject, n) in write order.
async fn write_events(
    pool: &PgPool,
    subjects: &[&str],
    per_subject: usize,
    from: usize,
) -> Vec<(String, usize)> {
    let mut written = Vec::new();
    for n in from..from + per_subject {
        let events: Vec<NewEvent> = subjects
            .iter()
            .map(|s| {
                let kind = if s.starts_with("registry") {
                    types::TAG_MOVED
                } else {
                    types::IMAGE_ANALYZED
                };
                NewEvent::new(kind, *s, json!({ "n": n }))
            })
            .collect();
        let mut tx = pool.begin().await.unwrap();
        write_many(&mut tx, &events).await.unwrap();
        tx.commit().await.unwrap();
        written.extend(subjects.iter().map(|s| (s.to_string(), n)));
        let mut rolled_back = pool.begin().await.unwrap();
        write_many(
            &mut rolled_back,
            &[NewEvent::new(
                types::IMAGE_ANALYZED,
                "sha256:rolledback",
                json!({}),
            )],
        )
        .await
        .unwrap();
        rolled_back.rollback().await.unwrap();
    }
    written
}

/// Checks what `got` holds: every event signed and well-formed, and per subject the `n`s of first
/// arrivals in increasing order; returns the distinct (subject, n) received.
fn check_order(got: &[Got]) -> Vec<(String, usize)> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    let mut out = Vec::new();
    for g in got {
        assert_eq!(g.verified, Ok(()), "signature of {}", g.event);
        assert!(
            g.content_type.starts_with("application/cloudevents+json"),
            "{}",
            g.content_type
        );
        assert_eq!(g.event["specversion"], "1.0");
        assert_eq!(g.event["source"], "https://fathom.test");
        assert_eq!(g.event["datacontenttype"], "application/json");
        if !ids.insert(g.event["id"].as_str().unwrap().to_string()) {
            continue; // a duplicate (at-least-once): receivers drop it by id
        }
        let subject = g.event["subject"].as_str().unwrap().to_string();
        let n = g.event["data"]["n"].as_u64().unwrap() as usize;
        if let Some(prev) = seen.insert(subject.clone(), n) {
            assert!(n > prev, "{subject}: event {n} arrived after {prev}");
        }
        out.push((subject, n));
    }
    out
}

async fn delivery_rows(pool: &PgPool, endpoint: &str) -> Vec<(String, i32, Option<String>)> {
    sqlx::query_as(
        "SELECT state, attempts, last_error FROM notify_deliveries WHERE endpoint = $1 ORDER BY id",
    )
    .bind(endpoint)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Waits until every delivery to `endpoint` was attempted and failed with an error containing `want`.
async fn wait_failing(pool: &PgPool, endpoint: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = delivery_rows(pool, endpoint).await;
        let failing = rows
            .iter()
            .filter(|(state, attempts, e)| {
                state == "pending"
                    && *attempts >= 1
                    && e.as_deref()
                        .is_some_and(|e| e.to_lowercase().contains(want))
            })
            .count();
        if failing >= 1 && rows.iter().all(|r| r.0 == "pending") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint}: want pending and failing with {want:?}: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_events_arrive_in_order_and_bad_endpoints_block_no_one() {
    let scene = Scene::new().await;
    let Scene { pool, dir, rx, .. } = &scene;
    rx.set("down", Mode::Status(503));
    rx.set("hang", Mode::Hang);
    rx.set("redirect", Mode::Redirect("good".into()));
    let webhook = free_addr();
    let endpoints = [
        endpoint("good", &rx.url("good"), ""),
        endpoint("tags", &rx.url("tags"), ", events: [dev.fathom.tag.]"),
        endpoint("down", &rx.url("down"), ""),
        endpoint("hang", &rx.url("hang"), ", timeout: 500ms"),
        endpoint("redirect", &rx.url("redirect"), ""),
        endpoint("badtls", &format!("https://{webhook}/validate"), ""),
    ]
    .concat();
    let notifications = format!(
        "    poll_interval: 200ms\n    backoff_base: 100ms\n    backoff_cap: 1s\n    probe_interval: 1s\n    \
         endpoints:\n{endpoints}"
    );
    let subjects = ["sha256:aaaa", "sha256:bbbb", "registry.test/app:1"];
    // Half written before the core starts, half while it runs (delivered on the commit's NOTIFY).
    let mut written = write_events(pool, &subjects, 3, 0).await;
    let api = scene.core_in(dir.path(), &webhook, &notifications);
    written.extend(write_events(pool, &subjects, 3, 3).await);
    let total = written.len();

    let started = Instant::now();
    let got = rx.wait_for("good", total, Duration::from_secs(10)).await;
    let mut received = check_order(&got);
    received.sort();
    written.sort();
    assert_eq!(received, written, "good got exactly what was committed");
    eprintln!(
        "good: {total} events in {:?} while hang, down, redirect and badtls failed",
        started.elapsed()
    );

    let tag_events: Vec<_> = written
        .iter()
        .filter(|(s, _)| s.starts_with("registry"))
        .cloned()
        .collect();
    let mut tags = check_order(
        &rx.wait_for("tags", tag_events.len(), Duration::from_secs(10))
            .await,
    );
    tags.sort();
    assert_eq!(
        tags, tag_events,
        "a prefix selects the events an endpoint gets"
    );

    wait_failing(pool, "hang", "no answer within 500ms").await;
    wait_failing(pool, "redirect", "redirect").await;
    wait_failing(pool, "badtls", "certificate").await;
    wait_failing(pool, "down", "http 503").await;
    // The redirect was never followed: good got nothing twice.
    assert_eq!(rx.got("good").len(), total);
    // A down endpoint is probed by one delivery at a time, not hammered with every one it is owed.
    let probes = rx.attempts("down");
    assert!(
        probes < total,
        "down saw {probes} requests for {total} owed events"
    );

    // The receiver comes back: everything owed arrives, in order per subject, within the probe interval
    // and a few round trips.
    rx.set("down", Mode::Ok);
    let back = Instant::now();
    let mut down = check_order(&rx.wait_for("down", total, Duration::from_secs(10)).await);
    eprintln!(
        "down: {total} owed events within {:?} of its return",
        back.elapsed()
    );
    down.sort();
    assert_eq!(down, written);

    // Metrics, and no secret anywhere: logs, rows, metrics.
    let (_, metrics) = support::http_get(&api.addr, "/metrics").unwrap();
    let delivered = format!(
        "fathom_notify_deliveries_total{{endpoint=\"good\",outcome=\"delivered\"}} {total}"
    );
    assert!(
        metrics.contains(&delivered),
        "{delivered} not in:\n{metrics}"
    );
    assert!(metrics.contains("fathom_notify_dispatcher_leader 1"));
    assert!(
        metrics
            .contains("fathom_notify_delivery_latency_seconds_bucket{endpoint=\"good\",le=\"10\"}"),
        "{metrics}"
    );
    let rows: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(d)::text FROM notify_deliveries d")
            .fetch_all(pool)
            .await
            .unwrap();
    let logs = [
        std::fs::read_to_string(&api.log).unwrap_or_default(),
        std::fs::read_to_string(dir.path().join("core.err")).unwrap_or_default(),
    ]
    .concat();
    for (what, text) in [
        ("rows", rows.concat()),
        ("logs", logs),
        ("metrics", metrics),
    ] {
        assert!(!text.contains(SECRET), "the secret is in the {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_retry_window_a_delivery_is_dead_until_retried() {
    let scene = Scene::new().await;
    let Scene { pool, rx, .. } = &scene;
    rx.set("down", Mode::Status(500));
    let notifications = format!(
        "    poll_interval: 200ms\n    backoff_base: 100ms\n    backoff_cap: 300ms\n    probe_interval: 300ms\n    \
         retry_window: 1s\n    endpoints:\n{}",
        endpoint("down", &rx.url("down"), "")
    );
    let api = scene.core(&notifications);
    let written = write_events(pool, &["sha256:cccc", "sha256:dddd"], 2, 0).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let rows = delivery_rows(pool, "down").await;
        if rows.len() == written.len() && rows.iter().all(|r| r.0 == "dead") {
            assert!(
                rows.iter()
                    .all(|r| r.2.as_deref().is_some_and(|e| e.contains("retry window"))),
                "{rows:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never all dead: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, metrics) = support::http_get(&api.addr, "/metrics").unwrap();
    assert!(
        !metrics.contains("fathom_notify_deliveries_total{endpoint=\"down\",outcome=\"dead\"} 0"),
        "{metrics}"
    );

    rx.set("down", Mode::Ok);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        rx.got("down").is_empty(),
        "a dead delivery went out without a retry"
    );
    let retried = api_retry(&api, json!({"endpoint": "down"})).await;
    assert_eq!(retried, written.len() as u64);
    let mut got = check_order(
        &rx.wait_for("down", written.len(), Duration::from_secs(10))
            .await,
    );
    got.sort();
    let mut want = written.clone();
    want.sort();
    assert_eq!(got, want);
}

/// Retries dead deliveries through the core (`POST /v1/notifications/deliveries/retry`); returns the count.
async fn api_retry(api: &Api, body: Value) -> u64 {
    let (status, answer) = api
        .client()
        .post("/v1/notifications/deliveries/retry", body)
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["retried"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_killed_during_delivery_loses_nothing() {
    let scene = Scene::new().await;
    let Scene { pool, dir, rx, .. } = &scene;
    rx.set("slow", Mode::Slow(Duration::from_millis(150)));
    let subjects: Vec<String> = (0..4).map(|i| format!("sha256:{i:064}")).collect();
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let written = write_events(pool, &subjects, 10, 0).await;
    let notifications = format!(
        "    poll_interval: 200ms\n    concurrency: 2\n    endpoints:\n{}",
        endpoint("slow", &rx.url("slow"), "")
    );
    let first_dir = dir.path().join("first");
    std::fs::create_dir_all(&first_dir).unwrap();
    let first = scene.core_in(&first_dir, &free_addr(), &notifications);
    rx.wait_for("slow", 6, Duration::from_secs(20)).await;
    // SIGKILL mid-delivery (two requests in flight at 150 ms each).
    drop(first);
    let pending: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notify_deliveries WHERE state = 'pending'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        pending > 0,
        "everything was delivered before the kill: the test proves nothing"
    );

    let second_dir = dir.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let _second = scene.core_in(&second_dir, &free_addr(), &notifications);
    let mut got = check_order(
        &rx.wait_for("slow", written.len(), Duration::from_secs(30))
            .await,
    );
    got.sort();
    let mut want = written.clone();
    want.sort();
    assert_eq!(
        got, want,
        "every committed event arrived (duplicates dropped by id)"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM notify_deliveries WHERE state <> 'delivered'")
                .fetch_one(pool)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} deliveries not marked delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_by_fathom_vulns_sync_is_delivered_by_the_core() {
    let scene = Scene::new().await;
    let Scene {
        db, pool, dir, rx, ..
    } = &scene;
    let notifications = format!(
        "    poll_interval: 200ms\n    endpoints:\n{}",
        endpoint(
            "vulns",
            &rx.url("vulns"),
            ", events: [dev.fathom.image.vulnerabilities.]"
        )
    );
    let _api = scene.core(&notifications);
    let digest = format!("sha256:{}", "e".repeat(64));
    support::notify_data::store_image(pool, &digest).await;
    let feed = dir.path().join("feed");
    support::notify_data::hot_feed(&feed);
    // `fathom vulns sync` in a process of its own: its re-match writes the event in its transaction.
    let out = support::fathom()
        .args(["vulns", "sync", "--ecosystems", "Debian", "--from"])
        .arg(&feed)
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = rx.wait_for("vulns", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].verified, Ok(()));
    assert_eq!(got[0].event["type"], types::IMAGE_VULNERABILITIES_CHANGED);
    assert_eq!(got[0].event["subject"], digest.as_str());
    assert!(
        got[0].event["data"].to_string().contains("HOT-1"),
        "{}",
        got[0].event
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_endpoint_is_probed_not_hammered_and_gets_everything_on_its_return() {
    let scene = Scene::new().await;
    let Scene { pool, rx, .. } = &scene;
    rx.set("down", Mode::Status(503));
    let notifications = format!(
        "    poll_interval: 200ms\n    backoff_base: 100ms\n    backoff_cap: 500ms\n    probe_interval: 1s\n    \
         endpoints:\n{}",
        endpoint("down", &rx.url("down"), "")
    );
    let _api = scene.core(&notifications);
    // 40 subjects: 40 heads that could all go out at once.
    let subjects: Vec<String> = (0..40).map(|i| format!("sha256:{i:064}")).collect();
    let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let written = write_events(pool, &subjects, 1, 0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = rx.attempts("down");
    // Without probing, every owed delivery retries on its own backoff: well over 40 requests in 4 s.
    assert!(
        during < written.len(),
        "the down endpoint saw {during} requests in 4 s for {} owed events",
        written.len()
    );
    rx.set("down", Mode::Ok);
    let back = Instant::now();
    rx.wait_for("down", written.len(), Duration::from_secs(10))
        .await;
    eprintln!(
        "{during} requests while down; {} owed events within {:?} of its return",
        written.len(),
        back.elapsed()
    );
}
