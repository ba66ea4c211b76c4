//! The results store on a real Postgres: layer claims (single flight across workers), submission heads,
//! and image documents stored with their package lists in parts shared per layer.

mod support;

use std::time::Duration;

use fathom_analyzer::source::registry::RegistryOptions;
use fathom_analyzer::{Analyzer, AnalyzerOptions, ImageSource, LayerCache, NoCache};
use fathom_worker::store::{save_analysis_in, Store, SubmissionFilter, Timings};
use support::fleet::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_claim_holds_off_others_until_withdrawn_or_expired_and_renewal_keeps_it() {
    let db = support::test_db().await;
    let (a, b) = (
        Store::connect_lazy(db.url(), 1).unwrap(),
        Store::connect_lazy(db.url(), 1).unwrap(),
    );
    let ttl = Duration::from_secs(30);
    let mine = a.begin("sha256:l1", "k", ttl).await.unwrap().expect("free");
    assert_eq!(b.begin("sha256:l1", "k", ttl).await.unwrap(), None);
    // Even the same process waits: two of its jobs may share the layer.
    assert_eq!(a.begin("sha256:l1", "k", ttl).await.unwrap(), None);
    // Another key or layer is independent.
    assert!(b.begin("sha256:l1", "k2", ttl).await.unwrap().is_some());
    // Only the claim's holder can withdraw it.
    let other = b.begin("sha256:l2", "k", ttl).await.unwrap().expect("free");
    a.end("sha256:l1", "k", &other).await.unwrap();
    assert_eq!(b.begin("sha256:l1", "k", ttl).await.unwrap(), None);
    a.end("sha256:l1", "k", &mine).await.unwrap();
    assert!(b.begin("sha256:l1", "k", ttl).await.unwrap().is_some());

    // A claim whose holder died expires; one that is renewed does not.
    let short = Duration::from_millis(300);
    let _dead = a
        .begin("sha256:l3", "k", short)
        .await
        .unwrap()
        .expect("free");
    let alive = a
        .begin("sha256:l4", "k", short)
        .await
        .unwrap()
        .expect("free");
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        a.renew("sha256:l4", "k", &alive, short).await.unwrap();
    }
    assert!(b.begin("sha256:l3", "k", ttl).await.unwrap().is_some());
    assert_eq!(b.begin("sha256:l4", "k", ttl).await.unwrap(), None);

    // A claim dropped mid-way is withdrawn in the background.
    let dropped = a.begin("sha256:l5", "k", ttl).await.unwrap().expect("free");
    a.end_detached("sha256:l5", "k", dropped);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while b.begin("sha256:l5", "k", ttl).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "never withdrawn");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmissions_move_the_head_only_when_a_new_job_answers() {
    let db = support::test_db().await;
    let store = Store::connect_lazy(db.url(), 2).unwrap();
    let handles = support::Db::new(db.url());
    let refs = vec!["r.example/a:1".to_string(), "r.example/b:1".to_string()];
    let first = store.submit(&refs, 3).await.unwrap();
    // Twins in one batch are one head.
    let again = store
        .submit(&[refs[0].clone(), refs[0].clone()], 3)
        .await
        .unwrap();
    assert_eq!(again[0].id, first[0].id);
    assert_eq!(again[1].id, first[0].id);
    let listed = store
        .submissions(&SubmissionFilter {
            limit: 10,
            ..SubmissionFilter::default()
        })
        .await
        .unwrap();
    let order: Vec<&str> = listed.iter().map(|e| e.reference.as_str()).collect();
    assert_eq!(order, ["r.example/b:1", "r.example/a:1"]);
    // Once a's job is gone (cancelled), a resubmission is a new job and a's head moves to the top.
    assert!(handles.queue.cancel(first[0].id).await.unwrap());
    let newer = store.submit(&refs[..1], 3).await.unwrap();
    assert_ne!(newer[0].id, first[0].id);
    let listed = store
        .submissions(&SubmissionFilter {
            limit: 10,
            ..SubmissionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].reference, "r.example/a:1");
    assert_eq!(listed[0].job_id, Some(newer[0].id));
    assert_eq!(listed[0].status, "queued");
    // The superseded job is still found by id.
    let old = store
        .submissions(&SubmissionFilter {
            job_id: Some(first[0].id),
            limit: 1,
            ..SubmissionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(old[0].status, "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_stored_in_package_parts_shared_per_layer_and_read_back_exactly() {
    // debian-java-go and the same image with an npm layer on top: every layer but the top is shared
    // (compressed as the samples are, so the shared layers have the same digests)
    // (the samples' other image removes base packages, so its base layer's visible packages differ).
    let mut fleet = Fleet::direct(&["debian-java-go"]).await;
    let mut sample = fathom_testkit::samples::sample_images()
        .into_iter()
        .find(|s| s.name == "debian-java-go")
        .expect("sample");
    sample.layers.push(top_layer());
    sample.name = "java-go-top".into();
    let built = fathom_testkit::BuiltImage::from_sample(&sample, fathom_testkit::Compress::Gzip)
        .expect("image");
    let repo_tag = support::push_image("parts-top", &built).await;
    fleet.refs.push(fleet.reference(&repo_tag));
    fleet.images.push((repo_tag, built));
    let worker = fleet.worker("w-parts", &fleet.spec());
    fleet.submit(&fleet.refs, 3).await;
    fleet
        .wait_analyzed(&fleet.refs, Duration::from_secs(120))
        .await;
    drop(worker);
    let store = &fleet.db.store;
    let pool = store.pool();
    let base = fleet.images[0].1.layers[0].digest();
    // The oracle: each image analyzed again in process (nothing cached), stored through the store's
    // own save, must read back equal to what was analyzed, package order included.
    for (i, reference) in fleet.refs.iter().enumerate() {
        let digest = fleet.digest(i);
        let record = store.image(&digest).await.unwrap().expect("analyzed");
        let options = AnalyzerOptions {
            registry: RegistryOptions {
                insecure: vec![fleet.host.clone()],
                ..Default::default()
            },
            ..Default::default()
        };
        let analyzer = Analyzer::new(fathom_analyzer::catalog::default_catalogers(), options);
        let source: ImageSource = reference.parse().unwrap();
        let mut analysis = analyzer.analyze(&source, &NoCache).await.unwrap();
        // Under the worker's catalogers key, so the parts belong to the layer rows it stored.
        analysis.analyzer.cache_key = record.cache_key.clone();
        let mut tx = pool.begin().await.unwrap();
        save_analysis_in(&mut tx, &analysis, reference, Timings::default())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let back = store.document(&digest).await.unwrap().expect("document");
        assert_eq!(back, analysis, "{reference}");
        assert!(
            analysis.packages.len() > 10,
            "{reference}: a real package list"
        );
        // Stored in parts: the image's own document names them and keeps no package of theirs.
        let (parts, raw): (i32, Vec<u8>) = sqlx::query_as(
            "SELECT cardinality(package_parts), document FROM fathom_images WHERE manifest_digest = $1",
        )
        .bind(&digest)
        .fetch_one(pool)
        .await
        .unwrap();
        assert!(parts >= 2, "{reference}: {parts} parts");
        let raw: serde_json::Value =
            serde_json::from_slice(&zstd::bulk::decompress(&raw, 1 << 26).unwrap()).unwrap();
        assert_eq!(raw["packages"], serde_json::json!([]), "{reference}");
    }
    // The shared base layer's packages are one part, stored once for both images (the worker's own
    // saves left parts the re-saves no longer name: the sweeper's, not counted).
    let base_parts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fathom_image_package_parts p WHERE layer_digest = $1 \
         AND EXISTS (SELECT 1 FROM fathom_images i WHERE i.package_parts @> ARRAY[p.hash])",
    )
    .bind(&base)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(base_parts, 1);
    let shared: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM fathom_image_package_parts p \
         WHERE (SELECT count(*) FROM fathom_images i WHERE i.package_parts @> ARRAY[p.hash]) = 2",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(
        shared >= 2,
        "the base and java-go layers' parts are shared: {shared}"
    );
    let named: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT manifest_digest) FROM fathom_images i, fathom_image_package_parts p \
         WHERE p.layer_digest = $1 AND i.package_parts @> ARRAY[p.hash]",
    )
    .bind(&base)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(named, 2, "both images name the base layer's part");
}

/// A layer holding one npm package of its own.
fn top_layer() -> Vec<fathom_testkit::samples::SampleEntry> {
    use fathom_testkit::samples::{SampleEntry, SampleKind};
    let dir = |path: &str| SampleEntry {
        path: path.into(),
        mode: 0o755,
        kind: SampleKind::Dir,
    };
    vec![
        dir("/srv"),
        dir("/srv/node_modules"),
        dir("/srv/node_modules/top"),
        SampleEntry {
            path: "/srv/node_modules/top/package.json".into(),
            mode: 0o644,
            kind: SampleKind::File(b"{\"name\": \"top\", \"version\": \"1.0.0\"}\n".to_vec()),
        },
    ]
}
