//! Incremental re-matching on a real Postgres: after a feed change only the keys under names of added,
//! changed, removed or withdrawn records are evaluated again; the answer equals a full re-match, and
//! readers see the previous round's matches until the new round commits.

mod support;

use fathom_vulns::queries::{self, ImageFilter};
use fathom_vulns::{Feeds, Matcher};
use serde_json::json;
use sqlx::PgPool;
use support::{db, osv_zip, pypi_config, record, store_pypi_image, FeedServer};

async fn ids(pool: &PgPool, digest: &str) -> Vec<String> {
    let mut ids: Vec<String> = queries::vulns_for_image(pool, digest, &ImageFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    ids.sort();
    ids
}

/// A stored match: name, version, record, fix state, fixed versions, the transaction that wrote it.
type MatchRow = (String, String, String, String, Vec<String>, String);

/// Every stored match.
async fn matches(pool: &PgPool) -> Vec<MatchRow> {
    sqlx::query_as(
        "SELECT name, version, vuln_id, fix_state, fixed, xmin::text FROM fathom_vuln_matches ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_feed_change_rematches_exactly_the_names_it_touches() {
    let (_db, pool) = db().await;
    let server = FeedServer::default();
    server.put(
        "PyPI/all.zip",
        osv_zip(
            &[
                record("GHSA-a", &["CVE-2026-10"], "PyPI", "alpha", Some("2.0")),
                record("GHSA-b", &["CVE-2026-11"], "PyPI", "beta", Some("2.0")),
                record("GHSA-c", &["CVE-2026-12"], "PyPI", "gamma", Some("2.0")),
                record("GHSA-d", &[], "PyPI", "delta", None),
            ],
            &[],
        ),
    );
    let cfg = pypi_config(server.start().await);
    store_pypi_image(
        &pool,
        "sha256:one",
        &[
            ("alpha", "1.0"),
            ("beta", "1.0"),
            ("gamma", "1.0"),
            ("delta", "1.0"),
        ],
    )
    .await;
    store_pypi_image(
        &pool,
        "sha256:two",
        &[("alpha", "3.0"), ("beta", "1.0"), ("epsilon", "1.0")],
    )
    .await;
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    let rm = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((rm.images_indexed, rm.keys_matched), (2, 6));
    assert_eq!(
        ids(&pool, "sha256:one").await,
        ["GHSA-a", "GHSA-b", "GHSA-c", "GHSA-d"]
    );
    assert_eq!(ids(&pool, "sha256:two").await, ["GHSA-b"]);
    let before = matches(&pool).await;

    // alpha's range moves (1.0 leaves it, 3.0 enters it), beta is untouched, gamma's record is
    // withdrawn, delta's record is removed, epsilon gets a new record.
    let mut moved = record("GHSA-a", &["CVE-2026-10"], "PyPI", "alpha", Some("4.0"));
    moved["affected"][0]["ranges"][0]["events"][0] = json!({"introduced": "2.5"});
    moved["modified"] = json!("2026-03-01T00:00:00Z");
    let mut withdrawn = record("GHSA-c", &["CVE-2026-12"], "PyPI", "gamma", Some("2.0"));
    withdrawn["withdrawn"] = json!("2026-03-01T00:00:00Z");
    server.put(
        "PyPI/all.zip",
        osv_zip(
            &[
                moved,
                record("GHSA-b", &["CVE-2026-11"], "PyPI", "beta", Some("2.0")),
                withdrawn,
                record("GHSA-e", &[], "PyPI", "epsilon", Some("2.0")),
            ],
            &[],
        ),
    );
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    // Between the sync and the re-match readers still get the previous round's answer, flagged stale.
    assert_eq!(
        ids(&pool, "sha256:one").await,
        ["GHSA-a", "GHSA-b", "GHSA-c", "GHSA-d"]
    );
    assert!(!queries::image_matched(&pool, "sha256:one").await.unwrap());
    assert!(!queries::image_matched(&pool, "sha256:two").await.unwrap());

    let rm = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(
        (rm.images_indexed, rm.keys_matched),
        (0, 5),
        "alpha 1.0 and 3.0, gamma, delta, epsilon; beta carries over"
    );
    assert_eq!(ids(&pool, "sha256:one").await, ["GHSA-b"]);
    assert_eq!(
        ids(&pool, "sha256:two").await,
        ["GHSA-a", "GHSA-b", "GHSA-e"]
    );
    assert!(queries::image_matched(&pool, "sha256:one").await.unwrap());
    assert!(queries::image_matched(&pool, "sha256:two").await.unwrap());
    let after = matches(&pool).await;
    let beta = |m: &[MatchRow]| m.iter().find(|r| r.0 == "beta").cloned().unwrap();
    assert_eq!(
        beta(&before),
        beta(&after),
        "beta's match row was not rewritten"
    );
    assert!(
        queries::images_by_vuln(&pool, "CVE-2026-12", "", 10)
            .await
            .unwrap()
            .is_empty(),
        "withdrawn"
    );
    let dirty: i64 = sqlx::query_scalar("SELECT count(*) FROM fathom_vuln_dirty")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(dirty, 0, "the round consumed the dirty names");
    assert_eq!(Matcher::rematch(&pool).await.unwrap().keys_matched, 0);

    // The incremental answer is the one a full re-match computes.
    sqlx::query("UPDATE fathom_vuln_keys SET matched_stamp = -1")
        .execute(&pool)
        .await
        .unwrap();
    let rm = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(rm.keys_matched, 6);
    let strip = |m: Vec<MatchRow>| {
        m.into_iter()
            .map(|r| (r.0, r.1, r.2, r.3, r.4))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(matches(&pool).await), strip(after));
}

#[tokio::test]
async fn a_document_that_does_not_decode_costs_only_its_own_image() {
    let (_db, pool) = db().await;
    for i in 0..450 {
        let v = format!("1.{}", i % 5);
        store_pypi_image(
            &pool,
            &format!("sha256:img{i:04}"),
            &[("alpha", &v), ("beta", "1.0")],
        )
        .await;
    }
    // Not zstd, and zstd around something that is not a document: neither stops the other 450 images.
    support::store_raw_document(&pool, "sha256:bad", vec![0], 0).await;
    let not_json = zstd::bulk::compress(b"{\"packages\": [", 3).unwrap();
    support::store_raw_document(&pool, "sha256:cut", not_json, 0).await;

    let rm = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(rm.images_indexed, 450);
    assert_eq!(rm.images_undecodable, 2);
    let counts: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM fathom_vuln_images), (SELECT count(*) FROM fathom_vuln_image_packages)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // The undecodable ones are not indexed: their vulnerability data reads as unavailable, not clean.
    assert_eq!(
        counts,
        (450, 900),
        "every decodable image has all its packages"
    );
    let marked: Vec<String> =
        sqlx::query_scalar("SELECT manifest_digest FROM fathom_vuln_undecodable ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(marked, vec!["sha256:bad", "sha256:cut"]);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM fathom_vuln_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, 6, "alpha 1.0..1.4 and beta 1.0");

    // Not retried every round: only a re-analysis brings the image back.
    let again = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((again.images_indexed, again.images_undecodable), (0, 0));
    store_pypi_image(&pool, "sha256:bad", &[("gamma", "2.0")]).await;
    let fixed = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((fixed.images_indexed, fixed.images_undecodable), (1, 0));
    // An image indexed before and re-analyzed into an undecodable document loses its old index.
    support::store_raw_document(&pool, "sha256:img0000", vec![1, 2, 3], 0).await;
    let broke = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((broke.images_indexed, broke.images_undecodable), (0, 1));
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fathom_vuln_images WHERE manifest_digest = 'sha256:img0000'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(left, 0);
    let gamma: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fathom_vuln_image_packages WHERE manifest_digest = 'sha256:bad' AND name = 'gamma'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(gamma, 1);
}
