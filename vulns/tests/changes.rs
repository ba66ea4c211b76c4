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
async fn a_change_committing_while_a_round_settles_stays_for_the_next_round() {
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
    let round = tokio::spawn({
        let pool = pool.clone();
        async move { Matcher::rematch(&pool).await.unwrap() }
    });
    // The round indexes the first re-analysis, then waits to settle the marker the open change holds.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !round.is_finished(),
        "the round should wait for the open change"
    );
    later.commit().await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), round)
        .await
        .expect("the round finishes once the change commits")
        .unwrap();
    assert_eq!(report.images_indexed, 1);
    // The change that committed meanwhile is still marked, and the next round indexes it.
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
