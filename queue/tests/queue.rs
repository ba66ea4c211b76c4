//! The queue against a real PostgreSQL (a throwaway cluster shared by the test run, a database per test).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fathom_queue::{
    tx, Error, Failure, JobState, NewJob, Queue, QueueConfig, StatementMode, Wake, Waker,
};
use fathom_testkit::pg::TestDb;
use serde_json::json;
use tokio::sync::Mutex;

const KIND: &str = "analyze";
const TTL: Duration = Duration::from_secs(30);

async fn setup(config: QueueConfig) -> (TestDb, Queue) {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let queue = Queue::connect(db.url(), config).expect("queue");
    (db, queue)
}

async fn setup_default() -> (TestDb, Queue) {
    setup(QueueConfig::default()).await
}

fn job(n: usize) -> NewJob {
    NewJob::new(
        KIND,
        json!({ "reference": format!("registry.local/img:{n}") }),
    )
}

#[tokio::test]
async fn migrations_apply_twice_and_concurrently() {
    let db = TestDb::create(&[]).await.expect("empty database");
    let url = db.url().to_owned();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { fathom_queue::migrate(&url).await })
        })
        .collect();
    for run in runs {
        run.await.expect("join").expect("concurrent migrate");
    }
    fathom_queue::migrate(&url).await.expect("second migrate");
    let queue = Queue::connect(&url, QueueConfig::default()).expect("queue");
    assert_eq!(queue.stats().await.expect("stats").ready, 0);
}

#[tokio::test]
async fn claims_in_priority_then_run_at_then_id_order() {
    let (_db, queue) = setup_default().await;
    let ids: Vec<i64> = queue
        .enqueue_many(&[job(0).priority(5), job(1), job(2).priority(-1), job(3)])
        .await
        .expect("enqueue")
        .iter()
        .map(|e| e.id)
        .collect();
    let claimed = queue.claim(KIND, 10, "w1", TTL).await.expect("claim");
    let order: Vec<i64> = claimed.iter().map(|j| j.id()).collect();
    assert_eq!(order, vec![ids[2], ids[1], ids[3], ids[0]]);
    assert!(claimed.iter().all(|j| j.attempt == 1));
    assert!(queue
        .claim(KIND, 10, "w1", TTL)
        .await
        .expect("claim")
        .is_empty());
    assert!(queue
        .claim("other-kind", 10, "w1", TTL)
        .await
        .expect("claim")
        .is_empty());
}

