//! Invalidation through LISTEN/NOTIFY on a real Postgres: two engines on one database, each with its own
//! listener, and the webhook's verdict cache on one of them.

use std::time::Duration;

use fathom_policy::Bundle;
use fathom_testkit::pg::TestDb;
use fathom_webhook::{ImageId, Outcome, Verdict};
use fathom_worker::store::Store;
use sqlx::PgPool;

use super::config::PolicyEngineConfig;
use super::fresh::{Freshness, APPLICATION_NAME};
use super::PolicyEngine;
use crate::core::verdicts::{Lookup, VerdictCache};

async fn db() -> TestDb {
    TestDb::create(&[
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
        &fathom_policy::store::migrator(),
    ])
    .await
    .unwrap()
}

/// An engine with its own listener, once it listens.
async fn engine(db: &TestDb) -> PolicyEngine {
    let store = Store::connect_lazy(db.url(), 2).unwrap();
    let mut engine = PolicyEngine::new(store, PolicyEngineConfig::default()).unwrap();
    let fresh = Freshness::listen(db.url()).unwrap();
    until(|| fresh.is_live()).await;
    engine.set_freshness(fresh);
    engine
}

/// Waits (bounded) for a condition the listener makes true; the caller's assertions say what failed.
async fn until(cond: impl Fn() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn strict(id: &str) -> fathom_policy::ValidatedBundle {
    Bundle::from_json(
        &serde_json::json!({
            "id": id, "version": "1_0", "name": id,
            "policies": [{"id": "p", "version": "1_0", "rules": [
                {"id": "r", "gate": "always", "trigger": "always", "action": "STOP", "params": []}]}],
            "whitelists": [],
            "mappings": [{"id": "all", "registry": "*", "repository": "*",
                          "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
            "whitelisted_images": [], "blacklisted_images": []
        })
        .to_string(),
    )
    .unwrap()
}

fn image() -> ImageId {
    ImageId {
        reference: "r.test/app:1".into(),
        digest: format!("sha256:{}", "cd".repeat(32)),
    }
}

fn verdict(bundle: &str) -> Verdict {
    Verdict {
        outcome: Outcome::Go,
        bundle: bundle.into(),
        unmapped: false,
        findings: Vec::new(),
    }
}

/// A verdict cached for `image()` under the active bundle, and proof it is served.
async fn cache_one(cache: &VerdictCache) {
    match cache.lookup(&image(), None).await.unwrap() {
        Lookup::Miss(pending) => cache.insert(*pending, verdict("cached")),
        Lookup::Hit(v) => panic!("nothing was cached yet: {v:?}"),
    }
    assert!(matches!(
        cache.lookup(&image(), None).await.unwrap(),
        Lookup::Hit(_)
    ));
}

fn is_miss(lookup: Lookup) -> bool {
    matches!(lookup, Lookup::Miss(_))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_activated_by_one_engine_is_used_by_the_others_next_check() {
    let db = db().await;
    let (a, b) = (engine(&db).await, engine(&db).await);
    let pool = PgPool::connect(db.url()).await.unwrap();
    let verdicts =
        VerdictCache::new(pool, &PolicyEngineConfig::default(), b.freshness().clone()).unwrap();
    let default = b.bundle(None).await.unwrap().digest().to_string();
    // Served from memory from here on: the same bundle, and the verdict.
    assert_eq!(b.bundle(None).await.unwrap().digest(), default);
    cache_one(&verdicts).await;

    let seen = b.freshness().events();
    let (stored, _) = a.put(&strict("strict"), true).await.unwrap();
    // a's own next check does not wait for its notification.
    assert_eq!(a.bundle(None).await.unwrap().digest(), stored.digest);
    until(|| b.freshness().events() > seen).await;
    assert_eq!(b.bundle(None).await.unwrap().digest(), stored.digest);
    assert!(is_miss(verdicts.lookup(&image(), None).await.unwrap()));

    // Back to the default by activating another stored bundle, then deleting the first.
    let seen = b.freshness().events();
    let (other, _) = a.put(&strict("other"), true).await.unwrap();
    a.delete("strict").await.unwrap();
    until(|| b.freshness().events() >= seen + 2).await;
    assert_eq!(b.bundle(None).await.unwrap().digest(), other.digest);
    assert!(b.bundle(Some("strict")).await.is_err(), "deleted on a");
}

/// Another image than [`image()`].
fn other() -> ImageId {
    ImageId {
        digest: format!("sha256:{}", "ef".repeat(32)),
        ..image()
    }
}

/// Caches a verdict for `id` (a miss first).
async fn cache(cache: &VerdictCache, id: &ImageId) {
    match cache.lookup(id, None).await.unwrap() {
        Lookup::Miss(pending) => cache.insert(*pending, verdict("cached")),
        Lookup::Hit(v) => panic!("{v:?}"),
    }
}

/// Indexes `digest` as carrying the npm package `name@1.0.0` (not matched yet).
async fn carries(pool: &PgPool, digest: &str, name: &str) {
    sqlx::query(
        "INSERT INTO fathom_vuln_keys (ecosystem, name, version) VALUES ('npm', $1, '1.0.0') \
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .execute(pool)
    .await
    .unwrap();
    // A package group of its own (the index's shape: groups of rows, images linked to groups).
    sqlx::query(
        "WITH g AS (INSERT INTO fathom_vuln_groups (hash) VALUES (sha256(convert_to($1 || ' ' || $2, 'UTF8'))) \
                    RETURNING id), \
              p AS (INSERT INTO fathom_vuln_group_packages (group_id, ecosystem, name, version, \
                    package_type, package_name, package_version, purl, layer_digest, os) \
                    SELECT id, 'npm', $2, '1.0.0', 'npm', $2, '1.0.0', 'pkg:npm/' || $2 || '@1.0.0', 'sha256:l', false FROM g) \
         INSERT INTO fathom_vuln_image_groups (manifest_digest, group_id) SELECT $1, id FROM g",
    )
    .bind(digest)
    .bind(name)
    .execute(pool)
    .await
    .unwrap();
}

/// Proves `change` notified nothing: a marker sent after it is the only event the listener sees.
async fn notifies_nothing<F: std::future::Future<Output = ()>>(
    fresh: &Freshness,
    pool: &PgPool,
    change: F,
) {
    let seen = fresh.events();
    change.await;
    sqlx::query("SELECT pg_notify($1, 'sha256:marker')")
        .bind(fathom_vulns::CHANNEL)
        .execute(pool)
        .await
        .unwrap();
    assert!(until(|| fresh.events() > seen).await, "marker not seen");
    // Notifications arrive in commit order: one sent by the change would have come first.
    assert_eq!(fresh.events(), seen + 1, "the change notified something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rematch_or_a_re_analysis_invalidates_only_the_images_that_changed() {
    let db = db().await;
    let b = engine(&db).await;
    let pool = PgPool::connect(db.url()).await.unwrap();
    let verdicts = VerdictCache::new(
        pool.clone(),
        &PolicyEngineConfig::default(),
        b.freshness().clone(),
    )
    .unwrap();
    // An npm feed with one advisory for every version of `x` (its `*` seen before anything is cached).
    let seen = b.freshness().events();
    sqlx::query("INSERT INTO fathom_vuln_feeds (feed, generation, last_success_at) VALUES ('npm', 1, now())")
        .execute(&pool)
        .await
        .unwrap();
    assert!(until(|| b.freshness().events() > seen).await);
    sqlx::query(
        "INSERT INTO fathom_vuln_affected (generation, ecosystem, name, vuln_id, aliases, severity, urls, entry) \
         VALUES (1, 'npm', 'x', 'GHSA-x', '{}', 'high', '{}', \
         '{\"package\": {\"ecosystem\": \"npm\", \"name\": \"x\"}, \
           \"ranges\": [{\"type\": \"SEMVER\", \"events\": [{\"introduced\": \"0\"}]}]}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // image() carries x (the advisory will match), other() carries y (nothing matches); neither matched.
    carries(&pool, &image().digest, "x").await;
    carries(&pool, &other().digest, "y").await;
    cache_one(&verdicts).await;
    cache(&verdicts, &other()).await;

    let seen = b.freshness().events();
    let report = fathom_vulns::Matcher::rematch(&pool).await.unwrap();
    assert_eq!(
        (report.keys_matched, report.keys_changed),
        (2, 1),
        "{report:?}"
    );
    assert!(until(|| b.freshness().events() > seen).await);
    assert!(is_miss(verdicts.lookup(&image(), None).await.unwrap()));
    assert!(
        matches!(
            verdicts.lookup(&other(), None).await.unwrap(),
            Lookup::Hit(_)
        ),
        "other()'s matches did not change: its verdict stays cached"
    );
    cache_one(&verdicts).await;

    // A round with nothing to do, a feed poll that found nothing new, and a failed poll: no event.
    notifies_nothing(b.freshness(), &pool, async {
        fathom_vulns::Matcher::rematch(&pool).await.unwrap();
    })
    .await;
    notifies_nothing(b.freshness(), &pool, async {
        sqlx::query("UPDATE fathom_vuln_feeds SET last_checked_at = now(), last_error = 'down'")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO fathom_vuln_feeds (feed, last_checked_at, last_error) VALUES ('PyPI', now(), 'down')")
            .execute(&pool)
            .await
            .unwrap();
    })
    .await;
    assert!(matches!(
        verdicts.lookup(&image(), None).await.unwrap(),
        Lookup::Hit(_)
    ));

    // An image's index rewritten (what a re-analysis leads to): that image's verdicts only.
    let seen = b.freshness().events();
    sqlx::query("INSERT INTO fathom_vuln_images (manifest_digest, analyzed_at) VALUES ($1, now())")
        .bind(&image().digest)
        .execute(&pool)
        .await
        .unwrap();
    assert!(until(|| b.freshness().events() > seen).await);
    assert!(is_miss(verdicts.lookup(&image(), None).await.unwrap()));
    assert!(matches!(
        verdicts.lookup(&other(), None).await.unwrap(),
        Lookup::Hit(_)
    ));

    // A feed that moved to new data: everything.
    let seen = b.freshness().events();
    sqlx::query(
        "UPDATE fathom_vuln_feeds SET generation = 2, last_success_at = now() WHERE feed = 'npm'",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert!(until(|| b.freshness().events() > seen).await);
    assert!(is_miss(verdicts.lookup(&other(), None).await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_listener_falls_back_to_round_trips() {
    let db = db().await;
    let b = engine(&db).await;
    let pool = PgPool::connect(db.url()).await.unwrap();
    let verdicts = VerdictCache::new(
        pool.clone(),
        &PolicyEngineConfig::default(),
        b.freshness().clone(),
    )
    .unwrap();
    let default = b.bundle(None).await.unwrap().digest().to_string();
    cache_one(&verdicts).await;

    let seen = b.freshness().events();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND datname = current_database()",
    )
    .bind(APPLICATION_NAME)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(killed, [true]);
    assert!(until(|| b.freshness().events() > seen).await, "loss seen");
    // A change whose notification nobody gets: triggers off for this session (as if sent while the
    // listener was down). Whether b has reconnected by now or not, it must not answer from before.
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    let bundle = strict("unseen");
    let document = serde_json::to_value(bundle.bundle()).unwrap();
    sqlx::query(
        "INSERT INTO fathom_policy_bundles (id, name, digest, document, active) \
         VALUES ('unseen', 'unseen', $1, $2, true)",
    )
    .bind(bundle.digest())
    .bind(&document)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("RESET session_replication_role")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let now = b.bundle(None).await.unwrap().digest().to_string();
    assert_ne!(now, default);
    assert_eq!(now, bundle.digest());
    assert!(is_miss(verdicts.lookup(&image(), None).await.unwrap()));
}
