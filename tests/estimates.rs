//! Work estimates (`scale_on: work`) from every submitter that has the manifest at hand, through a real
//! `fathom run` (API, webhook over HTTPS, catalog) on images in the real test registry: an API submission
//! by digest, the webhook's high-priority analysis of an admitted image, a new tag watch's first job and a
//! repository watch's tags (resolved by the first pass) are queued with the compressed bytes of their
//! layers not in the layer cache — all of them while nothing is analyzed, none once a worker has analyzed
//! the same layers under another digest. A registry that does not answer never holds a submission up:
//! the job is queued without an estimate.

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::webhook::{review, workload, Hook};
use support::{free_addr, webhook_certs, Fleet};

/// A core serving the API, the webhook on its own port and the catalog (a pass every second), asking
/// the fleet's registry over plain HTTP.
fn core(fleet: &Fleet) -> (Api, Hook) {
    let tls = fleet.path().join("tls");
    webhook_certs(&tls);
    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let dir = fleet.path().join("core");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "  webhook:\n    enabled: true\n    address: '{hook_addr}'\n    cert_file: '{}'\n    \
         key_file: '{}'\n    timeout: 5s\n  catalog:\n    watch_interval: 1s\n\
         registry:\n  insecure: ['{}']\n  timeout: 10s\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
        fleet.host,
    );
    (
        Api::start(&dir, fleet.url(), &config),
        Hook::new(&tls, port),
    )
}

/// The estimate of the newest job analyzing `reference`: `None` when no job was queued for it,
/// `Some(None)` when it was queued without one.
async fn estimate(pool: &sqlx::PgPool, reference: &str) -> Option<Option<i64>> {
    sqlx::query_scalar(
        "SELECT work_bytes FROM fathom_jobs WHERE payload->>'reference' = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(reference)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Submits `reference` through `POST /v1/images`; how long the answer took.
async fn submit(client: &Client, reference: &str) -> Duration {
    let started = Instant::now();
    let (status, body) = client
        .post("/v1/images", json!({ "reference": reference }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{reference}: {body}");
    started.elapsed()
}

/// Admits a Pod running `image` through the webhook.
async fn admit(hook: &Hook, uid: &str, image: &str) -> Value {
    let object = workload("Pod", "shop", &[("app", image)], &[]);
    hook.admit(&review(uid, &object, false)).await
}

/// Watches `reference` (a tag); the watch.
async fn watch(client: &Client, reference: &str) -> Value {
    let (status, watch) = client
        .post("/v1/watches", json!({ "reference": reference }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
    watch
}

/// `host/repo:tag` → `host/repo@digest`.
fn pinned(reference: &str, digest: &str) -> String {
    format!("{}@{digest}", reference.rsplit_once(':').unwrap().0)
}

/// Polls until `reference`'s job carries an estimate (at most 10 s); what it carries then.
async fn wait_estimate(pool: &sqlx::PgPool, reference: &str) -> Option<Option<i64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = estimate(pool, reference).await;
        if matches!(found, Some(Some(_))) || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What each path stored against what it should have: every path is checked, then all misses shown.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn check(&mut self, what: &str, got: Option<Option<i64>>, want: Option<Option<i64>>) {
        if got != want {
            self.0
                .push(format!("{what}: stored {got:?}, want {want:?}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_submitter_with_the_manifest_at_hand_queues_the_uncached_bytes() {
    let fleet = Fleet::direct(&["alpine-apk"]).await;
    let image = fleet.images[0].1.clone();
    let digest = image.manifest_digest();
    let layer_bytes: i64 = image.layers.iter().map(|l| l.blob.len() as i64).sum();
    let (api, hook) = core(&fleet);
    let client = api.client();
    let pool = sqlx::PgPool::connect(fleet.url()).await.unwrap();
    let mut checks = Checks::default();

    // Nothing analyzed yet (and no worker): every layer is work.
    // An API submission by digest.
    let by_digest = pinned(&fleet.push("api", &image).await, &digest);
    submit(&client, &by_digest).await;
    let got = estimate(&pool, &by_digest).await;
    checks.check("API by digest", got, Some(Some(layer_bytes)));
    // A tag over the API is left to the job (what it names may change before it runs).
    let by_tag = fleet.push("api-tag", &image).await;
    submit(&client, &by_tag).await;
    let got = estimate(&pool, &by_tag).await;
    checks.check("API by tag", got, Some(None));
    // The webhook's analysis of an admitted, unanalyzed image: queued pinned, from the manifest its
    // resolution fetched.
    let admitted = fleet.push("hook", &image).await;
    admit(&hook, "u-cold", &admitted).await;
    let got = estimate(&pool, &pinned(&admitted, &digest)).await;
    checks.check("webhook", got, Some(Some(layer_bytes)));
    // A new tag watch's first job, from the manifest its first look fetched.
    let watched = fleet.push("watch", &image).await;
    let w = watch(&client, &watched).await;
    assert!(w["history"][0]["job_id"].is_i64(), "first look queued: {w}");
    let got = estimate(&pool, &watched).await;
    checks.check("tag watch", got, Some(Some(layer_bytes)));
    // A repository watch queues its tags at once; the first pass resolves each tag's manifest and the
    // queued job gets its estimate then.
    let in_repository = fleet.push("repo", &image).await;
    let repository = in_repository.rsplit_once(':').unwrap().0;
    let (status, body) = client
        .post("/v1/watches", json!({ "repository": repository }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let got = wait_estimate(&pool, &in_repository).await;
    checks.check("repository watch", got, Some(Some(layer_bytes)));

    // A registry that accepts connections and never answers: the submission is not held up (one short
    // timeout), and its job has no estimate.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let stuck = format!("{}/app@{digest}", silent.local_addr().unwrap());
    let took = submit(&client, &stuck).await;
    assert!(took < Duration::from_secs(4), "held up {took:?}");
    let got = estimate(&pool, &stuck).await;
    checks.check("API, registry silent", got, Some(None));
    drop(silent);

    // A worker analyzes what was queued: the image's layers are in the layer cache now.
    let _worker = fleet.worker("w1", &fleet.spec());
    fleet
        .wait_analyzed(std::slice::from_ref(&by_digest), Duration::from_secs(120))
        .await;

    // The same layers under a new digest (a rebuild that changed only the manifest): nothing to fetch,
    // whoever submits it. Each submitter gets its own rebuild (a digest analyzed already queues nothing).
    let rebuild = |n: &str| {
        let mut again = image.clone();
        again.set_manifest(|m| m["annotations"] = json!({ "rebuilt": n }));
        assert_ne!(again.manifest_digest(), digest);
        again
    };
    let api_image = rebuild("api");
    let by_digest = pinned(
        &fleet.push("api-cached", &api_image).await,
        &api_image.manifest_digest(),
    );
    submit(&client, &by_digest).await;
    let got = estimate(&pool, &by_digest).await;
    checks.check("API by digest, cached", got, Some(Some(0)));
    let hook_image = rebuild("hook");
    let admitted = fleet.push("hook-cached", &hook_image).await;
    admit(&hook, "u-cached", &admitted).await;
    let got = estimate(&pool, &pinned(&admitted, &hook_image.manifest_digest())).await;
    checks.check("webhook, cached", got, Some(Some(0)));
    let watched = fleet.push("watch-cached", &rebuild("watch")).await;
    watch(&client, &watched).await;
    let got = estimate(&pool, &watched).await;
    checks.check("tag watch, cached", got, Some(Some(0)));
    assert!(checks.0.is_empty(), "{:#?}", checks.0);
}
