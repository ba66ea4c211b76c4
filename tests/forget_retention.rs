//! Retention (`services.catalog.retention`) through a real `fathom run` on a real Postgres, real workers
//! and the run's real registry: `keep_per_tag` keeps exactly that many digests of a watched tag pushed
//! again and again; `untagged_after` deletes old digests nothing points at and keeps those a watched
//! tag, a running workload, a queued job or their youth keep; `fathom images prune --dry-run` lists
//! what the rules would delete, and why.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use fathom_testkit::{BuiltImage, Pusher};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::Api;
use support::forget::{
    analyze, analyze_forced, core_config, core_metric, deleted_by, deleted_events, poll, pool,
    variant,
};
use support::{WorkerProc, WorkerSpec};

/// `fathom images prune --dry-run` with `retention` lines (`services.catalog.retention`); its stdout.
fn dry_run(dir: &Path, url: &str, retention: &str) -> String {
    let config = dir.join("prune.yaml");
    std::fs::write(
        &config,
        format!("services:\n  catalog:\n    retention:\n{retention}"),
    )
    .unwrap();
    support::ok(
        &support::fathom()
            .args(["images", "prune", "--dry-run", "--config"])
            .arg(&config)
            .args(["--database-url", url])
            .output()
            .unwrap(),
    )
}

