//! Work per job against a real PostgreSQL: the estimate stored at enqueue, the fetched bytes stored at
//! completion, and the stats that add them up (ready, running, the recent window) in their one query.

use std::time::Duration;

use fathom_queue::{tx, NewJob, Queue, QueueConfig, Work};
use fathom_testkit::pg::TestDb;
use serde_json::json;

const KIND: &str = "analyze";
const TTL: Duration = Duration::from_secs(30);
const MB: i64 = 1_000_000;

fn job(n: usize) -> NewJob {
    NewJob::new(
        KIND,
        json!({ "reference": format!("registry.local/img:{n}") }),
    )
}

#[tokio::test]
async fn estimates_and_actuals_add_up_in_the_stats() {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let queue = Queue::connect(db.url(), QueueConfig::default()).expect("queue");

    // Nothing finished yet: a job without an estimate is unknown, cached and cold ones count as given.
    let ids: Vec<i64> = queue
        .enqueue_many(&[
            job(0).work_bytes(300 * MB),
            job(1).work_bytes(0),
            job(2),
            job(3).work_bytes(-5),
        ])
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.ready_work,
        Work {
            bytes: 300 * MB,
            cached_jobs: 2,
            unknown_jobs: 1
        },
        "a negative estimate is stored as 0"
    );
    assert_eq!(stats.recent.median_fetched_bytes, None);
    assert_eq!(
        queue.job(ids[0]).await.unwrap().unwrap().work_bytes,
        Some(300 * MB)
    );

    // Claim all four; the running work is the same split.
    let claimed = queue.claim(KIND, 4, "w1", TTL).await.unwrap();
    assert_eq!(claimed.len(), 4);
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.ready_work, Work::default());
    assert_eq!(stats.running_work.bytes, 300 * MB);

    // Workers report what they fetched, inside the caller's transaction.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    // By job: the 300 MB estimate fetched 280 MB, the unestimated one 40 MB, the cached ones nothing.
    let fetched = [280 * MB, 0, 40 * MB, 0];
    for c in &claimed {
        let i = ids.iter().position(|&id| id == c.id()).unwrap();
        let mut conn = pool.acquire().await.unwrap();
        tx::complete_fetched_in(&mut conn, c.lease, fetched[i] as u64)
            .await
            .unwrap();
    }
    let done = queue.job(ids[0]).await.unwrap().unwrap();
    assert_eq!(done.fetched_bytes, Some(fetched[0]));
    // A lease no longer held records nothing.
    let mut conn = pool.acquire().await.unwrap();
    assert!(tx::complete_fetched_in(&mut conn, claimed[0].lease, 1)
        .await
        .is_err());
    let first = ids.iter().position(|&id| id == claimed[0].id()).unwrap();
    assert_eq!(
        queue
            .job(claimed[0].id())
            .await
            .unwrap()
            .unwrap()
            .fetched_bytes,
        Some(fetched[first])
    );

    let stats = queue.stats().await.unwrap();
    let r = stats.recent;
    assert_eq!((r.cold_jobs, r.cold_bytes), (2, 320 * MB));
    assert_eq!(r.cached_jobs, 2);
    assert!(r.cold_seconds >= 0.0 && r.cached_seconds >= 0.0);
    // Median of 0, 0, 40 MB, 280 MB (the lower middle value).
    assert_eq!(r.median_fetched_bytes, Some(0));
    // The estimate's error: the three jobs with an estimate were estimated at 300 MB and fetched 280 MB
    // (the one without an estimate is left out of both sums).
    assert_eq!(
        (r.estimated_bytes, r.estimated_fetched_bytes),
        (300 * MB, 280 * MB)
    );
    assert_eq!(r.sum_kb, (320 * MB / 1000) as f64);

    // Now a job without an estimate counts as the median: 0 here, so as a cached job.
    queue.enqueue(job(9)).await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        stats.ready_work,
        Work {
            bytes: 0,
            cached_jobs: 1,
            unknown_jobs: 0
        }
    );
}

#[test]
fn an_unestimated_job_counts_as_the_median() {
    assert_eq!(
        Work::of(100, 1, 3, Some(50)),
        Work {
            bytes: 250,
            cached_jobs: 1,
            unknown_jobs: 0
        }
    );
    assert_eq!(Work::of(100, 1, 3, Some(0)).cached_jobs, 4);
    assert_eq!(Work::of(100, 1, 3, None).unknown_jobs, 3);
}
