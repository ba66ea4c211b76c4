//! Herds against a real PostgreSQL: many idle workers listening at once (each with its own listening
//! connection and the worker's claim loop), counting every claim statement they make.

use std::time::{Duration, Instant};

use fathom_queue::{NewJob, Queue, QueueConfig, POLL_GAP};
use fathom_testkit::herd::{Herd, HerdConfig};
use fathom_testkit::pg::TestDb;
use serde_json::json;

const KIND: &str = "analyze";
/// As many listening workers as the test cluster comfortably takes next to the other tests.
const MEMBERS: usize = 60;
const POLL: Duration = Duration::from_secs(5);

fn job(n: usize) -> NewJob {
    NewJob::new(
        KIND,
        json!({ "reference": format!("registry.local/img:{n}") }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_fleet_claims_about_once_per_job_and_polls_once_per_gap() {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let queue = Queue::connect(db.url(), QueueConfig::default()).expect("queue");
    let herd = Herd::start(
        db.url(),
        HerdConfig {
            members: MEMBERS,
            slots: 2,
            poll_interval: POLL,
            kind: KIND.into(),
            member_pool: None,
        },
    )
    .await
    .expect("herd");

    // A burst of single-job enqueues, one statement (and one notification) each.
    let jobs = 40;
    let before = herd.counts();
    let started = Instant::now();
    for n in 0..jobs {
        queue.enqueue(job(n)).await.expect("enqueue");
    }
    herd.wait_for_jobs(jobs as u64, Duration::from_secs(60))
        .await
        .expect("every job claimed");
    herd.settle().await;
    let burst = herd.counts().since(before);
    let window = started.elapsed().as_secs_f64();
    let per_job = burst.claims() as f64 / jobs as f64;
    let mut waits = herd.queue_waits();
    waits.sort();
    let p50 = waits[waits.len() / 2];
    eprintln!(
        "burst: {jobs} jobs, {} claims ({} empty) in {window:.1} s = {per_job:.2} claims/job, p50 wait {p50:?}",
        burst.claims(),
        burst.empty
    );
    assert_eq!(burst.jobs, jobs as u64);
    // The old draw made ~57 claims per job with 60 listeners (every loser claimed after a delay).
    assert!(
        per_job <= 3.0,
        "{per_job:.2} claims per job with {MEMBERS} idle workers: {burst:?}"
    );

    // An idle minute: the fleet as a whole polls about once per POLL_GAP (it was 12 claims/s).
    let before = herd.counts();
    let idle = Duration::from_secs(60);
    tokio::time::sleep(idle).await;
    let polled = herd.counts().since(before);
    let per_s = polled.claims() as f64 / idle.as_secs_f64();
    eprintln!(
        "idle: {} claims in {idle:?} = {per_s:.2}/s",
        polled.claims()
    );
    let bound = 2.0 / POLL_GAP.as_secs_f64();
    assert!(
        per_s <= bound,
        "{per_s:.2} idle claims/s with {MEMBERS} workers (bound {bound})"
    );
    assert_eq!(polled.with_jobs, 0, "no work, yet claims returned jobs");

    // A job that becomes ready without a notification (scheduled) is found by the fleet's polling
    // within one member's period at the latest (max(POLL, members × gap) = 60 s), about a gap usually.
    let before = herd.counts();
    queue
        .enqueue(job(1000).delay(Duration::from_secs(1)))
        .await
        .expect("enqueue scheduled");
    let bound = POLL.max(POLL_GAP * MEMBERS as u32) + Duration::from_secs(5);
    herd.wait_for_jobs(jobs as u64 + 1, bound)
        .await
        .expect("the silent job is found by polling");
    assert_eq!(herd.counts().since(before).jobs, 1);
    herd.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_wakes_enough_workers_and_a_full_batch_chains_to_the_rest() {
    let db = TestDb::create(&[&fathom_queue::migrator()])
        .await
        .expect("test database");
    let queue = Queue::connect(db.url(), QueueConfig::default()).expect("queue");
    let herd = Herd::start(
        db.url(),
        HerdConfig {
            members: 20,
            slots: 1,
            poll_interval: POLL,
            kind: KIND.into(),
            member_pool: None,
        },
    )
    .await
    .expect("herd");
    // One statement for 15 jobs wakes 15 of the 20 members; each takes one.
    let before = herd.counts();
    let batch: Vec<NewJob> = (0..15).map(job).collect();
    queue.enqueue_many(&batch).await.expect("enqueue");
    herd.wait_for_jobs(15, Duration::from_secs(30))
        .await
        .expect("every job claimed");
    herd.settle().await;
    let woke = herd.counts().since(before);
    assert!(woke.claims() <= 30, "{woke:?}");

    // More jobs than one notification announces (rows inserted with their notification lost): the
    // first poll that fills its batch starts a chain that hands the rest on, one worker per job.
    let before = herd.counts();
    let client = queue_admin(db.url()).await;
    client
        .batch_execute(
            "ALTER TABLE fathom_jobs DISABLE TRIGGER fathom_jobs_notify_insert; \
             INSERT INTO fathom_jobs (kind, payload) \
                 SELECT 'analyze', jsonb_build_object('n', g) FROM generate_series(1, 10) g; \
             ALTER TABLE fathom_jobs ENABLE TRIGGER fathom_jobs_notify_insert;",
        )
        .await
        .expect("silent insert");
    herd.wait_for_jobs(25, Duration::from_secs(60))
        .await
        .expect("the chain claims every silent job");
    herd.settle().await;
    let chained = herd.counts().since(before);
    assert_eq!(chained.jobs, 10);
    // One claim per job plus the chain's last hop and the polls meanwhile: nothing like a herd.
    assert!(chained.claims() <= 30, "{chained:?}");
    herd.stop().await;
}

async fn queue_admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}
