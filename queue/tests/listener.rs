//! Claims on the listening connection against a real PostgreSQL: a worker's queue bound to its waker
//! ([`Queue::with_listener`]) claims and rescues without opening a pooled connection, and falls back to
//! the pool when the listener is gone.

use std::time::Duration;

use fathom_queue::{NewJob, Queue, QueueConfig, Wake, Waker};
use fathom_testkit::pg::TestDb;
use serde_json::json;
use tokio_postgres::NoTls;

const KIND: &str = "analyze";
/// `application_name` of the worker's own pool, so its connections can be counted apart.
const POOL_APP: &str = "worker-pool";

fn job(n: usize) -> NewJob {
    NewJob::new(
        KIND,
        json!({ "reference": format!("registry.local/img:{n}") }),
    )
}

/// `url` with `application_name` set (the queue keeps one the URL gives).
fn named(url: &str, app: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={app}")
}

/// Connections to the test database named `app`.
async fn connections(url: &str, app: &str) -> i64 {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("connect");
    let driver = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = $1",
            &[&app],
        )
        .await
        .expect("count connections");
    drop(client);
    let _ = driver.await;
    row.get(0)
}

/// A worker's waker, past its start-up wake-up (its listener is up).
async fn joined(url: &str) -> Waker {
    let mut waker = Waker::join(url).expect("waker");
    assert_eq!(
        waker.wait(Duration::from_secs(10)).await,
        Wake::Reconnected,
        "the listener connects"
    );
    waker
}

#[tokio::test]
async fn a_woken_worker_claims_and_rescues_on_its_listener_without_a_pooled_connection() {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let producer = Queue::connect(db.url(), QueueConfig::default()).expect("producer");
    let mut waker = joined(db.url()).await;
    let pool = Queue::connect(&named(db.url(), POOL_APP), QueueConfig::default()).expect("pool");
    let queue = pool.with_listener(&waker);

    producer.enqueue(job(0)).await.expect("enqueue");
    assert_eq!(
        waker.wait(Duration::from_secs(10)).await,
        Wake::Notified,
        "the enqueue wakes the only member"
    );
    // A lease that expires at once, for the rescue below.
    let claimed = queue
        .claim(KIND, 2, "w1", Duration::from_millis(1))
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1, "the woken worker claims the job");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rescued = queue.rescue_expired(10).await.expect("rescue");
    assert_eq!(rescued.len(), 1, "the expired lease is rescued");
    let again = queue
        .claim(KIND, 2, "w1", Duration::from_secs(30))
        .await
        .expect("claim again");
    assert_eq!(again.len(), 1, "the rescued job is claimed again");
    assert_eq!(
        connections(db.url(), POOL_APP).await,
        0,
        "claims and rescues ran on the listening connection: the pool never connected"
    );

    // Statements that may wait on a lock keep to the pool.
    queue.complete(again[0].lease).await.expect("complete");
    assert_eq!(connections(db.url(), POOL_APP).await, 1);

    // Without a listener (left the fleet), claims go through the pool.
    waker.leave().await;
    producer.enqueue(job(1)).await.expect("enqueue");
    let claimed = queue
        .claim(KIND, 2, "w1", Duration::from_secs(30))
        .await
        .expect("claim through the pool");
    assert_eq!(claimed.len(), 1);
}

#[tokio::test]
async fn a_claim_when_the_listener_just_died_is_answered_by_the_pool() {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let producer = Queue::connect(db.url(), QueueConfig::default()).expect("producer");
    let waker = joined(db.url()).await;
    let queue = Queue::connect(&named(db.url(), POOL_APP), QueueConfig::default())
        .expect("pool")
        .with_listener(&waker);
    producer.enqueue(job(0)).await.expect("enqueue");

    // The listener's backend is killed; the claim right after must not fail (nor wait for the
    // listener's reconnect).
    let (admin, connection) = tokio_postgres::connect(db.url(), NoTls)
        .await
        .expect("connect");
    let driver = tokio::spawn(connection);
    let killed = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'fathom-listener'",
            &[],
        )
        .await
        .expect("terminate the listener");
    assert_eq!(killed.get::<_, i64>(0), 1);
    drop(admin);
    let _ = driver.await;

    let claimed = queue
        .claim(KIND, 2, "w1", Duration::from_secs(30))
        .await
        .expect("the claim falls back to the pool");
    assert_eq!(claimed.len(), 1);
}
