//! Turns for periodic maintenance shared by several processes: one taker per period, through Postgres.

use std::time::Duration;

use fathom_queue::{Queue, QueueConfig};
use fathom_testkit::pg::TestDb;

#[tokio::test]
async fn one_of_many_replicas_takes_each_turn() {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("database");
    // Separate pools, as separate core replicas have.
    let replicas: Vec<Queue> = (0..6)
        .map(|_| Queue::connect(db.url(), QueueConfig::default()).expect("queue"))
        .collect();
    let hour = Duration::from_secs(3600);
    let takes =
        futures_util::future::join_all(replicas.iter().map(|q| q.take_turn("rescue", hour))).await;
    let taken = takes
        .into_iter()
        .map(|t| t.expect("take_turn"))
        .filter(|t| *t)
        .count();
    assert_eq!(taken, 1, "exactly one replica runs the first turn");
    for q in &replicas {
        assert!(
            !q.take_turn("rescue", hour).await.unwrap(),
            "the period is not over"
        );
    }
    // Tasks take turns independently.
    assert!(replicas[3].take_turn("prune", hour).await.unwrap());

    // Once the period has passed, the next caller gets the turn, and only it.
    let short = Duration::from_millis(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(replicas[2].take_turn("rescue", short).await.unwrap());
    assert!(!replicas[4].take_turn("rescue", short).await.unwrap());
}
