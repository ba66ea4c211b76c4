//! End-to-end worker throughput: images per minute from submit to stored result, with 1 and 2 real
//! `fathom worker` processes, on a built image set whose images share base layers; cold cache (fresh
//! database) and warm cache (the same layers already analyzed, new manifests on top).
//!
//! Prints exactly one line per case on stdout:
//! `worker case=NAME workers=W images=N images_per_min=X cache_hit_ratio=R`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use fathom_testkit::image::layer_tar;
use fathom_testkit::samples::{sample_images, SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, BuiltLayer, Compress};
use support::{Db, WorkerProc, WorkerSpec};

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

fn main() {
    // `cargo bench` passes `--bench`; anything else (e.g. `cargo test --benches`) only checks it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for workers in [1, 2] {
            let db = support::test_db().await;
            run_case(db.url(), "cold", workers, &format!("c{workers}")).await;
            run_case(db.url(), "warm", workers, &format!("w{workers}")).await;
        }
    });
}
