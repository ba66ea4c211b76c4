//! `cargo bench --bench notify`: a feed change touching 10 % of 10,000 stored images, delivered to a
//! local receiver by the dispatcher the core runs (in process, default `services.notifications`
//! settings), without and then with a receiver outage. Prints
//! `notify images=N changed=C events=E deliver_p99_s=X outage_s=S lost=L` per run: C images whose
//! vulnerabilities changed, E events the change wrote (one `image.vulnerabilities.changed` per changed
//! image and the aggregated `vulnerability.new`), X the p99 of event arrival — after the re-match's
//! commit without an outage, after the receiver's return with one — and L events never received.
//! Sizes: NOTIFY_IMAGES (10000), NOTIFY_OUTAGE_S (20).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use fathom_notify::config::{EndpointConfig, NotificationsConfig};
use fathom_notify::dispatch::Dispatcher;
use fathom_notify::metrics::NotifyMetrics;
use fathom_notify::send::Target;
use fathom_testkit::pg::TestDb;
use fathom_vulns::{Feeds, Matcher, VulnsConfig};
use serde_json::json;
use sqlx::PgPool;

/// Common packages every image draws from; each image carries 10 of them.
const COMMON: usize = 200;
/// The package only every 10th image carries: the feed change names it.
const HOT: &str = "hotpkg";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The Debian feed of `generation`: a record per common package; from generation 1 one record for
/// [`HOT`] more per generation (each newly matches every 10th image).
fn feed(dir: &std::path::Path, generation: usize) {
    let path = dir.join("Debian").join("all.zip");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(
        std::fs::File::create(&path).unwrap(),
    ));
    let opts = zip::write::SimpleFileOptions::default();
    let mut records = Vec::new();
    for k in 0..COMMON {
        records.push((
            format!("NOTIFY-BASE-{k}"),
            format!("src{k}"),
            format!("1.{}-1", 1 + k % 3),
        ));
    }
    for g in 1..=generation {
        records.push((
            format!("NOTIFY-HOT-{g}"),
            HOT.to_string(),
            format!("{}.0-1", g + 1),
        ));
    }
    for (id, name, fixed) in records {
        let r = json!({"id": id, "modified": "2026-01-01T00:00:00Z", "aliases": [format!("CVE-{id}")],
            "affected": [{"package": {"ecosystem": "Debian:12", "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]});
        zip.start_file(format!("{id}.json"), opts).unwrap();
        zip.write_all(r.to_string().as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

fn image_doc(i: usize) -> Vec<u8> {
    let mut names: Vec<String> = (0..10)
        .map(|k| format!("src{}", (i * 7 + k * 13) % COMMON))
        .collect();
    if i.is_multiple_of(10) {
        names.push(HOT.to_string());
    }
    let packages: Vec<_> = names
        .iter()
        .map(|name| {
            json!({"name": name, "version": "1.0-1", "package_type": "deb", "purl": "",
                   "metadata": {"source": name}, "introduced_in": {"index": 0, "digest": "sha256:l"}})
        })
        .collect();
    let doc = json!({"distro": {"id": "debian", "version_id": "12"}, "packages": packages});
    zstd::bulk::compress(&serde_json::to_vec(&doc).unwrap(), 3).unwrap()
}

async fn store_images(pool: &PgPool, images: usize) {
    for start in (0..images).step_by(500) {
        let end = (start + 500).min(images);
        let digests: Vec<String> = (start..end).map(|i| format!("sha256:{i:064}")).collect();
        let docs: Vec<Vec<u8>> = (start..end).map(image_doc).collect();
        sqlx::query(
            "INSERT INTO fathom_images (manifest_digest, config_digest, platform, layers, status, analyzer_version, cache_key, document)
             SELECT d, 'c', 'linux/amd64', ARRAY['sha256:l'], 'analyzed', 'b', 'k', doc FROM unnest($1::text[], $2::bytea[]) AS x(d, doc)",
        )
        .bind(&digests)
        .bind(&docs)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// What the receiver saw: first arrival of each event id, and every request.
#[derive(Default)]
struct Seen {
    up: AtomicBool,
    requests: AtomicU64,
    first: Mutex<HashMap<String, Instant>>,
}

async fn take(State(seen): State<Arc<Seen>>, body: Bytes) -> StatusCode {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    if !seen.up.load(Ordering::Relaxed) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if let Some(id) = event["id"].as_str() {
        seen.first
            .lock()
            .unwrap()
            .entry(id.to_string())
            .or_insert_with(Instant::now);
    }
    StatusCode::NO_CONTENT
}

fn p99(mut secs: Vec<f64>) -> f64 {
    if secs.is_empty() {
        return f64::NAN;
    }
    secs.sort_by(|a, b| a.total_cmp(b));
    secs[((secs.len() as f64 - 1.0) * 0.99).round() as usize]
}

/// One feed change: sync generation `generation`, re-match, with the receiver down for `outage`.
async fn run(
    pool: &PgPool,
    cfg: &VulnsConfig,
    dir: &std::path::Path,
    seen: &Seen,
    images: usize,
    generation: usize,
    outage: Duration,
) {
    let before: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM notify_events")
        .fetch_one(pool)
        .await
        .unwrap();
    seen.up.store(outage.is_zero(), Ordering::Relaxed);
    feed(dir, generation);
    let started = Instant::now();
    let report = Feeds::sync(pool, cfg, &|_| {}).await.unwrap();
    assert!(!report.failed(), "{report:?}");
    Matcher::rematch(pool).await.unwrap();
    let committed = Instant::now();
    let events: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id::text, type, subject FROM notify_events WHERE seq > $1")
            .bind(before)
            .fetch_all(pool)
            .await
            .unwrap();
    let changed = events
        .iter()
        .filter(|e| e.1 == fathom_notify::types::IMAGE_VULNERABILITIES_CHANGED)
        .count();
    let mut from = committed;
    if !outage.is_zero() {
        tokio::time::sleep_until((committed + outage).into()).await;
        seen.up.store(true, Ordering::Relaxed);
        from = Instant::now();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = {
            let first = seen.first.lock().unwrap();
            events.iter().filter(|e| first.contains_key(&e.0)).count()
        };
        if got == events.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = seen.first.lock().unwrap().clone();
    let arrivals: Vec<f64> = events
        .iter()
        .filter_map(|e| first.get(&e.0))
        .map(|t| t.saturating_duration_since(from).as_secs_f64())
        .collect();
    let lost = events.len() - arrivals.len();
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *by_type.entry(e.1.as_str()).or_default() += 1;
    }
    println!(
        "notify images={images} changed={changed} events={} deliver_p99_s={:.2} outage_s={} lost={lost}",
        events.len(),
        p99(arrivals.clone()),
        outage.as_secs()
    );
    println!(
        "  (sync+rematch_s={:.2}; all delivered {:.2}s after the {}; types {by_type:?}; receiver requests so far {})",
        (committed - started).as_secs_f64(),
        arrivals.iter().cloned().fold(0.0, f64::max),
        if outage.is_zero() { "commit" } else { "receiver's return" },
        seen.requests.load(Ordering::Relaxed)
    );
}

#[tokio::main]
async fn main() {
    let images = env("NOTIFY_IMAGES", 10_000);
    let outage = Duration::from_secs(env("NOTIFY_OUTAGE_S", 20) as u64);
    let db = TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
    ])
    .await
    .unwrap();
    let pool = PgPool::connect(db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = VulnsConfig {
        base_url: dir.path().display().to_string(),
        ecosystems: vec!["Debian".into()],
        ..VulnsConfig::default()
    };
    feed(dir.path(), 0);
    Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    store_images(&pool, images).await;
    Matcher::rematch(&pool).await.unwrap();
    // The first match's events (one per image) are the fleet's past: not part of the measured change.
    sqlx::query("UPDATE notify_events SET fanned_out = true")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();

    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(take))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = EndpointConfig {
        name: "bench".into(),
        url: format!("http://{addr}/hook"),
        events: Vec::new(),
        secret_env: "BENCH_SECRET".into(),
        headers: Default::default(),
        timeout: Duration::from_secs(10),
    };
    let target = Target::new(&endpoint, "bench", |_| Some("bench-secret".into())).unwrap();
    let config = NotificationsConfig {
        endpoints: vec![endpoint],
        ..NotificationsConfig::default()
    };
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let dispatcher = Dispatcher::new(
        pool.clone(),
        config,
        vec![target],
        NotifyMetrics::unregistered().unwrap(),
    );
    tokio::spawn(dispatcher.run(db.url().to_string(), stop_rx));
    tokio::time::sleep(Duration::from_secs(2)).await;

    run(&pool, &cfg, dir.path(), &seen, images, 1, Duration::ZERO).await;
    run(&pool, &cfg, dir.path(), &seen, images, 2, outage).await;
}
