//! What a match round looks at, on a real Postgres: only the images a change marked (a trigger on
//! `fathom_images` writes the marker in the change's own transaction), so an idle round reads one empty
//! table instead of the fleet, and a change committed while a round settles its markers is not lost.

mod support;

use std::time::Duration;

use fathom_vulns::Matcher;
use sqlx::PgPool;
use support::{db, store_pypi_image};

async fn marked(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT manifest_digest FROM fathom_vuln_changed_images ORDER BY 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn indexed_at(pool: &PgPool, digest: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT analyzed_at::text FROM fathom_vuln_images WHERE manifest_digest = $1",
    )
    .bind(digest)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn analyzed_at(pool: &PgPool, digest: &str) -> String {
    sqlx::query_scalar("SELECT analyzed_at::text FROM fathom_images WHERE manifest_digest = $1")
        .bind(digest)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn rounds_look_at_marked_images_only_and_settle_them() {
    let (_db, pool) = db().await;
    for d in ["sha256:a", "sha256:b", "sha256:c"] {
        store_pypi_image(&pool, d, &[("alpha", "1.0")]).await;
    }
    assert_eq!(marked(&pool).await, ["sha256:a", "sha256:b", "sha256:c"]);
    let first = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(first.images_indexed, 3);
    assert!(marked(&pool).await.is_empty(), "settled");

    let idle = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((idle.images_indexed, idle.images_removed), (0, 0));

    // A re-analysis and a deletion made outside fathom's own paths are both marked and both settled.
    store_pypi_image(&pool, "sha256:b", &[("alpha", "1.1")]).await;
    sqlx::query("DELETE FROM fathom_images WHERE manifest_digest = 'sha256:c'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(marked(&pool).await, ["sha256:b", "sha256:c"]);
    let changed = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((changed.images_indexed, changed.images_removed), (1, 1));
    assert_eq!(
        indexed_at(&pool, "sha256:b").await,
        Some(analyzed_at(&pool, "sha256:b").await)
    );
    assert_eq!(indexed_at(&pool, "sha256:c").await, None);
    assert!(marked(&pool).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_not_committed_while_a_round_settles_stays_for_the_next_round() {
    let (_db, pool) = db().await;
    store_pypi_image(&pool, "sha256:x", &[("alpha", "1.0")]).await;
    Matcher::rematch(&pool).await.unwrap();
    // A re-analysis the round will see and index ...
    store_pypi_image(&pool, "sha256:x", &[("alpha", "1.1")]).await;
    // ... and another, not committed yet: its transaction holds the marker's row.
    let mut later = pool.begin().await.unwrap();
    sqlx::query(
        "UPDATE fathom_images SET analyzed_at = clock_timestamp() WHERE manifest_digest = 'sha256:x'",
    )
    .execute(&mut *later)
    .await
    .unwrap();
    // The round neither waits for the open change (it holds the feed lock) nor settles its marker.
    let report = tokio::time::timeout(Duration::from_secs(10), Matcher::rematch(&pool))
        .await
        .expect("the round does not wait for an open change")
        .unwrap();
    assert_eq!(report.images_indexed, 1);
    later.commit().await.unwrap();
    // The change that committed after it is still marked, and the next round indexes it.
    assert_eq!(marked(&pool).await, ["sha256:x"]);
    assert_ne!(
        indexed_at(&pool, "sha256:x").await,
        Some(analyzed_at(&pool, "sha256:x").await)
    );
    let next = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(next.images_indexed, 1);
    assert_eq!(
        indexed_at(&pool, "sha256:x").await,
        Some(analyzed_at(&pool, "sha256:x").await)
    );
    assert!(marked(&pool).await.is_empty());
}

#[tokio::test]
async fn an_undecodable_image_is_looked_at_again_by_a_new_release_only_once() {
    let (_db, pool) = db().await;
    support::store_raw_document(&pool, "sha256:bad", vec![0], 0).await;
    let first = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(first.images_undecodable, 1);
    assert!(marked(&pool).await.is_empty());
    // As after an upgrade: the mark names another release, so the image is tried once more ...
    sqlx::query("UPDATE fathom_vuln_undecodable SET decoder = '0.0.0-earlier'")
        .execute(&pool)
        .await
        .unwrap();
    let retried = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(retried.images_undecodable, 1);
    // ... and then not again: the mark now names this release.
    let idle = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((idle.images_indexed, idle.images_undecodable), (0, 0));
    assert!(marked(&pool).await.is_empty());
    // Re-analyzed into a document that decodes: indexed, and its old mark goes with it, so a later
    // release has nothing to try again.
    store_pypi_image(&pool, "sha256:bad", &[("alpha", "1.0")]).await;
    let fixed = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(fixed.images_indexed, 1);
    let marks: i64 = sqlx::query_scalar("SELECT count(*) FROM fathom_vuln_undecodable")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(marks, 0);
    let idle = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(idle.images_indexed, 0);
    assert!(marked(&pool).await.is_empty());
}

#[tokio::test]
async fn a_backlog_is_worked_off_newest_first() {
    let (_db, pool) = db().await;
    // More marked images than one round takes (as after the upgrade's migration marks every image).
    let n = 20_500;
    sqlx::query(
        "INSERT INTO fathom_images (manifest_digest, config_digest, platform, layers, status, analyzer_version, cache_key, document, package_count)
         SELECT 'sha256:old' || lpad(g::text, 6, '0'), 'sha256:c', 'linux/amd64', ARRAY['sha256:l1'], 'analyzed', 'test', 'k', $1, 0
         FROM generate_series(1, $2) g",
    )
    .bind(zstd::bulk::compress(br#"{"packages": []}"#, 3).unwrap())
    .bind(n)
    .execute(&pool)
    .await
    .unwrap();
    store_pypi_image(&pool, "sha256:new", &[("alpha", "1.0")]).await;
    let first = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(first.images_indexed, 20_000);
    assert!(
        indexed_at(&pool, "sha256:new").await.is_some(),
        "the newest change is in the first round"
    );
    let second = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(second.images_indexed, 501);
    assert!(marked(&pool).await.is_empty());
}
