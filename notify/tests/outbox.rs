//! The outbox on a real Postgres: an event commits with its change or not at all.

use fathom_notify::{types, write, write_many, NewEvent};
use fathom_testkit::pg::TestDb;
use serde_json::json;

#[tokio::test]
async fn an_event_commits_with_its_transaction_or_not_at_all() {
    let db = TestDb::create(&[&fathom_notify::migrator()]).await.unwrap();
    let pool = &sqlx::PgPool::connect(db.url()).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    write(
        &mut tx,
        &NewEvent::new(types::IMAGE_ANALYZED, "sha256:aa", json!({"n": 1})),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notify_events")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "a rolled-back change wrote an event");

    let mut tx = pool.begin().await.unwrap();
    let id = write(
        &mut tx,
        &NewEvent::new(types::IMAGE_ANALYZED, "sha256:aa", json!({"n": 1})),
    )
    .await
    .unwrap();
    let events: Vec<NewEvent> = (2..5)
        .map(|n| NewEvent::new(types::TAG_MOVED, format!("r:{n}"), json!({ "n": n })))
        .collect();
    assert_eq!(write_many(&mut tx, &events).await.unwrap(), 3);
    tx.commit().await.unwrap();

    let rows: Vec<(String, String, String, serde_json::Value)> =
        sqlx::query_as("SELECT id::text, type, subject, data FROM notify_events ORDER BY seq")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0].0, id);
    assert_eq!(rows[0].1, types::IMAGE_ANALYZED);
    let subjects: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(subjects, ["sha256:aa", "r:2", "r:3", "r:4"]);
    assert_eq!(rows[3].3, json!({"n": 4}));
}
