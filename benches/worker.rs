//! End-to-end worker throughput: images per minute from submit to stored result, with 1 and 2 real
//! `fathom worker` processes, on a built image set whose images share base layers; cold cache (fresh
//! database) and warm cache (the same layers already analyzed, new manifests on top).
//!
//! Prints exactly one line per case on stdout:
//! `worker case=NAME workers=W images=N images_per_min=X cache_hit_ratio=R`, and for the outage case
//! (the registry answers 503 for `outage_s` seconds right after submission, longer than the old
//! five-attempt budget; R is from the registry's return to the last image analyzed):
//! `worker case=outage images=N outage_s=S analyzed=A dead=D recovery_s=R`.
//! `cargo bench --bench worker -- outage` runs only the cases whose name contains `outage`.

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
        if wanted("outage") {
            let db = support::test_db().await;
            outage_case(db.url()).await;
        }
    });
}
