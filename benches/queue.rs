//! `cargo bench --bench queue`: claim+complete throughput through the library against the same statements
//! run bare (one tokio-postgres connection per worker, no pool, no library), and enqueue→claim latency of
//! an idle worker woken by NOTIFY. Prints the contract lines:
//! `queue batch=B workers=W jobs_per_s=X ceiling_jobs_per_s=Y ratio=R`
//! `queue latency p50_ms=A p99_ms=B`
//! `queue herd workers=W jobs=J claims_per_job=X idle_claims_per_s=Y p50_ms=Z connections=C` (W idle workers
//! listening, each with its own queue pool as a worker process has, J single-job enqueues: claim
//! statements per job, fleet-wide idle claims per second, enqueue→claim p50, and the connections the
//! fleet holds after idling past the pools' idle timeout)
//! Uses `DATABASE_URL` when set, else a throwaway cluster (the test harness).

use std::time::{Duration, Instant};

use fathom_queue::{NewJob, Queue, QueueConfig, Wake, Waker};
use fathom_testkit::herd::{Herd, HerdConfig};
use fathom_testkit::pg::TestDb;
use serde_json::json;
use tokio_postgres::NoTls;

const KIND: &str = "bench";
const TTL: Duration = Duration::from_secs(60);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

/// Whether the section `name` runs: every section without arguments, else those named
/// (`cargo bench --bench queue -- herd`).
fn selected(name: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    named.is_empty() || named.iter().any(|n| n == name)
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let db = TestDb::create(&[&fathom_queue::migrator()]).await?;
    if selected("throughput") {
        throughput(db.url()).await?;
    }
    if selected("latency") {
        let (p50, p99) = latency(db.url(), 300).await?;
        println!("queue latency p50_ms={p50:.2} p99_ms={p99:.2}");
    }
    if selected("herd") {
        for workers in [60usize, 100] {
            herd(db.url(), workers, 100, Duration::from_secs(20)).await?;
        }
    }
    Ok(())
}

/// `queue batch=…` lines: the library against the bare statements.
async fn throughput(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    for batch in [1usize, 10, 100] {
        for workers in [1usize, 4, 16] {
            let jobs = match batch {
                1 => 3_000,
                10 => 15_000,
                _ => 60_000,
            };
            let library = library_throughput(url, batch, workers, jobs).await?;
            let ceiling = bare_throughput(url, batch, workers, jobs).await?;
            println!(
                "queue batch={batch} workers={workers} jobs_per_s={library:.0} \
                 ceiling_jobs_per_s={ceiling:.0} ratio={:.2}",
                library / ceiling
            );
        }
    }
    Ok(())
}

/// `workers` idle workers (each its own listening connection and the worker's claim loop); `jobs`
/// single-job enqueues a few milliseconds apart, then `idle` without work.
async fn herd(
    url: &str,
    workers: usize,
    jobs: usize,
    idle: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let queue = Queue::connect(url, QueueConfig::default())?;
    queue_admin(&queue).await?;
    let herd = Herd::start(
        url,
        HerdConfig {
            members: workers,
            slots: 2,
            poll_interval: Duration::from_secs(5),
            kind: KIND.into(),
            // A worker's queue pool (`database.pool_size` defaults to 2).
            member_pool: Some(2),
        },
    )
    .await?;
    let before = herd.counts();
    for i in 0..jobs {
        queue
            .enqueue(NewJob::new(KIND, json!({ "herd": i })))
            .await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    herd.wait_for_jobs(jobs as u64, Duration::from_secs(120))
        .await?;
    herd.settle().await;
    let burst = herd.counts().since(before);
    let mut waits = herd.queue_waits();
    waits.sort();
    let p50 = waits[waits.len() / 2].as_secs_f64() * 1000.0;
    let before = herd.counts();
    let idle_started = Instant::now();
    tokio::time::sleep(idle).await;
    let polled = herd.counts().since(before);
    // Idle pools close within twice their timeout.
    let closed_by = 2 * fathom_queue::IDLE_TIMEOUT + Duration::from_secs(5);
    tokio::time::sleep(closed_by.saturating_sub(idle_started.elapsed())).await;
    let connections = fleet_connections(url).await?;
    herd.stop().await;
    println!(
        "queue herd workers={workers} jobs={jobs} claims_per_job={:.2} idle_claims_per_s={:.2} p50_ms={p50:.2} connections={connections}",
        burst.claims() as f64 / jobs as f64,
        polled.claims() as f64 / idle.as_secs_f64(),
    );
    Ok(())
}

/// Connections to the bench database but the asking one (the bench's own enqueueing pool has idled
/// past its timeout too).
async fn fleet_connections(url: &str) -> Result<i64, Box<dyn std::error::Error>> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    let task = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    drop(client);
    let _ = task.await;
    Ok(row.get(0))
}

