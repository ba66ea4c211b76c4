//! What keeps a stored image from an unforced delete, through a real `fathom run` on a real Postgres,
//! real workers and the run's real registry: a queued job for it, a watched tag whose current digest it
//! is, a workload seen running within the inventory TTL — each answered `409` naming it, through the
//! API and `fathom images rm`, and overridden by force (counted as `api_forced`) — and only a job for
//! this very digest: a job of a tag that moved on to another digest keeps nothing.

mod support;

use fathom_testkit::Pusher;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::Api;
use support::forget::{analyze, analyze_forced, core_config, count, deleted_by, pool, variant};
use support::{WorkerProc, WorkerSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_a_watched_tag_or_a_running_workload_keeps_an_image_unless_forced() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = support::registry();
    let repo = support::unique_repo("busy");
    let image = variant("alpine-apk", "busy");
    Pusher::new(&registry, None)
        .push(&repo, "prod", &image)
        .await
        .unwrap();
    let reference = format!("{registry}/{repo}:prod");
    let api = Api::start(
        dir.path(),
        db.url(),
        &core_config(None, "    watch_interval: 1h\n"),
    );
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let digest = analyze(&client, &reference).await;
    drop(worker);
    let path = format!("/v1/images/{digest}");
    let conflict = |answer: &(StatusCode, Value), mention: &str| {
        assert_eq!(answer.0, StatusCode::CONFLICT, "{answer:?}");
        assert_eq!(answer.1["error"]["code"], "conflict");
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(mention),
            "{message:?} should mention {mention:?}"
        );
        assert!(message.contains("force=true"), "{message}");
    };

    // A watched tag whose current digest it is.
    let (status, watch) = client
        .post("/v1/watches", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
    conflict(
        &client.delete(&path).await,
        &format!("current digest of the watched tag {reference}"),
    );
    let (status, _) = client.delete(&format!("/v1/watches/{}", watch["id"])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A queued job (nobody works on it: the worker is gone).
    let (status, queued) = client
        .post("/v1/images", json!({"reference": reference, "force": true}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let job = queued["job_id"].as_i64().unwrap();
    conflict(&client.delete(&path).await, &format!("job {job} is queued"));
    let (status, _) = client.delete(&format!("/v1/jobs/{job}")).await;
    assert!(status.is_success(), "{status}");

    // A workload seen running within the inventory TTL (as the webhook or the Pod lister records it).
    let db_pool = pool(db.url()).await;
    sqlx::query(
        "INSERT INTO fathom_inventory (namespace, owner_kind, owner_name, container, digest, image) \
         VALUES ('shop', 'ReplicaSet', 'web-7d9', 'app', $1, $2)",
    )
    .bind(&digest)
    .bind(&reference)
    .execute(&db_pool)
    .await
    .unwrap();
    conflict(
        &client.delete(&path).await,
        "seen running in shop ReplicaSet/web-7d9",
    );

    // The CLI says the same and exits 1; with --force it deletes, and the inventory rows go too.
    let out = support::cli(db.url(), &["images", "rm", &digest]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("seen running in shop"),
        "{out:?}"
    );
    let stored = client.get(&path).await;
    assert_eq!(stored.0, StatusCode::OK, "still stored: {stored:?}");
    let out = support::ok(&support::cli(
        db.url(),
        &["images", "rm", &digest, "--force"],
    ));
    assert!(out.contains(&format!("deleted {digest}")), "{out}");
    assert_eq!(client.get(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        count(
            &db_pool,
            "SELECT count(*) FROM fathom_inventory WHERE digest = $1",
            &digest
        )
        .await,
        0
    );
    let event: Value = sqlx::query_scalar(
        "SELECT data FROM notify_events WHERE type = 'dev.fathom.image.deleted' AND subject = $1",
    )
    .bind(&digest)
    .fetch_one(&db_pool)
    .await
    .unwrap();
    assert_eq!(event["forced"], true, "{event}");
    assert_eq!(event["overridden"][0]["reason"], "running", "{event}");

    // Through the API, force overrides too.
    let worker = WorkerProc::start(dir.path(), "w2", db.url(), &WorkerSpec::default());
    let digest = analyze(&client, &reference).await;
    drop(worker);
    let (status, queued) = client
        .post("/v1/images", json!({"reference": reference, "force": true}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    conflict(&client.delete(&path).await, "is queued");
    let (status, answer) = client.delete(&format!("{path}?force=true")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    // Forced past a use: `api_forced` (the CLI's delete above went to the database, not the core).
    assert_eq!(deleted_by(&api, "api_forced"), 1.0);
    assert_eq!(deleted_by(&api, "api"), 0.0);
    assert_eq!(
        client.get(&format!("/v1/images/{digest}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_job_for_this_digest_keeps_it_not_one_of_a_tag_that_moved_on() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = support::registry();
    let repo = support::unique_repo("moved");
    let (old, new) = (variant("alpine-apk", "old"), variant("alpine-apk", "new"));
    let pusher = Pusher::new(&registry, None);
    pusher.push(&repo, "prod", &old).await.unwrap();
    let reference = format!("{registry}/{repo}:prod");
    let api = Api::start(dir.path(), db.url(), &core_config(None, ""));
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let old_digest = analyze(&client, &reference).await;
    pusher.push(&repo, "prod", &new).await.unwrap();
    let new_digest = analyze_forced(&client, &reference).await;
    assert_ne!(old_digest, new_digest);
    drop(worker);

    // A job of the tag waits (nobody works on it): it analyzes the tag's newest digest.
    let (status, queued) = client
        .post("/v1/images", json!({"reference": reference, "force": true}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let job = queued["job_id"].as_i64().unwrap();
    let (status, answer) = client.delete(&format!("/v1/images/{new_digest}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer.to_string().contains(&format!("job {job} is queued")),
        "{answer}"
    );
    // The digest the tag moved away from is not what the job analyzes: it goes unforced.
    let (status, answer) = client.delete(&format!("/v1/images/{old_digest}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");

    // A job pinned to a digest keeps that digest, tag or no tag.
    let pinned_image = variant("alpine-apk", "pinned");
    pusher.push(&repo, "pinned", &pinned_image).await.unwrap();
    let worker = WorkerProc::start(dir.path(), "w2", db.url(), &WorkerSpec::default());
    let pinned = format!("{registry}/{repo}@{}", pinned_image.manifest_digest());
    let digest = analyze(&client, &pinned).await;
    drop(worker);
    let (status, queued) = client
        .post("/v1/images", json!({"reference": pinned, "force": true}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    let (status, answer) = client.delete(&format!("/v1/images/{digest}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(answer.to_string().contains("is queued"), "{answer}");
}
