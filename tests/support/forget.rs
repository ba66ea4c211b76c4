//! Shared by the tests of the store's forgetting (tests/forget*.rs): sample variants with a layer of
//! their own, a core configuration that sweeps at once, and small polls and counts on the database.

use std::path::Path;
use std::time::{Duration, Instant};

use fathom_testkit::osv;
use fathom_testkit::samples::{SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, Compress};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use super::api::Client;

/// `base` with one more layer holding an npm package of its own (`forget-<marker>`).
pub fn variant(base: &str, marker: &str) -> BuiltImage {
    let samples = fathom_testkit::samples::sample_images();
    let mut sample = samples.iter().find(|s| s.name == base).unwrap().clone();
    let dir = |path: &str| SampleEntry {
        path: path.to_string(),
        mode: 0o755,
        kind: SampleKind::Dir,
    };
    let manifest = format!(
        "{{\"name\": \"forget-{marker}\", \"version\": \"1.0.0\", \"license\": \"MIT\"}}\n"
    );
    sample.layers.push(vec![
        dir("/srv"),
        dir("/srv/node_modules"),
        dir(&format!("/srv/node_modules/forget-{marker}")),
        SampleEntry {
            path: format!("/srv/node_modules/forget-{marker}/package.json"),
            mode: 0o644,
            kind: SampleKind::File(manifest.into_bytes()),
        },
    ]);
    sample.name = format!("{base}-{marker}");
    BuiltImage::from_sample(&sample, Compress::None).unwrap()
}

/// The digests of the image's layers, in order.
pub fn layer_digests(image: &BuiltImage) -> Vec<String> {
    image.layers.iter().map(|l| l.digest()).collect()
}

/// `services.*` lines: the feed cycle over the sample feed in `feed` (when given), a catalog sweeping
/// every second with no grace, and `catalog` lines of the caller's.
pub fn core_config(feed: Option<&Path>, catalog: &str) -> String {
    let feeds = feed.map_or(String::new(), |f| {
        format!(
            "  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [{}]\n    rematch_interval: 1s\n",
            f.display(),
            osv::SAMPLE_FEEDS.join(", ")
        )
    });
    format!(
        "{feeds}  catalog:\n    layer_sweep_interval: 1s\n    layer_sweep_grace: 0s\n{catalog}registry:\n  insecure: ['{}']\n  timeout: 5s\n",
        super::registry()
    )
}

/// A small pool on the test database, for assertions.
pub async fn pool(url: &str) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}

/// GETs `path` until `done` holds for the answer (two minutes at most); the answer.
pub async fn poll(client: &Client, path: &str, done: impl Fn(StatusCode, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, answer) = client.get(path).await;
        if done(status, &answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never got there: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Submits and waits for the analysis; the digest.
pub async fn analyze(client: &Client, reference: &str) -> String {
    let done = client.submit_and_wait(reference).await;
    done["digest"].as_str().unwrap().to_string()
}

/// Which of `digests` the layer cache holds, sorted.
pub async fn layers_stored(pool: &PgPool, digests: &[String]) -> Vec<String> {
    let mut stored: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT digest FROM fathom_layers WHERE digest = ANY($1)")
            .bind(digests)
            .fetch_all(pool)
            .await
            .unwrap();
    stored.sort();
    stored
}

/// `sql`'s one count, `$1` bound to `digest`.
pub async fn count(pool: &PgPool, sql: &str, digest: &str) -> i64 {
    sqlx::query_scalar(sql)
        .bind(digest)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// How many `dev.fathom.image.deleted` events name `digest`.
pub async fn deleted_events(pool: &PgPool, digest: &str) -> i64 {
    count(
        pool,
        "SELECT count(*) FROM notify_events WHERE type = 'dev.fathom.image.deleted' AND subject = $1",
        digest,
    )
    .await
}

/// Submits `reference` forced (analyzed again even if its last analysis is current: the tag moved) and
/// waits for the analysis; the digest.
pub async fn analyze_forced(client: &Client, reference: &str) -> String {
    let (status, submitted) = client
        .post(
            "/v1/images",
            serde_json::json!({"reference": reference, "force": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let done = client
        .wait_done(submitted["job_id"].as_i64().unwrap())
        .await;
    assert_eq!(done["status"], "analyzed", "{done}");
    done["digest"].as_str().unwrap().to_string()
}

/// The value of `series` (name and labels, as exported) on the core's `/metrics`.
pub fn core_metric(api: &super::api::Api, series: &str) -> f64 {
    let (status, text) = super::http_get(&api.addr, "/metrics").expect("scrape the core");
    assert_eq!(status, 200, "{text}");
    super::metric(&text, series)
}

/// `fathom_core_deleted_images_total` of `cause`.
pub fn deleted_by(api: &super::api::Api, cause: &str) -> f64 {
    core_metric(
        api,
        &format!("fathom_core_deleted_images_total{{cause=\"{cause}\"}}"),
    )
}
