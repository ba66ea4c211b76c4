//! Connections an idle fleet holds: real `fathom worker` processes analyze an image from the real registry,
//! then sit idle, polling and rescuing on their listening connections; their pools close what they do
//! not use, so Postgres is left with one listening connection per worker.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Connection;
use support::{Fleet, WorkerSpec};

/// Connections to the test database by `application_name`, the asking one aside.
async fn connections(url: &str) -> BTreeMap<String, i64> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT application_name, count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() GROUP BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_keep_only_their_listeners_and_reconnect_for_work() {
    let fleet = Fleet::direct(&["debian-python-npm", "debian-java-go"]).await;
    // Polls and rescues every second (each worker every 2 s, in turn): they run on the listening
    // connection, so neither pool is touched while idle and both close.
    let spec = WorkerSpec {
        poll_interval: "1s",
        rescue_interval: "1s",
        ..fleet.spec()
    };
    let workers = [fleet.worker("w1", &spec), fleet.worker("w2", &spec)];
    fleet.submit(&fleet.refs[..1], 3).await;
    fleet
        .wait_analyzed(&fleet.refs[..1], Duration::from_secs(120))
        .await;
    let busy = connections(fleet.url()).await;
    assert!(
        busy.get("fathom-store").copied().unwrap_or(0) > 0,
        "the analysis used a store connection: {busy:?}"
    );

    // Every pool idle for longer than its timeout (30 s, checked at least every 30 s): closed, the test's
    // own handles' included.
    tokio::time::sleep(Duration::from_secs(65)).await;
    let idle = connections(fleet.url()).await;
    let listeners = workers.len() as i64;
    assert_eq!(
        idle,
        BTreeMap::from([("fathom-listener".to_string(), listeners)]),
        "an idle fleet holds one listener per worker"
    );

    // Work wakes a worker, whose pools reconnect on demand.
    fleet.submit(&fleet.refs[1..], 3).await;
    fleet
        .wait_analyzed(&fleet.refs[1..], Duration::from_secs(120))
        .await;
    drop(workers);
}