async fn fill(queue: &Queue, jobs: usize) -> Result<(), fathom_queue::Error> {
    queue_admin(queue).await?;
    let all: Vec<NewJob> = (0..jobs)
        .map(|i| {
            NewJob::new(
                KIND,
                json!({ "reference": format!("registry.local/bench:{i}") }),
            )
        })
        .collect();
    for chunk in all.chunks(10_000) {
        queue.enqueue_many(chunk).await?;
    }
    Ok(())
}

/// Keeps finished rows from one configuration out of the next one's way, like a pruned production table.
async fn queue_admin(queue: &Queue) -> Result<(), fathom_queue::Error> {
    queue.prune(Duration::ZERO).await.map(|_| ())
}

async fn library_throughput(
    url: &str,
    batch: usize,
    workers: usize,
    jobs: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let queue = Queue::connect(
        url,
        QueueConfig {
            pool_size: workers,
            ..QueueConfig::default()
        },
    )?;
    fill(&queue, jobs).await?;
    let start = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let worker = format!("bench-{w}");
                let mut done = 0usize;
                loop {
                    let claimed = queue.claim(KIND, batch, &worker, TTL).await?;
                    if claimed.is_empty() {
                        return Ok::<usize, fathom_queue::Error>(done);
                    }
                    let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
                    queue.complete_many(&leases).await?;
                    done += leases.len();
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(total, jobs, "library run completed every job");
    Ok(total as f64 / elapsed)
}

async fn bare_throughput(
    url: &str,
    batch: usize,
    workers: usize,
    jobs: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let queue = Queue::connect(url, QueueConfig::default())?;
    fill(&queue, jobs).await?;
    let mut clients = Vec::new();
    for _ in 0..workers {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        clients.push(client);
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(w, client)| {
            tokio::spawn(async move {
                let claim = client.prepare(fathom_queue::sql::CLAIM).await?;
                let complete = client.prepare(fathom_queue::sql::COMPLETE).await?;
                let worker = format!("bare-{w}");
                let limit = batch as i64;
                let ttl = TTL.as_secs_f64();
                let mut done = 0usize;
                loop {
                    let rows = client
                        .query(&claim, &[&KIND, &limit, &worker, &ttl])
                        .await?;
                    if rows.is_empty() {
                        return Ok::<usize, tokio_postgres::Error>(done);
                    }
                    let ids: Vec<i64> = rows.iter().map(|r| r.get("id")).collect();
                    let tokens: Vec<i64> = rows.iter().map(|r| r.get("lease_token")).collect();
                    client.query(&complete, &[&ids, &tokens]).await?;
                    done += ids.len();
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(total, jobs, "bare run completed every job");
    Ok(total as f64 / elapsed)
}

/// One idle worker waits on NOTIFY; each sample enqueues one job and measures until the worker holds it.
async fn latency(url: &str, samples: usize) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let queue = Queue::connect(url, QueueConfig::default())?;
    queue_admin(&queue).await?;
    let mut waker = Waker::listen(url)?;
    // Drain the catch-up wake-up a fresh listener sends.
    waker.wait(Duration::from_secs(5)).await;
    let (claimed_tx, mut claimed_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let worker_queue = queue.clone();
    let worker = tokio::spawn(async move {
        loop {
            let claimed = worker_queue.claim(KIND, 1, "idle-worker", TTL).await?;
            if claimed.is_empty() {
                if waker.wait(Duration::from_secs(1)).await == Wake::Timeout {
                    continue;
                }
                continue;
            }
            let at = Instant::now();
            let leases: Vec<_> = claimed.iter().map(|j| j.lease).collect();
            worker_queue.complete_many(&leases).await?;
            if claimed_tx.send(at).is_err() {
                return Ok::<(), fathom_queue::Error>(());
            }
        }
    });
    let mut millis = Vec::with_capacity(samples);
    for i in 0..samples {
        // Let the worker go idle (blocked on the waker) before each sample.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let start = Instant::now();
        queue
            .enqueue(NewJob::new(KIND, json!({ "sample": i })))
            .await?;
        let claimed_at = claimed_rx.recv().await.ok_or("latency worker stopped")?;
        millis.push(claimed_at.duration_since(start).as_secs_f64() * 1000.0);
    }
    worker.abort();
    millis.sort_by(f64::total_cmp);
    let pct = |p: f64| millis[((millis.len() as f64 * p) as usize).min(millis.len() - 1)];
    Ok((pct(0.50), pct(0.99)))
}
