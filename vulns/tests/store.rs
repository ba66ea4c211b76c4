//! Sync, generations and fleet matching on a real Postgres (the throwaway harness), with feeds served by
//! a real local HTTP server and images stored with documents in the worker's format.

mod support;

use std::collections::BTreeMap;

use fathom_analyzer::merge::{ImagePackage, LayerRef};
use fathom_analyzer::model::{Distro, Location, Package, PackageType};
use fathom_vulns::queries::{self, ImageFilter, PackageScope};
use fathom_vulns::store::sync::FeedOutcome;
use fathom_vulns::{Feeds, Matcher, VulnsConfig};
use serde_json::json;
use sqlx::PgPool;
use support::{db, osv_zip, record, FeedServer};

fn pkg(
    t: PackageType,
    name: &str,
    version: &str,
    purl: &str,
    meta: &[(&str, &str)],
    layer: &str,
) -> ImagePackage {
    let layer_ref = LayerRef {
        index: 0,
        digest: layer.to_string(),
    };
    ImagePackage {
        package: Package {
            name: name.into(),
            version: version.into(),
            package_type: t,
            purl: purl.into(),
            licenses: vec![],
            locations: vec![Location {
                path: "/var/lib/dpkg/status".into(),
                layer_digest: layer.into(),
            }],
            found_by: "test".into(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        },
        introduced_in: layer_ref.clone(),
        last_changed_in: layer_ref,
    }
}

/// Stores an analyzed image whose document lists `packages` as visible (what the merge decided).
async fn store_image(
    pool: &PgPool,
    digest: &str,
    distro: Option<Distro>,
    packages: Vec<ImagePackage>,
) {
    let doc = json!({"schema": "fathom.analysis/v1", "distro": distro, "packages": packages});
    support::store_document(pool, digest, &doc, packages.len() as i32).await;
}

fn debian12() -> Option<Distro> {
    Some(Distro {
        id: "debian".into(),
        version_id: "12".into(),
        pretty_name: "Debian 12".into(),
        id_like: vec![],
    })
}

fn config(base: &str, ecosystems: &[&str]) -> VulnsConfig {
    VulnsConfig {
        base_url: base.into(),
        ecosystems: ecosystems.iter().map(|s| s.to_string()).collect(),
        ..VulnsConfig::default()
    }
}

fn outcome(r: &fathom_vulns::SyncReport, feed: &str) -> FeedOutcome {
    r.feeds
        .iter()
        .find(|f| f.feed == feed)
        .unwrap()
        .outcome
        .clone()
}

#[tokio::test]
async fn sync_is_conditional_and_atomic() {
    let (_db, pool) = db().await;
    let server = FeedServer::default();
    server.put(
        "PyPI/all.zip",
        osv_zip(
            &[record(
                "GHSA-1",
                &["CVE-2026-1"],
                "PyPI",
                "Django",
                Some("4.2.1"),
            )],
            &[("bad.json", b"{")],
        ),
    );
    let base = server.start().await;
    let cfg = config(&base, &["PyPI", "npm"]);

    let r = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    let FeedOutcome::Updated {
        generation: g1,
        records: 1,
        malformed: 1,
        ..
    } = outcome(&r, "PyPI")
    else {
        panic!("{r:?}")
    };
    // npm is missing on the server: that feed fails, PyPI does not.
    assert!(
        matches!(outcome(&r, "npm"), FeedOutcome::Failed { ref error } if error.starts_with("feed npm:"))
    );
    let before = server.requests();
    let r = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert_eq!(outcome(&r, "PyPI"), FeedOutcome::Unchanged);
    // The server has no `ecosystems.txt`: one request for it, then every feed is tried.
    assert_eq!(
        server.requests() - before,
        3,
        "one listing, one request per feed"
    );

    // A broken download fails that feed and leaves the previous generation current.
    server.put("PyPI/all.zip", b"truncated".to_vec());
    let r = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert!(
        matches!(outcome(&r, "PyPI"), FeedOutcome::Failed { ref error } if error.contains("not a readable zip"))
    );
    let feeds = queries::feeds(&pool).await.unwrap();
    let pypi = feeds.iter().find(|f| f.feed == "PyPI").unwrap();
    assert_eq!((pypi.generation, pypi.records), (Some(g1), 1));
    assert!(pypi
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("not a readable zip")));
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM fathom_vuln_affected")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(names, ["django"], "normalized PyPI name, one generation");

    // A good new feed replaces the generation; the old rows are gone.
    server.put(
        "PyPI/all.zip",
        osv_zip(&[record("GHSA-2", &[], "PyPI", "flask", None)], &[]),
    );
    let r = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    let FeedOutcome::Updated { generation: g2, .. } = outcome(&r, "PyPI") else {
        panic!("{r:?}")
    };
    assert!(g2 > g1);
    let gens: Vec<i64> = sqlx::query_scalar("SELECT DISTINCT generation FROM fathom_vuln_records")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(gens, [g2]);
}

