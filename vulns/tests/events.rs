//! The notification events of matching, on a real Postgres: each image's
//! `dev.fathom.image.vulnerabilities.changed` equals the difference of its vulnerabilities (as the API
//! reads them) before and after a feed change; a new vulnerability across many images is one
//! `dev.fathom.vulnerability.new`; an idle round writes nothing; a round that fails at commit writes no
//! event.

mod support;

use std::collections::BTreeMap;

use fathom_vulns::queries::{self, ImageFilter};
use fathom_vulns::{Feeds, Matcher};
use serde_json::{json, Value};
use sqlx::PgPool;
use support::{db, osv_zip, pypi_config, record, store_pypi_image, FeedServer};

/// An entry as an event and the API both show it: (id, package name, version) → (severity, fix).
type Entries = BTreeMap<(String, String, String), (String, Value)>;

/// The image's vulnerabilities as `GET /v1/images/{digest}/vulnerabilities` reads them.
async fn api_entries(pool: &PgPool, digest: &str) -> Entries {
    queries::vulns_for_image(pool, digest, &ImageFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            (
                (m.id, m.package.name, m.package.version),
                (
                    m.severity,
                    json!({"state": m.fix.state, "versions": m.fix.versions}),
                ),
            )
        })
        .collect()
}

fn event_entries(list: &Value) -> Entries {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["id"].as_str().unwrap().to_string(),
                    e["package"]["name"].as_str().unwrap().to_string(),
                    e["package"]["version"].as_str().unwrap().to_string(),
                ),
                (
                    e["severity"].as_str().unwrap().to_string(),
                    e["fix"].clone(),
                ),
            )
        })
        .collect()
}

