//! The store forgets on purpose, through a real `fathom run` on a real Postgres, real workers and the
//! run's real registry: deleting an image (every route and lookup forgets it, its unique layers are
//! swept, a shared base stays, a cached verdict is never served again), the deletions and sweeps
//! counted on `/metrics`, and a delete racing a re-analysis. What keeps an image unless forced:
//! tests/forget_conflicts.rs; retention: tests/forget_retention.rs; cached admission verdicts:
//! tests/forget_webhook.rs.

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::osv;
use fathom_testkit::Pusher;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;
use support::api::Api;
use support::forget::{
    analyze, core_config, core_metric, count, deleted_by, deleted_events, layer_digests,
    layers_stored, poll, pool, variant,
};
use support::{WorkerProc, WorkerSpec};

fn carriers(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["manifest_digest"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_image_is_gone_from_every_route_its_own_layers_are_swept_and_the_shared_base_stays(
) {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let registry = support::registry();
    let repo = support::unique_repo("shared");
    let (gone, kept) = (
        variant("debian-python-npm", "gone"),
        variant("debian-python-npm", "kept"),
    );
    let pusher = Pusher::new(&registry, None);
    pusher.push(&repo, "gone", &gone).await.unwrap();
    pusher.push(&repo, "kept", &kept).await.unwrap();
    let api = Api::start(dir.path(), db.url(), &core_config(Some(feed.path()), ""));
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let gone_ref = format!("{registry}/{repo}:gone");
    let a = analyze(&client, &gone_ref).await;
    let b = analyze(&client, &format!("{registry}/{repo}:kept")).await;
    assert_eq!((&a, &b), (&gone.manifest_digest(), &kept.manifest_digest()));
    let (gone_layers, kept_layers) = (layer_digests(&gone), layer_digests(&kept));
    let shared: Vec<String> = gone_layers
        .iter()
        .filter(|l| kept_layers.contains(l))
        .cloned()
        .collect();
    let own = gone_layers.last().unwrap().clone();
    assert!(!shared.is_empty() && !shared.contains(&own));
    for digest in [&a, &b] {
        poll(
            &client,
            &format!("/v1/images/{digest}/vulnerabilities"),
            |s, v| s == StatusCode::OK && v["matched"] == true,
        )
        .await;
    }
    let glibc = format!("/v1/vulnerabilities/{}/images", osv::alias(osv::GLIBC));
    let mut both = carriers(&client.get(&glibc).await.1);
    both.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(both, expected);

    // A check is cached (the second answer is a hit) before the delete.
    let check = format!("/v1/images/{a}/check");
    let first = client
        .request(reqwest::Method::GET, &check)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let again = client
        .request(reqwest::Method::GET, &check)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["fathom-cache"], "hit");
    let db_pool = pool(db.url()).await;
    assert_eq!(
        count(
            &db_pool,
            "SELECT count(*) FROM fathom_policy_evaluations WHERE image_digest = $1",
            &a
        )
        .await,
        1
    );

    // Bad input first: a malformed digest is 422, an unknown one 404, never a 500.
    let (status, answer) = client.delete("/v1/images/sha256:NOPE").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["code"], "invalid_digest");
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (status, answer) = client.delete(&format!("/v1/images/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    assert_eq!(deleted_by(&api, "api"), 0.0);
    let (status, answer) = client.delete(&format!("/v1/images/{a}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    // Counted by cause; an unforced delete is `api`, nothing else moved.
    assert_eq!(deleted_by(&api, "api"), 1.0);
    assert_eq!(deleted_by(&api, "api_forced"), 0.0);
    // Deleting twice: 404, not a 500.
    let (status, answer) = client.delete(&format!("/v1/images/{a}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");

    // Every route forgets it; the cached verdict is never served again.
    for route in [
        "",
        "/packages",
        "/sbom",
        "/layers",
        "/files",
        "/vulnerabilities",
        "/check",
    ] {
        let (status, answer) = client.get(&format!("/v1/images/{a}{route}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{route}: {answer}");
    }
    let (_, checks) = client.get(&format!("/v1/images/{a}/checks")).await;
    assert_eq!(checks["items"], json!([]), "{checks}");
    let (_, by_name) = client.get("/v1/packages?name=forget-gone").await;
    assert_eq!(
        by_name["items"].as_array().map(Vec::len).unwrap_or(0),
        0,
        "{by_name}"
    );
    let (_, by_base) = client.get("/v1/packages?name=libc6").await;
    let holders: Vec<&str> = by_base["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["manifest_digest"].as_str().unwrap())
        .collect();
    assert!(
        holders.contains(&b.as_str()) && !holders.contains(&a.as_str()),
        "{by_base}"
    );
    assert_eq!(
        carriers(&client.get(&glibc).await.1),
        std::slice::from_ref(&b)
    );
    for (table, column) in [
        ("fathom_image_references", "manifest_digest"),
        ("fathom_vuln_images", "manifest_digest"),
        ("fathom_vuln_image_packages", "manifest_digest"),
        ("fathom_policy_evaluations", "image_digest"),
    ] {
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = $1");
        assert_eq!(count(&db_pool, &sql, &a).await, 0, "{table}");
    }
    assert_eq!(deleted_events(&db_pool, &a).await, 1);

    // The sweeper takes the deleted image's own layer; the base it shares stays.
    let deadline = Instant::now() + Duration::from_secs(30);
    while layers_stored(&db_pool, std::slice::from_ref(&own))
        .await
        .len()
        == 1
    {
        assert!(Instant::now() < deadline, "layer {own} never swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut kept_sorted = kept_layers.clone();
    kept_sorted.sort();
    kept_sorted.dedup();
    // The sweep counted what it took, timed its passes and failed none.
    assert!(core_metric(&api, "fathom_core_swept_layers_total") >= 1.0);
    assert!(
        core_metric(
            &api,
            "fathom_core_forget_pass_duration_seconds_count{task=\"layer_sweep\"}"
        ) >= 1.0
    );
    assert_eq!(
        core_metric(
            &api,
            "fathom_core_forget_pass_errors_total{task=\"layer_sweep\"}"
        ),
        0.0
    );
    assert_eq!(layers_stored(&db_pool, &kept_layers).await, kept_sorted);

    // The other image answers every route as before.
    for route in [
        "",
        "/packages",
        "/sbom",
        "/layers",
        "/files",
        "/vulnerabilities",
        "/check",
    ] {
        let (status, answer) = client.get(&format!("/v1/images/{b}{route}")).await;
        assert_eq!(status, StatusCode::OK, "{route}: {answer}");
    }
    let (_, files) = client
        .get(&format!("/v1/images/{b}/files?path_prefix=/srv"))
        .await;
    assert!(files.to_string().contains("forget-kept"), "{files}");

    // Submitted again, it is analyzed as new.
    let (status, again) = client
        .post("/v1/images", json!({"reference": gone_ref}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["created"], true, "{again}");
    let done = client.wait_done(again["job_id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "analyzed", "{done}");
    let (status, _) = client.get(&format!("/v1/images/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, by_name) = client.get("/v1/packages?name=forget-gone").await;
    assert_eq!(by_name["items"].as_array().unwrap().len(), 1, "{by_name}");
    drop(worker);
}

/// Whether everything keyed by `digest` agrees: no image and nothing else, or the image with its
/// references, a document and every layer it names in the cache (or never stored: a failed write).
async fn whole_or_gone(pool: &PgPool, digest: &str) -> bool {
    let image: Option<(String, Vec<String>, String, bool)> = sqlx::query_as(
        "SELECT status, layers, cache_key, document IS NOT NULL FROM fathom_images WHERE manifest_digest = $1",
    )
    .bind(digest)
    .fetch_optional(pool)
    .await
    .unwrap();
    let refs = count(
        pool,
        "SELECT count(*) FROM fathom_image_references WHERE manifest_digest = $1",
        digest,
    )
    .await;
    let index = count(
        pool,
        "SELECT count(*) FROM fathom_vuln_images WHERE manifest_digest = $1",
        digest,
    )
    .await
        + count(
            pool,
            "SELECT count(*) FROM fathom_vuln_image_packages WHERE manifest_digest = $1",
            digest,
        )
        .await;
    match image {
        None => {
            assert_eq!(
                (refs, index),
                (0, 0),
                "deleted, yet rows remain for {digest}"
            );
            false
        }
        Some((status, layers, key, has_document)) => {
            assert_eq!((status.as_str(), has_document), ("analyzed", true));
            assert!(refs >= 1, "stored without references");
            let stored: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT digest) FROM fathom_layers WHERE digest = ANY($1) AND cache_key = $2",
            )
            .bind(&layers)
            .bind(&key)
            .fetch_one(pool)
            .await
            .unwrap();
            let mut distinct = layers.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(
                stored,
                distinct.len() as i64,
                "stored with layers swept from under it"
            );
            true
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_re_analysis_leaves_the_old_or_the_new_record_whole() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = support::registry();
    let repo = support::unique_repo("race");
    let image = variant("debian-python-npm", "race");
    Pusher::new(&registry, None)
        .push(&repo, "1", &image)
        .await
        .unwrap();
    let reference = format!("{registry}/{repo}:1");
    let api = Api::start(dir.path(), db.url(), &core_config(None, ""));
    let client = api.client();
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let digest = analyze(&client, &reference).await;
    let db_pool = pool(db.url()).await;
    let mut outcomes = (0, 0);
    // The delete lands at different points of the forced re-analysis (claim, layers, commit); the
    // sweeper (every second, no grace) takes the layers of whatever was deleted meanwhile.
    for delay_ms in [0u64, 5, 20, 50, 100, 200, 400, 800] {
        let (status, queued) = client
            .post("/v1/images", json!({"reference": reference, "force": true}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
        let job = queued["job_id"].as_i64().unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let (status, answer) = client
            .delete(&format!("/v1/images/{digest}?force=true"))
            .await;
        assert!(
            matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_FOUND),
            "{status} {answer}"
        );
        let done = poll(&client, &format!("/v1/images/by-job/{job}"), |_, e| {
            matches!(e["status"].as_str(), Some("analyzed" | "failed"))
        })
        .await;
        assert_eq!(
            done["status"], "analyzed",
            "a retried save still lands: {done}"
        );
        if whole_or_gone(&db_pool, &digest).await {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
        // Settle on a stored image before the next round.
        if client.get(&format!("/v1/images/{digest}")).await.0 == StatusCode::NOT_FOUND {
            analyze(&client, &reference).await;
        }
        assert!(whole_or_gone(&db_pool, &digest).await);
    }
    eprintln!(
        "rounds ending with the new record: {}, with none: {}",
        outcomes.0, outcomes.1
    );
}