#[tokio::test]
async fn fleet_matching_answers_both_questions_and_follows_feed_updates() {
    let (_db, pool) = db().await;
    let server = FeedServer::default();
    let debian = |glibc_fix: Option<&str>| {
        let mut withdrawn = record("DSA-9-1", &["CVE-2026-9"], "Debian:12", "bash", None);
        withdrawn["withdrawn"] = json!("2026-02-01T00:00:00Z");
        osv_zip(
            &[
                record(
                    "DSA-1-1",
                    &["CVE-2026-1"],
                    "Debian:12",
                    "glibc",
                    Some("2.36-9+deb12u5"),
                ),
                record(
                    "DEBIAN-CVE-2026-2",
                    &["CVE-2026-2"],
                    "Debian:12",
                    "util-linux",
                    glibc_fix,
                ),
                record("DSA-3-1", &[], "Debian:11", "glibc", Some("9.0")),
                withdrawn,
            ],
            &[],
        )
    };
    server.put("Debian/all.zip", debian(None));
    server.put(
        "PyPI/all.zip",
        osv_zip(
            &[record(
                "GHSA-d",
                &["CVE-2026-1"],
                "PyPI",
                "django",
                Some("4.2.1"),
            )],
            &[],
        ),
    );
    let base = server.start().await;
    let cfg = config(&base, &["Debian", "PyPI"]);

    let l1 = "sha256:base";
    let os_pkgs = vec![
        pkg(
            PackageType::Deb,
            "libc6",
            "2.36-9+deb12u4",
            "pkg:deb/debian/libc6@2.36-9%2Bdeb12u4",
            &[("source", "glibc")],
            l1,
        ),
        pkg(
            PackageType::Deb,
            "bsdutils",
            "1:2.38.1-5+deb12u3",
            "",
            &[("source", "util-linux (2.38.1-5+deb12u3)")],
            l1,
        ),
        pkg(PackageType::Deb, "bash", "5.2.15-2+b2", "", &[], l1),
    ];
    let mut app_pkgs = os_pkgs.clone();
    app_pkgs.push(pkg(
        PackageType::Python,
        "Django",
        "4.2.0",
        "pkg:pypi/django@4.2.0",
        &[],
        "sha256:app",
    ));
    store_image(&pool, "sha256:img-os", debian12(), os_pkgs.clone()).await;
    store_image(&pool, "sha256:img-app", debian12(), app_pkgs).await;
    // The same base where a later layer removed libc6: the document does not list it, so no glibc match.
    store_image(&pool, "sha256:img-slim", debian12(), os_pkgs[1..].to_vec()).await;

    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    let rm = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(rm.images_indexed, 3);
    assert_eq!(
        rm.keys_matched, 4,
        "distinct keys fleet-wide: glibc, util-linux, bash, django"
    );

    let all = queries::vulns_for_image(&pool, "sha256:img-app", &ImageFilter::default())
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(all.len(), 3, "{ids:?}");
    let glibc = all.iter().find(|m| m.id == "DSA-1-1").unwrap();
    assert_eq!(
        (glibc.package.name.as_str(), glibc.namespace.as_str()),
        ("libc6", "Debian:12")
    );
    assert_eq!(
        (glibc.fix.state.as_str(), glibc.fix.versions.clone()),
        ("fixed", vec!["2.36-9+deb12u5".to_string()])
    );
    assert_eq!(
        (glibc.severity.as_str(), glibc.cvss_score),
        ("critical", Some(9.8))
    );
    assert!(glibc.fix_observed_at.is_some());
    let ul = all.iter().find(|m| m.id == "DEBIAN-CVE-2026-2").unwrap();
    assert_eq!(
        (
            ul.package.name.as_str(),
            ul.fix.state.as_str(),
            ul.fix_observed_at.as_deref()
        ),
        ("bsdutils", "not-fixed", None)
    );
    let os = queries::vulns_for_image(
        &pool,
        "sha256:img-app",
        &ImageFilter {
            scope: PackageScope::Os,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let non_os = queries::vulns_for_image(
        &pool,
        "sha256:img-app",
        &ImageFilter {
            scope: PackageScope::NonOs,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!((os.len(), non_os.len()), (2, 1));
    assert_eq!(non_os[0].id, "GHSA-d");
    let fixed = queries::vulns_for_image(
        &pool,
        "sha256:img-app",
        &ImageFilter {
            fixed_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(fixed.len(), 2);

    // By alias: the CVE finds the distro record and the PyPI record; the removed libc6 is not counted.
    let hits = queries::images_by_vuln(&pool, "CVE-2026-1", "", 100)
        .await
        .unwrap();
    let digests: Vec<&str> = hits.iter().map(|h| h.manifest_digest.as_str()).collect();
    assert_eq!(digests, ["sha256:img-app", "sha256:img-os"]);
    assert_eq!(hits[0].ids, ["DSA-1-1", "GHSA-d"]);
    let page2 = queries::images_by_vuln(&pool, "CVE-2026-1", "sha256:img-app", 100)
        .await
        .unwrap();
    assert_eq!(page2.len(), 1);
    assert!(
        queries::images_by_vuln(&pool, "CVE-2026-9", "", 100)
            .await
            .unwrap()
            .is_empty(),
        "withdrawn"
    );
    assert_eq!(
        queries::images_by_vuln(&pool, "DEBIAN-CVE-2026-2", "", 100)
            .await
            .unwrap()
            .len(),
        3
    );

    // A fix appears in the feed: after a sync and a rematch (no analysis) the answer changes.
    server.put("Debian/all.zip", debian(Some("2.38.1-5+deb12u4")));
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    let rm = Matcher::rematch(&pool).await.unwrap();
    // Only util-linux's record changed: its one key is re-matched, glibc, bash and django carry over.
    assert_eq!((rm.images_indexed, rm.keys_matched), (0, 1));
    let after = queries::vulns_for_image(&pool, "sha256:img-slim", &ImageFilter::default())
        .await
        .unwrap();
    let ul = after.iter().find(|m| m.id == "DEBIAN-CVE-2026-2").unwrap();
    assert_eq!(
        (ul.fix.state.as_str(), ul.fix.versions.clone()),
        ("fixed", vec!["2.38.1-5+deb12u4".to_string()])
    );
    assert!(ul.fix_observed_at.is_some());
    // Nothing changed: a rematch does no work.
    let rm = Matcher::rematch(&pool).await.unwrap();
    assert_eq!((rm.images_indexed, rm.keys_matched), (0, 0));
    // A removed image disappears from the answers.
    sqlx::query("DELETE FROM fathom_images WHERE manifest_digest = 'sha256:img-os'")
        .execute(&pool)
        .await
        .unwrap();
    let rm = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(rm.images_removed, 1);
    assert_eq!(
        queries::images_by_vuln(&pool, "CVE-2026-1", "", 100)
            .await
            .unwrap()
            .len(),
        1
    );
}
