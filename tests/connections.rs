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

/// The core's pool hands out a connection without pinging it first when it was in use moments ago
/// (the ping cost a round trip per statement), but one that sat idle is pinged: after Postgres restarts,
/// requests made once the pool's connections have been idle a second are answered, none fails on a
/// connection the restart cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_after_postgres_restarts_under_its_idle_connections() {
    use fathom_testkit::pg::{Durability, OwnedCluster};
    let cluster = tokio::task::spawn_blocking(|| OwnedCluster::start(Durability::Throwaway))
        .await
        .unwrap()
        .expect("a cluster of our own to restart");
    let url = cluster.info().url("postgres");
    let out = support::cli(&url, &["migrate"]);
    assert!(out.status.success(), "{out:?}");
    let dir = tempfile::tempdir().unwrap();
    let api = support::api::Api::start(dir.path(), &url, "");
    let client = api.client();
    // Eight at once, so the pool opens (up to) its eight connections.
    let burst = || async {
        let answers = futures_util::future::join_all(
            (0..8).map(|_| async { client.get("/v1/images?limit=5").await.0 }),
        )
        .await;
        answers.into_iter().map(|s| s.as_u16()).collect::<Vec<_>>()
    };
    assert_eq!(burst().await, vec![200; 8]);
    let opened = connections(&url).await;
    assert!(
        opened.get("fathom-store").copied().unwrap_or(0) >= 2,
        "{opened:?}"
    );
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop postgres");
        cluster.start_again().expect("start postgres again");
        cluster
    })
    .await
    .unwrap();
    // Past the idle time after which a connection is pinged before use.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        burst().await,
        vec![200; 8],
        "{}",
        std::fs::read_to_string(&api.log).unwrap_or_default()
    );
    drop(api);
    drop(cluster);
}
