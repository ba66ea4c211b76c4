//! The index by package group, on real Postgres: images sharing a layer's packages share one stored
//! group (the index grows with unique layers, not with images), an image hiding a package gets a group
//! of its own, every image reads exactly its rows, unused groups go, and the migration carries an index
//! stored one row per image package over without losing or changing a row.

mod support;

use std::collections::BTreeMap;

use fathom_vulns::store::queries;
use fathom_vulns::Matcher;
use serde_json::json;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use support::{pypi_document, store_document};

/// The migration that introduced groups.
const GROUPS_MIGRATION: i64 = 20261221000000;

type PackageRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    bool,
);

/// An image's index rows (through the view every reader queries), in a fixed order.
async fn rows(pool: &PgPool, digest: &str) -> Vec<PackageRow> {
    sqlx::query_as(
        "SELECT ecosystem, name, version, package_type, package_name, package_version, purl, layer_digest, os \
         FROM fathom_vuln_image_packages WHERE manifest_digest = $1 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9",
    )
    .bind(digest)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The row the indexer writes for a PyPI package of `pypi_document` (layer `sha256:l1`).
fn pypi_row(name: &str, version: &str) -> PackageRow {
    (
        "PyPI".into(),
        name.into(),
        version.into(),
        "python".into(),
        name.into(),
        version.into(),
        format!("pkg:pypi/{name}@{version}"),
        "sha256:l1".into(),
        false,
    )
}

#[tokio::test]
async fn images_sharing_a_layers_packages_share_one_group_and_read_exactly_their_rows() {
    let (_db, pool) = support::db().await;
    let shared = [("alpha", "1.0"), ("beta", "1.0")];
    store_document(&pool, "sha256:one", &pypi_document(&shared), 2).await;
    store_document(&pool, "sha256:two", &pypi_document(&shared), 2).await;
    // An upper layer of this one removed beta: its layer's visible packages differ.
    store_document(&pool, "sha256:hid", &pypi_document(&[("alpha", "1.0")]), 1).await;
    // Two layers: alpha from l1, gamma from l2.
    let two_layers = json!({"schema": "fathom.analysis/v1", "packages": [
        {"name": "alpha", "version": "1.0", "package_type": "python", "purl": "pkg:pypi/alpha@1.0",
         "introduced_in": {"index": 0, "digest": "sha256:l1"}},
        {"name": "gamma", "version": "2.0", "package_type": "python", "purl": "pkg:pypi/gamma@2.0",
         "introduced_in": {"index": 1, "digest": "sha256:l2"}}]});
    store_document(&pool, "sha256:top", &two_layers, 2).await;
    let report = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(report.images_indexed, 4);

    let both = vec![pypi_row("alpha", "1.0"), pypi_row("beta", "1.0")];
    assert_eq!(rows(&pool, "sha256:one").await, both);
    assert_eq!(rows(&pool, "sha256:two").await, both);
    assert_eq!(
        rows(&pool, "sha256:hid").await,
        vec![pypi_row("alpha", "1.0")]
    );
    let mut gamma = pypi_row("gamma", "2.0");
    gamma.7 = "sha256:l2".into();
    assert_eq!(
        rows(&pool, "sha256:top").await,
        vec![pypi_row("alpha", "1.0"), gamma]
    );
    // Stored once per distinct group: {alpha, beta}@l1 (shared by one and two), {alpha}@l1 (hid and
    // top), {gamma}@l2.
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_groups").await,
        3
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_group_packages").await,
        4
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_image_groups").await,
        5
    );

    // By vulnerability: pages of any size add up to the whole list, each image with its ids and
    // packages over all its matching rows.
    sqlx::query(
        "INSERT INTO fathom_vuln_matches (ecosystem, name, version, vuln_id, aliases, severity, fix_state, fixed, urls) \
         VALUES ('PyPI', 'alpha', '1.0', 'GHSA-a', '{CVE-1}', 'high', 'fixed', '{}', '{}'), \
                ('PyPI', 'beta', '1.0', 'GHSA-b', '{CVE-1}', 'low', 'fixed', '{}', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let all = queries::images_by_vuln(&pool, "CVE-1", "", 100)
        .await
        .unwrap();
    let digests: Vec<&str> = all.iter().map(|h| h.manifest_digest.as_str()).collect();
    assert_eq!(
        digests,
        ["sha256:hid", "sha256:one", "sha256:top", "sha256:two"]
    );
    assert_eq!(all[1].ids, ["GHSA-a", "GHSA-b"]);
    assert_eq!(all[1].packages, ["alpha@1.0", "beta@1.0"]);
    assert_eq!(all[0].packages, ["alpha@1.0"]);
    for size in [1, 3] {
        let mut paged = vec![];
        let mut after = String::new();
        loop {
            let page = queries::images_by_vuln(&pool, "CVE-1", &after, size)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = last.manifest_digest.clone();
            paged.extend(page);
        }
        assert_eq!(paged, all, "pages of {size}");
    }

    // Removed images release their links; a group goes with its last image, with keys no group carries.
    sqlx::query("DELETE FROM fathom_images WHERE manifest_digest IN ('sha256:one', 'sha256:top')")
        .execute(&pool)
        .await
        .unwrap();
    let report = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(report.images_removed, 2);
    assert_eq!(rows(&pool, "sha256:two").await, both);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_groups").await,
        2
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM fathom_vuln_keys WHERE name = 'gamma'"
        )
        .await,
        0
    );

    // A re-analysis that changes the packages moves the image to another group; the old one goes.
    store_document(&pool, "sha256:two", &pypi_document(&[("beta", "1.0")]), 1).await;
    Matcher::rematch(&pool).await.unwrap();
    assert_eq!(
        rows(&pool, "sha256:two").await,
        vec![pypi_row("beta", "1.0")]
    );
    assert_eq!(
        rows(&pool, "sha256:hid").await,
        vec![pypi_row("alpha", "1.0")]
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_groups").await,
        2
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_group_packages").await,
        2
    );
}

