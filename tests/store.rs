//! The results store on a real Postgres: layer claims (single flight across workers) and submission heads.

mod support;

use std::time::Duration;

use fathom_worker::store::{Store, SubmissionFilter};
use fathom_worker::LayerCache;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_claim_holds_off_other_workers_until_withdrawn_or_expired() {
    let db = support::test_db().await;
    let (a, b) = (
        Store::connect_lazy(db.url(), 1).unwrap(),
        Store::connect_lazy(db.url(), 1).unwrap(),
    );
    let ttl = Duration::from_secs(30);
    assert!(a.begin("sha256:l1", "k", ttl).await.unwrap());
    assert!(!b.begin("sha256:l1", "k", ttl).await.unwrap());
    // Even the same process waits: two of its jobs may share the layer.
    assert!(!a.begin("sha256:l1", "k", ttl).await.unwrap());
    // Another key or layer is independent.
    assert!(b.begin("sha256:l1", "k2", ttl).await.unwrap());
    assert!(b.begin("sha256:l2", "k", ttl).await.unwrap());
    // Only the owner can withdraw its claim.
    b.end("sha256:l1", "k").await.unwrap();
    assert!(!b.begin("sha256:l1", "k", ttl).await.unwrap());
    a.end("sha256:l1", "k").await.unwrap();
    assert!(b.begin("sha256:l1", "k", ttl).await.unwrap());
    // A claim whose owner died expires.
    assert!(a
        .begin("sha256:l3", "k", Duration::from_millis(200))
        .await
        .unwrap());
    assert!(!b.begin("sha256:l3", "k", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(b.begin("sha256:l3", "k", ttl).await.unwrap());
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
