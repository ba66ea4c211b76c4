//! The results store on a real Postgres: layer claims (single flight across workers) and submission heads.

mod support;

use std::time::Duration;

use fathom_analyzer::LayerCache;
use fathom_worker::store::{Store, SubmissionFilter};

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
