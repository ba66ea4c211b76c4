//! Catalog pass check: 10,000 watched tags on the real test registry (one image tagged 10,000 times), a
//! tag pass with nothing changed, then one after 1 % of the tags moved to another image. The pass runs
//! in this process through the catalog crate (the core runs the same code), against the shared test
//! Postgres, each host's watches spread over the interval within the per-host rate.
//!
//! Prints exactly one line per pass on stdout:
//! `catalog watches=10000 hosts=H pass_s=P requests=R heads=HD manifests=M`, and fails when a goal is
//! missed: manifest GETs only for moved tags (none: the registry sends digests), requests ≤ watches +
//! changed, every moved tag recorded, and the pass no faster than its spread nor past twice it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use fathom_analyzer::source::registry::RegistryOptions;
use fathom_analyzer::source::watch::TagWatcher;
use fathom_catalog::{Catalog, CatalogConfig, CatalogMetrics, PassKind, Submission, Watcher};
use fathom_testkit::{BuiltImage, Compress, Pusher};
use futures_util::StreamExt;

const WATCHES: usize = 10_000;
const CHANGED: usize = WATCHES / 100;
const INTERVAL: Duration = Duration::from_secs(20);
const RATE: f64 = 1000.0;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

fn sample(name: &str) -> BuiltImage {
    let samples = fathom_testkit::samples::sample_images();
    let s = samples.iter().find(|s| s.name == name).expect("sample");
    BuiltImage::from_sample(s, Compress::Gzip).expect("image")
}

/// Points `tags` of `repo` at `image` (pushed once), 32 manifest PUTs at a time.
async fn tag_all(registry: &str, repo: &str, tags: &[String], image: &BuiltImage) {
    Pusher::new(registry, None)
        .push(repo, &tags[0], image)
        .await
        .expect("push");
    let http = reqwest::Client::new();
    futures_util::stream::iter(tags.iter().skip(1))
        .map(|t| {
            let put = http
                .put(format!("http://{registry}/v2/{repo}/manifests/{t}"))
                .header("content-type", image.manifest_media_type())
                .body(image.manifest.clone())
                .send();
            async move {
                let answer = put.await.expect("PUT manifest");
                assert!(answer.status().is_success(), "{answer:?}");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

async fn run() {
    let db = support::test_db().await;
    let registry = support::registry();
    let repo = support::unique_repo("bench");
    let (steady, moved) = (sample("alpine-apk"), sample("rocky-rpm"));
    let tags: Vec<String> = (0..WATCHES).map(|i| format!("t{i}")).collect();
    tag_all(&registry, &repo, &tags, &steady).await;
    let pool = sqlx::PgPool::connect(db.url()).await.expect("pool");
    // Watches as a first pass leaves them: each with its digest and one history row.
    let references: Vec<String> = tags
        .iter()
        .map(|t| format!("{registry}/{repo}:{t}"))
        .collect();
    sqlx::query(
        "WITH w AS (INSERT INTO fathom_catalog_watches (kind, reference, host, digest, checked_at) \
         SELECT 'tag', r, $2, $3, now() FROM unnest($1::text[]) AS r RETURNING id) \
         INSERT INTO fathom_catalog_history (watch_id, digest) SELECT id, $3 FROM w",
    )
    .bind(&references)
    .bind(&registry)
    .bind(steady.manifest_digest())
    .execute(&pool)
    .await
    .expect("watches");

    let config = CatalogConfig {
        watch_interval: INTERVAL,
        requests_per_second_per_host: RATE,
        ..CatalogConfig::default()
    };
    let options = RegistryOptions {
        insecure: vec![registry.clone()],
        ..RegistryOptions::default()
    };
    let watcher = Watcher::new(
        TagWatcher::new(options),
        RATE,
        CatalogMetrics::unregistered().expect("metrics"),
    );
    let catalog = Catalog::new(
        pool.clone(),
        Arc::new(watcher),
        config,
        Submission {
            cache_key: "bench".into(),
            max_attempts: 1,
        },
    );
    let spread =
        fathom_catalog::schedule::gap(WATCHES, INTERVAL, RATE).mul_f64((WATCHES - 1) as f64);

    let idle = catalog.pass(PassKind::Tags).await.expect("pass");
    report(&idle, 0, spread);

    let every = WATCHES / CHANGED;
    let chosen: Vec<String> = tags.iter().step_by(every).cloned().collect();
    tag_all(&registry, &repo, &chosen, &moved).await;
    let changed = catalog.pass(PassKind::Tags).await.expect("pass");
    report(&changed, CHANGED, spread);
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM fathom_catalog_watches WHERE digest = $1")
            .bind(moved.manifest_digest())
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(recorded as usize, CHANGED, "every moved tag recorded");
}

fn report(r: &fathom_catalog::PassReport, changed: usize, spread: Duration) {
    let pass_s = r.wall_ms as f64 / 1000.0;
    println!(
        "catalog watches={} hosts={} pass_s={pass_s:.1} requests={} heads={} manifests={}",
        r.watches,
        r.hosts,
        r.requests(),
        r.heads,
        r.manifests
    );
    assert_eq!(r.changed, changed, "{r:?}");
    assert!(r.manifests as usize <= changed, "{r:?}");
    assert!(r.requests() as usize <= r.watches + changed, "{r:?}");
    let least = spread.as_secs_f64();
    assert!(
        pass_s >= least && pass_s <= 2.0 * least.max(1.0),
        "pass took {pass_s:.1} s, its spread is {least:.1} s"
    );
}
