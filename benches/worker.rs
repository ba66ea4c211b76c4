//! End-to-end worker throughput: images per minute from submit to stored result, with 1 and 2 real
//! `fathom worker` processes, on a built image set whose images share base layers; cold cache (fresh
//! database) and warm cache (the same layers already analyzed, new manifests on top).
//!
//! Prints exactly one line per case on stdout:
//! `worker case=NAME workers=W images=N images_per_min=X cache_hit_ratio=R`, and for the outage case
//! (the registry answers 503 for `outage_s` seconds right after submission, longer than the old
//! five-attempt budget; R is from the registry's return to the last image analyzed):
//! `worker case=outage images=N outage_s=S analyzed=A dead=D recovery_s=R`.
//! `cargo bench --bench worker -- outage` runs only the cases whose name contains `outage`. The rescan
//! case (a fully cached re-analysis, each job's time as the queue records it) prints
//! `worker case=rescan workers=1 slots=4 images=N cached_job_ms_p50=… cached_job_ms_mean=… cached_job_ms_p90=… fetched_bytes=0`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use fathom_testkit::image::layer_tar;
use fathom_testkit::samples::{sample_images, SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, BuiltLayer, Compress};
use support::{Db, Proxy, WorkerProc, WorkerSpec};

/// Variants per sample image and case: 4 samples × 6 = 24 images per case.
const VARIANTS: usize = 6;

/// Every sample image with one extra top layer unique to (`set`, variant): the sample layers are
/// shared by all variants, as a base image is shared by the apps built on it.
fn image_set(set: &str) -> Vec<BuiltImage> {
    let mut out = Vec::new();
    for sample in sample_images() {
        let base = BuiltImage::from_sample(&sample, Compress::Gzip).expect("build sample");
        for v in 0..VARIANTS {
            let app = vec![SampleEntry {
                path: format!("/srv/app-{set}-{v}/main.txt"),
                mode: 0o644,
                kind: SampleKind::File(
                    format!("{set} {v} {}\n", sample.name)
                        .repeat(64)
                        .into_bytes(),
                ),
            }];
            let tar = layer_tar(&app).expect("app layer");
            let mut layers = base.layers.clone();
            layers.push(BuiltLayer::from_tar(&tar, Compress::Gzip).expect("compress"));
            out.push(BuiltImage::from_layers(
                &sample.name,
                base.platform.clone(),
                layers,
            ));
        }
    }
    out
}