/// The digests of the output's lines starting with `verb` (`would delete`, `would keep`).
fn listed(out: &str, verb: &str) -> BTreeSet<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix(verb))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_after_deletes_old_digests_nothing_points_at_and_keeps_what_is_watched_running_queued_or_young(
) {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = support::registry();
    let repo = support::unique_repo("untagged");
    let pusher = Pusher::new(&registry, None);
    let setup = dir.path().join("setup");
    std::fs::create_dir_all(&setup).unwrap();
    // Retention off while the scene is set: the watch stays on its first digest (no pass for an hour).
    let api = Api::start(
        &setup,
        db.url(),
        &core_config(None, "    watch_interval: 1h\n"),
    );
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let newest = variant("alpine-apk", "newest");
    // Each tag gets an image of its own, analyzed, then moves to `newest`, analyzed again: its first
    // image is no reference's newest image any more.
    let mut first: Vec<(String, String)> = Vec::new();
    let mut watch_id = 0;
    for tag in ["moved", "watched", "running", "young", "queued"] {
        let image = variant("alpine-apk", tag);
        pusher.push(&repo, tag, &image).await.unwrap();
        let reference = format!("{registry}/{repo}:{tag}");
        let digest = analyze(&client, &reference).await;
        assert_eq!(digest, image.manifest_digest());
        if tag == "watched" {
            let (status, watch) = client
                .post("/v1/watches", json!({"reference": reference}))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{watch}");
            assert_eq!(watch["digest"], digest.as_str(), "{watch}");
            watch_id = watch["id"].as_i64().unwrap();
        }
        pusher.push(&repo, tag, &newest).await.unwrap();
        assert_eq!(
            analyze_forced(&client, &reference).await,
            newest.manifest_digest()
        );
        first.push((tag.to_string(), digest));
    }
    // One more image only ever submitted pinned to its digest: a pinned reference is no tag.
    let pinned_image = variant("alpine-apk", "pinned");
    pusher.push(&repo, "pinned", &pinned_image).await.unwrap();
    let pinned = analyze(
        &client,
        &format!("{registry}/{repo}@{}", pinned_image.manifest_digest()),
    )
    .await;
    drop(worker);
    let digest_of = |tag: &str| first.iter().find(|(t, _)| t == tag).unwrap().1.clone();
    let (moved, watched, running, young, queued) = (
        digest_of("moved"),
        digest_of("watched"),
        digest_of("running"),
        digest_of("young"),
        digest_of("queued"),
    );

    // The running one was seen in a workload a minute ago (the webhook or the Pod lister records it).
    let db_pool = pool(db.url()).await;
    sqlx::query(
        "INSERT INTO fathom_inventory (namespace, owner_kind, owner_name, container, digest, image, last_seen) \
         VALUES ('shop', 'ReplicaSet', 'web-7d9', 'app', $1, $2, now() - interval '1 minute')",
    )
    .bind(&running)
    .bind(format!("{registry}/{repo}:running"))
    .execute(&db_pool)
    .await
    .unwrap();
    // The queued one has an analysis waiting (nobody works on it: the worker is gone).
    let (status, job) = client
        .post(
            "/v1/images",
            json!({"reference": format!("{registry}/{repo}@{queued}"), "force": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    // Everything but the young one was analyzed two days ago; `newest` is every tag's current digest.
    let old: Vec<&String> = vec![&moved, &watched, &running, &queued, &pinned];
    let mut aged: Vec<String> = old.iter().map(|d| d.to_string()).collect();
    aged.push(newest.manifest_digest());
    sqlx::query(
        "UPDATE fathom_images SET analyzed_at = now() - interval '2 days' WHERE manifest_digest = ANY($1)",
    )
    .bind(&aged)
    .execute(&db_pool)
    .await
    .unwrap();
    drop(api);

    // The dry run lists exactly the two with the rule's reason, and the two kept with theirs.
    let rules = "      untagged_after: 1d\n";
    let out = dry_run(dir.path(), db.url(), rules);
    let doomed: BTreeSet<String> = [moved.clone(), pinned.clone()].into();
    assert_eq!(listed(&out, "would delete "), doomed, "{out}");
    assert_eq!(
        listed(&out, "would keep "),
        [running.clone(), queued.clone()].into(),
        "{out}"
    );
    for line in out.lines().filter(|l| l.starts_with("would delete")) {
        assert!(
            line.contains("(untagged_after): no tag or watch points at it")
                && line.contains("more than untagged_after (1day) ago"),
            "{line}"
        );
    }
    assert!(
        out.contains("seen running in shop ReplicaSet/web-7d9"),
        "{out}"
    );
    assert!(out.contains("is queued for"), "{out}");
    for digest in &doomed {
        assert_eq!(
            deleted_events(&db_pool, digest).await,
            0,
            "a dry run deletes nothing"
        );
    }
    // The core's route says the same (`fathom images prune --api`, with the core's rules).
    let checking = dir.path().join("checking");
    std::fs::create_dir_all(&checking).unwrap();
    let api = Api::start(
        &checking,
        db.url(),
        &core_config(
            None,
            &format!("    watch_interval: 1h\n    retention:\n{rules}      interval: 1h\n"),
        ),
    );
    let via_api = support::ok(
        &support::fathom()
            .args(["images", "prune", "--dry-run", "--api", &api.base])
            .args(["--token", support::api::TOKEN])
            .output()
            .unwrap(),
    );
    assert_eq!(via_api, out);
    drop(api);

    // A core applying the rule every second deletes exactly those, each with its event.
    let applying = dir.path().join("applying");
    std::fs::create_dir_all(&applying).unwrap();
    let api = Api::start(
        &applying,
        db.url(),
        &core_config(
            None,
            &format!("    watch_interval: 1h\n    retention:\n{rules}      interval: 1s\n"),
        ),
    );
    let client = api.client();
    for digest in &doomed {
        poll(&client, &format!("/v1/images/{digest}"), |s, _| {
            s == StatusCode::NOT_FOUND
        })
        .await;
        assert_eq!(deleted_events(&db_pool, digest).await, 1, "{digest}");
        let event: Value = sqlx::query_scalar(
            "SELECT data FROM notify_events WHERE type = 'dev.fathom.image.deleted' AND subject = $1",
        )
        .bind(digest)
        .fetch_one(&db_pool)
        .await
        .unwrap();
        assert_eq!(event["forced"], false, "{event}");
    }
    assert_eq!(deleted_by(&api, "retention_untagged"), 2.0);
    assert_eq!(deleted_by(&api, "retention_keep_per_tag"), 0.0);
    // A few more passes keep the rest.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for digest in [
        &watched,
        &running,
        &young,
        &queued,
        &newest.manifest_digest(),
    ] {
        let (status, answer) = client.get(&format!("/v1/images/{digest}")).await;
        assert_eq!(status, StatusCode::OK, "{digest} kept: {answer}");
        assert_eq!(deleted_events(&db_pool, digest).await, 0, "{digest}");
    }
    // The watch still names the old digest: it, not a reference, kept that one.
    let (_, watch) = client.get(&format!("/v1/watches/{watch_id}")).await;
    assert_eq!(watch["digest"], watched.as_str(), "{watch}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_exactly_keep_per_tag_digests_of_a_watched_tag_pushed_again_and_again() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let registry = support::registry();
    let repo = support::unique_repo("retained");
    let api = Api::start(
        dir.path(),
        db.url(),
        &core_config(
            None,
            "    watch_interval: 1s\n    retention:\n      keep_per_tag: 2\n      interval: 1s\n",
        ),
    );
    let client = api.client();
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let pusher = Pusher::new(&registry, None);
    let reference = format!("{registry}/{repo}:prod");
    let versions: Vec<BuiltImage> = (1..=4)
        .map(|n| variant("alpine-apk", &format!("v{n}")))
        .collect();
    pusher.push(&repo, "prod", &versions[0]).await.unwrap();
    let (status, watch) = client
        .post("/v1/watches", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
    let id = watch["id"].as_i64().unwrap();
    for (n, version) in versions.iter().enumerate() {
        if n > 0 {
            pusher.push(&repo, "prod", version).await.unwrap();
        }
        // The watch sees the move and the worker analyzes it.
        poll(
            &client,
            &format!("/v1/images/{}", version.manifest_digest()),
            |s, _| s == StatusCode::OK,
        )
        .await;
        poll(&client, &format!("/v1/watches/{id}"), |_, w| {
            w["digest"] == version.manifest_digest().as_str()
        })
        .await;
    }

    // The two oldest go; the two newest (one the tag's current digest) stay.
    for old in &versions[..2] {
        poll(
            &client,
            &format!("/v1/images/{}", old.manifest_digest()),
            |s, _| s == StatusCode::NOT_FOUND,
        )
        .await;
    }
    assert_eq!(deleted_by(&api, "retention_keep_per_tag"), 2.0);
    assert!(
        core_metric(
            &api,
            "fathom_core_forget_pass_duration_seconds_count{task=\"retention\"}"
        ) >= 1.0
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    for new in &versions[2..] {
        let (status, answer) = client
            .get(&format!("/v1/images/{}", new.manifest_digest()))
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    let db_pool = pool(db.url()).await;
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fathom_images i JOIN fathom_image_references r USING (manifest_digest) \
         WHERE r.reference = $1",
    )
    .bind(&reference)
    .fetch_one(&db_pool)
    .await
    .unwrap();
    assert_eq!(stored, 2);

    // A dry run with a stricter rule lists what it would delete, and why, and deletes nothing.
    let out = dry_run(dir.path(), db.url(), "      keep_per_tag: 1\n");
    let third = versions[2].manifest_digest();
    assert!(
        out.contains(&format!("would delete {third} (keep_per_tag)")),
        "{out}"
    );
    assert!(out.contains(&format!("watched tag {reference}")), "{out}");
    assert!(!out.contains(&versions[3].manifest_digest()), "{out}");
    assert_eq!(
        client.get(&format!("/v1/images/{third}")).await.0,
        StatusCode::OK
    );
}
