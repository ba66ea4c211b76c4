//! A job may ask for one platform of a multi-platform index: the platform travels from enqueue (hot path
//! and caller's transaction) to the claim and the job record, against a real PostgreSQL.

use std::time::Duration;

use fathom_queue::{tx, NewJob, Queue, QueueConfig};
use fathom_testkit::pg::TestDb;
use serde_json::json;

const KIND: &str = "analyze";

fn job(reference: &str, key: &str) -> NewJob {
    NewJob::new(KIND, json!({ "reference": reference })).dedup_key(key)
}

#[tokio::test]
async fn the_platform_asked_for_reaches_the_claim_and_the_record() {
    use sqlx::Connection;
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let queue = Queue::connect(db.url(), QueueConfig::default()).expect("queue");
    let index = "r.test/app@sha256:aa";
    // Two platforms of one index are two live jobs (their own dedup keys); a plain job asks for none.
    let hot = queue
        .enqueue_many(&[
            job(index, "r.test/app@sha256:a1").platform("linux/amd64"),
            job("r.test/plain:1", "r.test/plain:1"),
        ])
        .await
        .expect("enqueue");
    let mut conn = sqlx::PgConnection::connect(db.url())
        .await
        .expect("connect");
    let mut t = conn.begin().await.expect("begin");
    let in_tx = tx::enqueue_many_in(
        &mut t,
        &[job(index, "r.test/app@sha256:a2").platform("linux/arm64")],
    )
    .await
    .expect("enqueue in tx");
    t.commit().await.expect("commit");
    assert!(hot.iter().chain(&in_tx).all(|e| e.created));

    let claimed = queue
        .claim(KIND, 10, "w", Duration::from_secs(30))
        .await
        .expect("claim");
    let mut asked: Vec<(String, Option<String>)> = claimed
        .iter()
        .map(|j| {
            (
                j.payload["reference"].as_str().unwrap().to_owned(),
                j.platform.clone(),
            )
        })
        .collect();
    asked.sort();
    assert_eq!(
        asked,
        vec![
            (index.to_owned(), Some("linux/amd64".to_owned())),
            (index.to_owned(), Some("linux/arm64".to_owned())),
            ("r.test/plain:1".to_owned(), None),
        ]
    );
    let record = queue.job(in_tx[0].id).await.expect("job").expect("record");
    assert_eq!(record.platform.as_deref(), Some("linux/arm64"));
    let plain = queue.job(hot[1].id).await.expect("job").expect("record");
    assert_eq!(plain.platform, None);
}
