//! Outage handling against a real PostgreSQL: time budgets, deferral without charge, resume, requeue.

use std::time::Duration;

use fathom_queue::{Failure, JobState, NewJob, Queue, QueueConfig, Requeue};
use fathom_testkit::pg::TestDb;
use serde_json::json;

const KIND: &str = "analyze";
const TTL: Duration = Duration::from_secs(30);

async fn setup(config: QueueConfig) -> (TestDb, Queue) {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let queue = Queue::connect(db.url(), config).expect("queue");
    (db, queue)
}

fn job(n: usize) -> NewJob {
    NewJob::new(
        KIND,
        json!({ "reference": format!("registry.local/img:{n}") }),
    )
    .dedup_key(format!("img:{n}"))
}

#[tokio::test]
async fn a_spent_time_budget_kills_a_retryable_job_with_attempts_left() {
    // A zero budget: the first retryable failure is already past it.
    let (_db, queue) = setup(QueueConfig {
        deadline: Duration::ZERO,
        ..Default::default()
    })
    .await;
    queue
        .enqueue_many(&[job(0).max_attempts(25)])
        .await
        .unwrap();
    let claimed = queue.claim(KIND, 1, "w", TTL).await.unwrap();
    let retryable = Failure::Retryable { retry_after: None };
    let out = queue
        .fail_as(claimed[0].lease, retryable, Some("connect"), "refused")
        .await
        .unwrap();
    assert_eq!(out.state, JobState::Dead);
    let by_kind = queue.dead_by_kind().await.unwrap();
    assert_eq!(by_kind.get("connect"), Some(&1), "{by_kind:?}");
}

#[tokio::test]
async fn within_the_budget_retryable_failures_requeue_and_permanent_ones_fail_at_once() {
    let (_db, queue) = setup(QueueConfig {
        backoff_base: Duration::from_millis(1),
        backoff_cap: Duration::from_millis(1),
        ..Default::default()
    })
    .await;
    queue.enqueue_many(&[job(0), job(1)]).await.unwrap();
    let claimed = queue.claim(KIND, 2, "w", TTL).await.unwrap();
    let retryable = Failure::Retryable { retry_after: None };
    let out = queue
        .fail_as(claimed[0].lease, retryable, Some("connect"), "refused")
        .await
        .unwrap();
    assert_eq!(out.state, JobState::Queued);
    let out = queue
        .fail_as(
            claimed[1].lease,
            Failure::Permanent,
            Some("manifest_unknown"),
            "404",
        )
        .await
        .unwrap();
    assert_eq!(out.state, JobState::Failed);
    let record = queue.job(claimed[1].id()).await.unwrap().unwrap();
    assert_eq!(record.attempt, 1);
}

#[tokio::test]
async fn deferred_jobs_keep_their_attempts_and_resume_together() {
    let (_db, queue) = setup(QueueConfig::default()).await;
    queue
        .enqueue_many(&[job(0).max_attempts(1), job(1).max_attempts(1), job(2)])
        .await
        .unwrap();
    let claimed = queue.claim(KIND, 3, "w", TTL).await.unwrap();
    let hour = Duration::from_secs(3600);
    for c in &claimed[..2] {
        let out = queue
            .defer(
                c.lease,
                hour,
                "reg.a",
                "breaker_open",
                "registry reg.a is down",
            )
            .await
            .unwrap();
        assert_eq!(out.state, JobState::Queued);
    }
    queue
        .defer(
            claimed[2].lease,
            hour,
            "reg.b",
            "breaker_open",
            "reg.b down",
        )
        .await
        .unwrap();
    // Deferred a second time: a single attempt allowed, yet never charged, so never dead.
    assert_eq!(queue.stats().await.unwrap().scheduled, 3);
    assert_eq!(queue.resume("reg.a").await.unwrap(), 2);
    let again = queue.claim(KIND, 3, "w", TTL).await.unwrap();
    assert_eq!(again.len(), 2, "only reg.a's jobs are back");
    assert!(again.iter().all(|c| c.attempt == 1), "{again:?}");
    assert_eq!(queue.resume("reg.a").await.unwrap(), 0);
    // A lease no longer ours cannot defer.
    assert!(queue
        .defer(claimed[0].lease, hour, "reg.a", "breaker_open", "x")
        .await
        .is_err());
}

#[tokio::test]
async fn deferral_past_the_budget_is_dead() {
    let (_db, queue) = setup(QueueConfig {
        deadline: Duration::ZERO,
        ..Default::default()
    })
    .await;
    queue.enqueue_many(&[job(0)]).await.unwrap();
    let claimed = queue.claim(KIND, 1, "w", TTL).await.unwrap();
    let out = queue
        .defer(
            claimed[0].lease,
            Duration::from_secs(1),
            "reg.a",
            "breaker_open",
            "down",
        )
        .await
        .unwrap();
    assert_eq!(out.state, JobState::Dead);
}

#[tokio::test]
async fn requeue_brings_back_dead_and_failed_jobs_with_their_history() {
    let (_db, queue) = setup(QueueConfig::default()).await;
    queue
        .enqueue_many(&[job(0).max_attempts(1), job(1), job(2)])
        .await
        .unwrap();
    let claimed = queue.claim(KIND, 3, "w", TTL).await.unwrap();
    let retryable = Failure::Retryable { retry_after: None };
    let dead = queue
        .fail_as(claimed[0].lease, retryable, Some("connect"), "refused")
        .await
        .unwrap();
    assert_eq!(dead.state, JobState::Dead);
    queue
        .fail_as(
            claimed[1].lease,
            Failure::Permanent,
            Some("manifest_unknown"),
            "404",
        )
        .await
        .unwrap();
    queue.complete(claimed[2].lease).await.unwrap();

    // Filters: by reference, then by state.
    let none = queue
        .requeue(&Requeue {
            reference: Some("registry.local/img:9".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
    let ids = queue
        .requeue(&Requeue {
            states: vec![JobState::Dead],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids, vec![claimed[0].id()]);
    let record = queue.job(ids[0]).await.unwrap().unwrap();
    assert_eq!(record.state, JobState::Queued);
    assert_eq!(record.attempt, 1, "attempts made are kept");
    assert_eq!(record.max_attempts, 2, "with a fresh budget on top");
    assert_eq!(record.last_error.as_deref(), Some("refused"));
    assert!(queue.dead_by_kind().await.unwrap().is_empty());
    // Succeeded jobs are not requeued; other states are refused.
    assert!(queue
        .requeue(&Requeue {
            states: vec![JobState::Succeeded],
            ..Default::default()
        })
        .await
        .is_err());
    let failed = queue.requeue(&Requeue::default()).await.unwrap();
    assert_eq!(failed, vec![claimed[1].id()]);
    // The requeued job runs again and can complete.
    let again = queue.claim(KIND, 3, "w", TTL).await.unwrap();
    assert_eq!(again.len(), 2);
    // A live sibling with the same dedup key blocks a requeue.
    queue.complete(again[0].lease).await.unwrap();
    queue.enqueue_many(&[job(0)]).await.unwrap();
    let blocked = queue
        .requeue(&Requeue {
            id: Some(claimed[0].id()),
            states: vec![JobState::Dead, JobState::Failed],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(blocked.is_empty());
}