/// Events of `kind` written after sequence `after`, as (subject, data).
async fn events(pool: &PgPool, kind: &str, after: i64) -> Vec<(String, Value)> {
    sqlx::query_as(
        "SELECT subject, data FROM notify_events WHERE type = $1 AND seq > $2 ORDER BY seq",
    )
    .bind(kind)
    .bind(after)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn last_seq(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM notify_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

const CHANGED: &str = "dev.fathom.image.vulnerabilities.changed";
const NEW: &str = "dev.fathom.vulnerability.new";
const SYNCED: &str = "dev.fathom.feed.synced";

#[tokio::test]
async fn each_images_diff_equals_its_vulnerabilities_before_and_after_a_feed_change() {
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
    let images: [(&str, &[(&str, &str)]); 3] = [
        (
            "sha256:one",
            &[
                ("alpha", "1.0"),
                ("beta", "1.0"),
                ("gamma", "1.0"),
                ("delta", "1.0"),
            ],
        ),
        (
            "sha256:two",
            &[("alpha", "3.0"), ("beta", "1.0"), ("epsilon", "1.0")],
        ),
        ("sha256:three", &[("epsilon", "1.0"), ("zeta", "1.0")]),
    ];
    for (digest, packages) in images {
        store_pypi_image(&pool, digest, packages).await;
    }
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    Matcher::rematch(&pool).await.unwrap();

    // The first match of each image is reported whole (even when it found nothing).
    let first = events(&pool, CHANGED, 0).await;
    assert_eq!(first.len(), 3, "{first:?}");
    for (subject, data) in &first {
        assert_eq!(data["first_match"], true);
        assert_eq!(data["digest"], subject.as_str());
        assert_eq!(
            event_entries(&data["added"]),
            api_entries(&pool, subject).await
        );
        assert_eq!(data["removed"], json!([]));
    }
    let mut before = BTreeMap::new();
    for (digest, _) in images {
        before.insert(digest, api_entries(&pool, digest).await);
    }

    // alpha's range moves (1.0 leaves, 3.0 enters), beta is untouched, gamma's record is withdrawn,
    // delta gets a fix, epsilon gets a record the fleet never had.
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
                record("GHSA-d", &[], "PyPI", "delta", Some("1.5")),
                record("GHSA-e", &["CVE-2026-14"], "PyPI", "epsilon", Some("2.0")),
            ],
            &[],
        ),
    );
    let seq = last_seq(&pool).await;
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    // The sync announces itself, with the names it changed; syncing again unchanged announces nothing.
    let synced = events(&pool, SYNCED, seq).await;
    assert_eq!(synced.len(), 1, "{synced:?}");
    assert_eq!(synced[0].0, "PyPI");
    assert_eq!(synced[0].1["records"], 5);
    assert_eq!(
        synced[0].1["names"],
        json!(["PyPI/alpha", "PyPI/delta", "PyPI/epsilon", "PyPI/gamma"])
    );
    assert_eq!(synced[0].1["changed_names"], 4);
    assert!(synced[0].1["previous_generation"].is_i64());
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert_eq!(events(&pool, SYNCED, seq).await.len(), 1);
    Matcher::rematch(&pool).await.unwrap();
    let changed: BTreeMap<String, Value> = events(&pool, CHANGED, seq).await.into_iter().collect();
    for (digest, _) in images {
        let after = api_entries(&pool, digest).await;
        let was = &before[digest];
        let added: Entries = after
            .iter()
            .filter(|(k, _)| !was.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removed: Entries = was
            .iter()
            .filter(|(k, _)| !after.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let updated: Entries = after
            .iter()
            .filter(|(k, v)| was.get(*k).is_some_and(|w| w != *v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match changed.get(digest) {
            None => assert!(
                added.is_empty() && removed.is_empty() && updated.is_empty(),
                "{digest}: no event, yet {added:?} {removed:?} {updated:?}"
            ),
            Some(data) => {
                assert_eq!(data["first_match"], false);
                assert_eq!(event_entries(&data["added"]), added, "{digest} added");
                assert_eq!(event_entries(&data["removed"]), removed, "{digest} removed");
                assert_eq!(event_entries(&data["updated"]), updated, "{digest} updated");
            }
        }
    }
    // The withdrawn record is in `removed`; the fix is an update showing what it was.
    let one = &changed["sha256:one"];
    let removed: Vec<&str> = one["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert!(removed.contains(&"GHSA-c"), "{one}");
    let delta = &one["updated"].as_array().unwrap()[0];
    assert_eq!(
        (
            delta["id"].clone(),
            delta["previous"]["fix"]["state"].clone()
        ),
        (json!("GHSA-d"), json!("not-fixed"))
    );
    assert!(
        !changed.contains_key("sha256:three")
            || changed["sha256:three"]["added"][0]["id"] == "GHSA-e"
    );

    // GHSA-e is new to the fleet: one event, listing both images carrying it. GHSA-a newly matching
    // sha256:two is not new: the fleet had it.
    let new = events(&pool, NEW, seq).await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0].0, "GHSA-e");
    let digests: Vec<&str> = new[0].1["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, ["sha256:three", "sha256:two"]);
    assert_eq!(new[0].1["aliases"], json!(["CVE-2026-14"]));

    // An idle round (nothing synced, nothing analyzed) writes nothing.
    let seq = last_seq(&pool).await;
    let report = Matcher::rematch(&pool).await.unwrap();
    assert_eq!(report.events, 0);
    assert_eq!(last_seq(&pool).await, seq);
}

#[tokio::test]
async fn one_new_cve_over_many_images_is_one_event() {
    let (_db, pool) = db().await;
    let server = FeedServer::default();
    server.put(
        "PyPI/all.zip",
        osv_zip(
            &[record("GHSA-old", &[], "PyPI", "alpha", Some("2.0"))],
            &[],
        ),
    );
    let cfg = pypi_config(server.start().await);
    for n in 0..40 {
        store_pypi_image(
            &pool,
            &format!("sha256:img{n:03}"),
            &[("alpha", "1.0"), ("omega", &format!("1.{}", n % 3))],
        )
        .await;
    }
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    Matcher::rematch(&pool).await.unwrap();
    let seq = last_seq(&pool).await;

    server.put(
        "PyPI/all.zip",
        osv_zip(
            &[
                record("GHSA-old", &[], "PyPI", "alpha", Some("2.0")),
                record("GHSA-omega", &["CVE-2026-99"], "PyPI", "omega", Some("9.0")),
            ],
            &[],
        ),
    );
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    Matcher::rematch(&pool).await.unwrap();
    let new = events(&pool, NEW, seq).await;
    assert_eq!(new.len(), 1, "one event for one CVE: {new:?}");
    assert_eq!(new[0].1["images_total"], 40);
    assert_eq!(new[0].1["images"].as_array().unwrap().len(), 40);
    assert_eq!(
        (new[0].1["page"].clone(), new[0].1["pages"].clone()),
        (json!(1), json!(1))
    );
    // Each image still gets its own diff.
    assert_eq!(events(&pool, CHANGED, seq).await.len(), 40);
}

/// Injected fault: a deferred check that fails the commit once a transaction has written everything,
/// its event included.
async fn refuse_commits(pool: &PgPool, on: bool) {
    let sql = if on {
        "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN RAISE EXCEPTION 'injected failure at commit'; END $$; \
         CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON notify_events \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse();"
    } else {
        "DROP TRIGGER refuse ON notify_events"
    };
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

#[tokio::test]
async fn a_sync_or_round_that_fails_at_commit_writes_no_event() {
    let (_db, pool) = db().await;
    let server = FeedServer::default();
    server.put(
        "PyPI/all.zip",
        osv_zip(&[record("GHSA-a", &[], "PyPI", "alpha", Some("2.0"))], &[]),
    );
    let cfg = pypi_config(server.start().await);
    store_pypi_image(&pool, "sha256:one", &[("alpha", "1.0")]).await;

    // The sync fails at commit: no generation, no event.
    refuse_commits(&pool, true).await;
    let report = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert!(report.failed(), "{report:?}");
    assert_eq!(last_seq(&pool).await, 0);
    let generation: Option<i64> =
        sqlx::query_scalar("SELECT max(generation) FROM fathom_vuln_feeds")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(generation, None);
    refuse_commits(&pool, false).await;
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert_eq!(events(&pool, SYNCED, 0).await.len(), 1);
    let seq = last_seq(&pool).await;

    // The match round fails at commit: no matches, no event.
    refuse_commits(&pool, true).await;
    let err = Matcher::rematch(&pool).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    assert_eq!(last_seq(&pool).await, seq);
    assert!(api_entries(&pool, "sha256:one").await.is_empty());

    // Without the fault the same round commits its matches and its event together.
    refuse_commits(&pool, false).await;
    Matcher::rematch(&pool).await.unwrap();
    assert_eq!(events(&pool, CHANGED, seq).await.len(), 1);
    assert_eq!(api_entries(&pool, "sha256:one").await.len(), 1);
}