/// Every migration but the groups' (the schema an upgrade starts from).
fn before_groups() -> Migrator {
    let full = fathom_vulns::migrator();
    let mut m = Migrator {
        migrations: std::borrow::Cow::Owned(
            full.migrations
                .iter()
                .filter(|m| m.version < GROUPS_MIGRATION)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    m.set_ignore_missing(true);
    m
}

#[tokio::test]
async fn the_migration_carries_a_per_image_index_over_row_for_row() {
    let db = fathom_testkit::pg::TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &before_groups(),
    ])
    .await
    .unwrap();
    let pool = PgPool::connect(db.url()).await.unwrap();
    let shared = [("alpha", "1.0"), ("beta", "1.0")];
    // Indexed before the upgrade: the old table, one row per image package, as the old indexer wrote.
    let mut stored: BTreeMap<&str, Vec<PackageRow>> = BTreeMap::new();
    for (digest, packages) in [
        ("sha256:one", &shared[..]),
        ("sha256:two", &shared[..]),
        ("sha256:hid", &shared[..1]),
    ] {
        store_document(
            &pool,
            digest,
            &pypi_document(packages),
            packages.len() as i32,
        )
        .await;
        sqlx::query(
            "INSERT INTO fathom_vuln_images (manifest_digest, analyzed_at) \
             SELECT manifest_digest, analyzed_at FROM fathom_images WHERE manifest_digest = $1",
        )
        .bind(digest)
        .execute(&pool)
        .await
        .unwrap();
        let mut image_rows = vec![];
        for (n, v) in packages {
            let r = pypi_row(n, v);
            sqlx::query(
                "INSERT INTO fathom_vuln_image_packages (manifest_digest, ecosystem, name, version, \
                 package_type, package_name, package_version, purl, layer_digest, os) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(digest)
            .bind(&r.0)
            .bind(&r.1)
            .bind(&r.2)
            .bind(&r.3)
            .bind(&r.4)
            .bind(&r.5)
            .bind(&r.6)
            .bind(&r.7)
            .bind(r.8)
            .execute(&pool)
            .await
            .unwrap();
            image_rows.push(r);
        }
        stored.insert(digest, image_rows);
    }

    fathom_vulns::migrator().run(&pool).await.unwrap();

    for (digest, expected) in &stored {
        assert_eq!(&rows(&pool, digest).await, expected, "{digest}");
    }
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_groups").await,
        2
    );
    // Nothing to re-index: the carried index is current.
    let report = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(report.images_indexed, 0);
    // An image indexed after the upgrade with the same packages reuses the migrated group: the
    // migration hashes groups exactly as the indexer does.
    store_document(&pool, "sha256:new", &pypi_document(&shared), 2).await;
    let report = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(report.images_indexed, 1);
    assert_eq!(rows(&pool, "sha256:new").await, stored["sha256:one"]);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM fathom_vuln_groups").await,
        2
    );
}