async fn run_case(url: &str, case: &str, workers: usize, set: &str) {
    let images = image_set(set);
    let registry = support::registry();
    let mut refs = Vec::new();
    for image in &images {
        let repo = support::push_image(&format!("bench-{}", image.name), image).await;
        refs.push(format!("{registry}/{repo}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = WorkerSpec {
        concurrency: 2,
        ..Default::default()
    };
    let procs: Vec<WorkerProc> = (0..workers)
        .map(|i| {
            WorkerProc::start(
                dir.path(),
                &format!("bench-{case}-{workers}-{i}"),
                url,
                &spec,
            )
        })
        .collect();
    let db = Db::new(url);
    let before = db.queue.stats().await.expect("stats").succeeded;
    let started = Instant::now();
    db.store.submit(&refs, 3).await.expect("submit");
    let deadline = started + Duration::from_secs(600);
    loop {
        let stats = db.queue.stats().await.expect("stats");
        if stats.succeeded - before >= refs.len() as i64 {
            break;
        }
        if stats.failed + stats.dead > 0 || Instant::now() > deadline {
            panic!("bench case {case} did not finish cleanly: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (mut hits, mut misses) = (0usize, 0usize);
    for image in &images {
        let doc = db
            .store
            .document(&image.manifest_digest())
            .await
            .expect("document")
            .expect("stored");
        hits += doc.stats.cache_hits;
        misses += doc.stats.cache_misses;
    }
    drop(procs);
    let ratio = hits as f64 / (hits + misses).max(1) as f64;
    println!(
        "worker case={case} workers={workers} images={} images_per_min={:.1} cache_hit_ratio={ratio:.3}",
        refs.len(),
        refs.len() as f64 / elapsed * 60.0
    );
}

/// Rounds of the rescan case: each re-analyzes every image of the set under a new digest.
const RESCAN_ROUNDS: usize = 3;

/// What a fully cached re-analysis costs a real worker (the figure `scale_on: work` learns as its
/// per-job time, and the autoscale bench's traces are calibrated from): the image set is analyzed once,
/// then pushed again with a new manifest annotation each round (a new digest over the same layers, as a
/// rebuild that changed nothing below its top layer would be if the top layer were cached too) and
/// submitted at once to one worker of four slots. Each job's time is what the queue records and the
/// autoscaler learns from: `finished_at - claimed_at`.
async fn rescan_case(url: &str) {
    let images = image_set("r");
    let registry = support::registry();
    let mut refs = Vec::new();
    for image in &images {
        let repo = support::push_image(&format!("bench-{}", image.name), image).await;
        refs.push(format!("{registry}/{repo}"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = WorkerSpec {
        concurrency: 4,
        ..Default::default()
    };
    let _worker = WorkerProc::start(dir.path(), "bench-rescan", url, &spec);
    let db = Db::new(url);
    let wait_all = |n: i64, before: i64| {
        let queue = db.queue.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(600);
            loop {
                let stats = queue.stats().await.expect("stats");
                if stats.succeeded - before >= n {
                    return;
                }
                if stats.failed + stats.dead > 0 || Instant::now() > deadline {
                    panic!("bench case rescan did not finish cleanly: {stats:?}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let before = db.queue.stats().await.expect("stats").succeeded;
    db.store.submit(&refs, 3).await.expect("submit");
    wait_all(refs.len() as i64, before).await;
    let mut rescans = Vec::new();
    for round in 0..RESCAN_ROUNDS {
        let mut batch = Vec::new();
        for image in &images {
            let mut again = image.clone();
            again.set_manifest(|m| {
                m["annotations"] = serde_json::json!({"rescan": round.to_string()})
            });
            let repo = support::push_image(&format!("bench-re-{}", image.name), &again).await;
            batch.push(format!("{registry}/{repo}"));
        }
        let before = db.queue.stats().await.expect("stats").succeeded;
        db.store.submit(&batch, 3).await.expect("submit");
        wait_all(batch.len() as i64, before).await;
        rescans.extend(batch);
    }
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let rows: Vec<(Option<i64>, f64)> = sqlx::query_as(
        "SELECT fetched_bytes, extract(epoch FROM finished_at - claimed_at)::float8 * 1000 \
         FROM fathom_jobs WHERE payload->>'reference' = ANY($1) AND state = 'succeeded'",
    )
    .bind(&rescans)
    .fetch_all(&pool)
    .await
    .expect("job times");
    assert_eq!(rows.len(), rescans.len(), "every rescan has its job");
    let fetched: i64 = rows.iter().map(|r| r.0.unwrap_or(0)).sum();
    let mut ms: Vec<f64> = rows.iter().map(|r| r.1).collect();
    ms.sort_by(f64::total_cmp);
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "worker case=rescan workers=1 slots=4 images={} cached_job_ms_p50={:.0} cached_job_ms_mean={mean:.0} \
         cached_job_ms_p90={:.0} fetched_bytes={fetched}",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() * 9 / 10],
    );
}

/// Seconds the registry stays down in the outage case: twice the old budget (5 attempts, 2 s doubling,
/// dead after ~30 s).
const OUTAGE_S: u64 = 60;

async fn outage_case(url: &str) {
    let images: Vec<BuiltImage> = image_set("o").into_iter().step_by(3).collect();
    let proxy = Proxy::start(&support::registry()).await;
    let mut refs = Vec::new();
    for image in &images {
        let repo = support::push_image(&format!("bench-out-{}", image.name), image).await;
        refs.push(format!("{}/{repo}", proxy.addr));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Production defaults for backoff and breaker; two workers of two slots.
    let spec = WorkerSpec {
        concurrency: 2,
        retry_backoff_base: "2s",
        insecure: vec![proxy.addr.clone()],
        ..Default::default()
    };
    proxy
        .rules
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let procs: Vec<WorkerProc> = (0..2)
        .map(|i| WorkerProc::start(dir.path(), &format!("bench-outage-{i}"), url, &spec))
        .collect();
    let db = Db::new(url);
    db.store.submit(&refs, 5).await.expect("submit");
    tokio::time::sleep(Duration::from_secs(OUTAGE_S)).await;
    proxy
        .rules
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(600);
    let stats = loop {
        let stats = db.queue.stats().await.expect("stats");
        if stats.succeeded + stats.failed + stats.dead >= refs.len() as i64
            || Instant::now() > deadline
        {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let recovery = back.elapsed().as_secs_f64();
    drop(procs);
    println!(
        "worker case=outage images={} outage_s={OUTAGE_S} analyzed={} dead={} recovery_s={recovery:.1}",
        refs.len(),
        stats.succeeded,
        stats.dead
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Names after `--` (not flags) pick the cases to run.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted =
        |case: &str| filters.is_empty() || filters.iter().any(|f| case.contains(f.as_str()));
    runtime.block_on(async {
        if wanted("cold") || wanted("warm") {
            for workers in [1, 2] {
                let db = support::test_db().await;
                run_case(db.url(), "cold", workers, &format!("c{workers}")).await;
                run_case(db.url(), "warm", workers, &format!("w{workers}")).await;
            }
        }
        if wanted("rescan") {
            let db = support::test_db().await;
            rescan_case(db.url()).await;
        }
        if wanted("outage") {
            let db = support::test_db().await;
            outage_case(db.url()).await;
        }
    });
}