#[tokio::test]
async fn every_job_completed_exactly_once_under_contention() {
    let (_db, queue) = setup(QueueConfig {
        pool_size: 16,
        ..QueueConfig::default()
    })
    .await;
    const JOBS: usize = 2_000;
    let jobs: Vec<NewJob> = (0..JOBS).map(job).collect();
    queue.enqueue_many(&jobs).await.expect("enqueue");

    let seen: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
    let workers: Vec<_> = (0..12)
        .map(|w| {
            let queue = queue.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let batch = [1, 7, 25][w % 3];
                loop {
                    let claimed = queue
                        .claim(KIND, batch, &format!("worker-{w}"), TTL)
                        .await
                        .expect("claim");
                    if claimed.is_empty() {
                        break;
                    }
                    let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
                    {
                        let mut seen = seen.lock().await;
                        for j in &claimed {
                            *seen.entry(j.id()).or_default() += 1;
                        }
                    }
                    let lost = queue.complete_many(&leases).await.expect("complete");
                    assert!(lost.is_empty(), "no lease may be lost here: {lost:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    let seen = seen.lock().await;
    assert_eq!(seen.len(), JOBS, "every job claimed");
    assert!(seen.values().all(|&n| n == 1), "no job claimed twice");
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        (stats.succeeded, stats.ready, stats.running),
        (JOBS as i64, 0, 0)
    );
}

#[tokio::test]
async fn expired_lease_is_rescued_and_stale_completion_is_fenced() {
    let (_db, queue) = setup_default().await;
    queue
        .enqueue(job(1).max_attempts(3))
        .await
        .expect("enqueue");
    let first = queue
        .claim(KIND, 1, "dead-worker", Duration::from_millis(200))
        .await
        .expect("claim")
        .remove(0);
    assert!(queue.rescue_expired(100).await.expect("rescue").is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;

    let rescued = queue.rescue_expired(100).await.expect("rescue");
    assert_eq!(rescued, vec![(first.id(), JobState::Queued)]);
    let record = queue.job(first.id()).await.expect("job").expect("exists");
    assert_eq!(record.attempt, 1, "the expired attempt counts");
    assert!(record
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("dead-worker")));

    let second = queue
        .claim(KIND, 1, "live-worker", TTL)
        .await
        .expect("claim")
        .remove(0);
    assert_eq!(second.id(), first.id());
    assert_eq!(second.attempt, 2);
    assert_ne!(second.lease.token, first.lease.token);

    // The worker that stopped heartbeating comes back: none of its writes may land.
    assert!(matches!(
        queue.complete(first.lease).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(matches!(
        queue.fail(first.lease, Failure::Permanent, "late").await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(queue
        .release(&[first.lease])
        .await
        .expect("release")
        .is_empty());
    let hb = queue
        .heartbeat(&[first.lease], TTL)
        .await
        .expect("heartbeat");
    assert_eq!(hb.lost, vec![first.id()]);

    queue
        .complete(second.lease)
        .await
        .expect("current holder completes");
    let record = queue.job(first.id()).await.expect("job").expect("exists");
    assert_eq!(record.state, JobState::Succeeded);
}

#[tokio::test]
async fn rescue_of_the_last_attempt_dead_letters() {
    let (_db, queue) = setup_default().await;
    queue
        .enqueue(job(1).max_attempts(1))
        .await
        .expect("enqueue");
    let claimed = queue
        .claim(KIND, 1, "w", Duration::from_millis(100))
        .await
        .expect("claim");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rescued = queue.rescue_expired(10).await.expect("rescue");
    assert_eq!(rescued, vec![(claimed[0].id(), JobState::Dead)]);
}

#[tokio::test]
async fn heartbeat_extends_held_leases_and_reports_lost_ones() {
    let (_db, queue) = setup_default().await;
    queue
        .enqueue_many(&[job(1), job(2)])
        .await
        .expect("enqueue");
    let claimed = queue
        .claim(KIND, 2, "w", Duration::from_millis(300))
        .await
        .expect("claim");
    let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let hb = queue
            .heartbeat(&leases, Duration::from_millis(300))
            .await
            .expect("heartbeat");
        assert_eq!(hb.extended.len(), 2, "held leases stay held");
        assert!(queue.rescue_expired(10).await.expect("rescue").is_empty());
    }
    queue.complete(leases[0]).await.expect("complete");
    let hb = queue.heartbeat(&leases, TTL).await.expect("heartbeat");
    assert_eq!(hb.extended, vec![leases[1].job_id]);
    assert_eq!(hb.lost, vec![leases[0].job_id]);
}

#[tokio::test]
async fn retryable_failures_back_off_then_dead_letter() {
    let (_db, queue) = setup(QueueConfig {
        backoff_base: Duration::from_millis(200),
        backoff_cap: Duration::from_millis(300),
        ..QueueConfig::default()
    })
    .await;
    let id = queue
        .enqueue(job(1).max_attempts(3))
        .await
        .expect("enqueue")
        .id;
    for attempt in 1..=3 {
        let claimed = loop {
            let c = queue.claim(KIND, 1, "w", TTL).await.expect("claim");
            if !c.is_empty() {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(claimed[0].attempt, attempt);
        let failure = Failure::Retryable { retry_after: None };
        let outcome = queue
            .fail(
                claimed[0].lease,
                failure,
                &format!("registry 503 on attempt {attempt}"),
            )
            .await
            .expect("fail");
        if attempt < 3 {
            assert_eq!(outcome.state, JobState::Queued);
            let stats = queue.stats().await.expect("stats");
            assert_eq!(
                (stats.ready, stats.scheduled),
                (0, 1),
                "backoff delays the retry"
            );
        } else {
            assert_eq!(outcome.state, JobState::Dead);
        }
    }
    let record = queue.job(id).await.expect("job").expect("exists");
    assert_eq!(record.state, JobState::Dead);
    assert_eq!(
        record.last_error.as_deref(),
        Some("registry 503 on attempt 3")
    );
    assert!(record.finished_at.is_some());
}

#[tokio::test]
async fn retry_after_is_honoured_and_permanent_failures_fail_at_once() {
    let (_db, queue) = setup(QueueConfig {
        backoff_base: Duration::from_millis(10),
        ..QueueConfig::default()
    })
    .await;
    queue
        .enqueue_many(&[job(1), job(2)])
        .await
        .expect("enqueue");
    let claimed = queue.claim(KIND, 2, "w", TTL).await.expect("claim");
    let before = std::time::SystemTime::now();
    let retry_after = Some(Duration::from_secs(120));
    let outcome = queue
        .fail(claimed[0].lease, Failure::Retryable { retry_after }, "429")
        .await
        .expect("fail");
    let wait = outcome.run_at.duration_since(before).unwrap_or_default();
    assert!(
        wait >= Duration::from_secs(110),
        "Retry-After respected: {wait:?}"
    );

    let outcome = queue
        .fail(claimed[1].lease, Failure::Permanent, "manifest unknown")
        .await
        .expect("fail");
    assert_eq!(outcome.state, JobState::Failed);
    let stats = queue.stats().await.expect("stats");
    assert_eq!((stats.failed, stats.scheduled, stats.ready), (1, 1, 0));
}

#[tokio::test]
async fn dedup_returns_the_live_job() {
    let (_db, queue) = setup_default().await;
    let a = queue
        .enqueue(job(1).dedup_key("sha256:aaa"))
        .await
        .expect("enqueue");
    assert!(a.created);
    let batch = queue
        .enqueue_many(&[
            job(2).dedup_key("sha256:aaa"),
            job(3).dedup_key("sha256:bbb"),
            job(4).dedup_key("sha256:bbb"),
            job(5),
        ])
        .await
        .expect("enqueue");
    assert_eq!((batch[0].id, batch[0].created), (a.id, false));
    assert!(batch[1].created);
    assert_eq!(
        (batch[2].id, batch[2].created),
        (batch[1].id, false),
        "twin in one batch"
    );
    assert!(batch[3].created);

    let claimed = queue.claim(KIND, 1, "w", TTL).await.expect("claim");
    assert_eq!(claimed[0].id(), a.id);
    let again = queue
        .enqueue(job(6).dedup_key("sha256:aaa"))
        .await
        .expect("enqueue");
    assert_eq!(
        (again.id, again.created),
        (a.id, false),
        "running jobs dedup too"
    );
    queue.complete(claimed[0].lease).await.expect("complete");
    let after = queue
        .enqueue(job(7).dedup_key("sha256:aaa"))
        .await
        .expect("enqueue");
    assert!(
        after.created && after.id != a.id,
        "finished jobs do not block a new one"
    );
}

#[tokio::test]
async fn release_puts_jobs_back_at_once_without_spending_an_attempt() {
    let (_db, queue) = setup_default().await;
    queue
        .enqueue_many(&[job(1), job(2)])
        .await
        .expect("enqueue");
    let claimed = queue.claim(KIND, 2, "draining", TTL).await.expect("claim");
    let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
    let released = queue.release(&leases).await.expect("release");
    assert_eq!(released.len(), 2);
    let reclaimed = queue.claim(KIND, 2, "other", TTL).await.expect("claim");
    assert_eq!(reclaimed.len(), 2);
    assert!(reclaimed.iter().all(|j| j.attempt == 1));
    assert!(queue
        .lease_owners()
        .await
        .expect("owners")
        .contains_key("other"));
}

#[tokio::test]
async fn notify_wakes_an_idle_listener() {
    let (db, queue) = setup_default().await;
    let mut waker = Waker::listen(db.url()).expect("listen");
    // The first wake-up after connecting is the reconnect catch-up; drain it.
    assert_eq!(waker.wait(Duration::from_secs(10)).await, Wake::Notified);
    assert_eq!(waker.wait(Duration::from_millis(300)).await, Wake::Timeout);
    let waiter = tokio::spawn(async move { waker.wait(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue
        .enqueue_many(&[job(1), job(2), job(3)])
        .await
        .expect("enqueue");
    assert_eq!(waiter.await.expect("join"), Wake::Notified);
}

#[tokio::test]
async fn scheduled_jobs_do_not_notify() {
    let (db, queue) = setup_default().await;
    let mut waker = Waker::listen(db.url()).expect("listen");
    assert_eq!(waker.wait(Duration::from_secs(10)).await, Wake::Notified);
    queue
        .enqueue(job(1).delay(Duration::from_secs(3600)))
        .await
        .expect("enqueue");
    assert_eq!(waker.wait(Duration::from_millis(500)).await, Wake::Timeout);
}

#[tokio::test]
async fn prune_removes_only_old_finished_jobs() {
    let (_db, queue) = setup_default().await;
    queue
        .enqueue_many(&(0..30).map(job).collect::<Vec<_>>())
        .await
        .expect("enqueue");
    let claimed = queue.claim(KIND, 20, "w", TTL).await.expect("claim");
    let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
    queue.complete_many(&leases[..15]).await.expect("complete");
    assert_eq!(
        queue.prune(Duration::from_secs(3600)).await.expect("prune"),
        0
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        queue.prune(Duration::from_millis(10)).await.expect("prune"),
        15
    );
    let stats = queue.stats().await.expect("stats");
    assert_eq!((stats.succeeded, stats.running, stats.ready), (0, 5, 10));
}

#[tokio::test]
async fn cancel_only_touches_queued_jobs() {
    let (_db, queue) = setup_default().await;
    let ids: Vec<i64> = queue
        .enqueue_many(&[job(1), job(2)])
        .await
        .expect("enqueue")
        .iter()
        .map(|e| e.id)
        .collect();
    let running = queue
        .claim(KIND, 1, "w", TTL)
        .await
        .expect("claim")
        .remove(0);
    assert!(!queue.cancel(running.id()).await.expect("cancel"));
    let other = if running.id() == ids[0] {
        ids[1]
    } else {
        ids[0]
    };
    assert!(queue.cancel(other).await.expect("cancel"));
    assert!(!queue.cancel(other).await.expect("cancel twice"));
    let record = queue.job(other).await.expect("job").expect("exists");
    assert_eq!(record.state, JobState::Cancelled);
    assert!(queue
        .claim(KIND, 5, "w", TTL)
        .await
        .expect("claim")
        .is_empty());
}

#[tokio::test]
async fn unnamed_statement_mode_works_without_session_state() {
    let (_db, queue) = setup(QueueConfig {
        statement_mode: StatementMode::Unnamed,
        ..QueueConfig::default()
    })
    .await;
    queue
        .enqueue_many(&[job(1), job(2)])
        .await
        .expect("enqueue");
    let claimed = queue.claim(KIND, 5, "w", TTL).await.expect("claim");
    assert_eq!(claimed.len(), 2);
    let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
    assert!(queue
        .complete_many(&leases)
        .await
        .expect("complete")
        .is_empty());
    let mut waker = Waker::poll_only();
    assert_eq!(waker.wait(Duration::from_millis(50)).await, Wake::Timeout);
}

#[tokio::test]
async fn stats_count_states_and_oldest_age() {
    let (_db, queue) = setup_default().await;
    queue
        .enqueue_many(&(0..5).map(job).collect::<Vec<_>>())
        .await
        .expect("enqueue");
    queue
        .enqueue(job(9).delay(Duration::from_secs(600)))
        .await
        .expect("enqueue");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let claimed = queue.claim(KIND, 2, "w", TTL).await.expect("claim");
    queue.complete(claimed[0].lease).await.expect("complete");
    let stats = queue.stats().await.expect("stats");
    assert_eq!(
        (stats.ready, stats.scheduled, stats.running, stats.succeeded),
        (3, 1, 1, 1)
    );
    assert!(
        stats.oldest_ready_age_s >= 0.2,
        "{}",
        stats.oldest_ready_age_s
    );
    assert_eq!(
        queue.lease_owners().await.expect("owners").get("w"),
        Some(&1)
    );
}

#[tokio::test]
async fn transactional_enqueue_and_complete_follow_the_callers_transaction() {
    use sqlx::Connection;
    let (db, queue) = setup_default().await;
    let mut conn = sqlx::PgConnection::connect(db.url())
        .await
        .expect("connect");

    let mut rolled_back = conn.begin().await.expect("begin");
    tx::enqueue_many_in(&mut rolled_back, &[job(1)])
        .await
        .expect("enqueue");
    rolled_back.rollback().await.expect("rollback");
    assert_eq!(queue.stats().await.expect("stats").ready, 0);

    let mut committed = conn.begin().await.expect("begin");
    let ids = tx::enqueue_many_in(
        &mut committed,
        &[job(2).dedup_key("k"), job(3).dedup_key("k")],
    )
    .await
    .expect("enqueue");
    assert_eq!(ids[0].id, ids[1].id);
    committed.commit().await.expect("commit");
    let claimed = queue
        .claim(KIND, 1, "w", TTL)
        .await
        .expect("claim")
        .remove(0);

    let mut undone = conn.begin().await.expect("begin");
    tx::complete_in(&mut undone, claimed.lease)
        .await
        .expect("complete");
    undone.rollback().await.expect("rollback");
    assert_eq!(queue.stats().await.expect("stats").running, 1);

    let mut done = conn.begin().await.expect("begin");
    tx::complete_in(&mut done, claimed.lease)
        .await
        .expect("complete");
    done.commit().await.expect("commit");
    let stale = tx::complete_in(&mut conn, claimed.lease).await;
    assert!(matches!(stale, Err(Error::LeaseLost { .. })));
    assert_eq!(queue.stats().await.expect("stats").succeeded, 1);
}
