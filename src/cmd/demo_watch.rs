//! `fathom demo`'s watch step: the catalog and the inventory on the demo's database. A GENERATED SAMPLE
//! registry held in memory on loopback ([`SampleRegistry`]) serves `demo/shop:prod`; the core's API is
//! served in-process and watches the tag (`POST /v1/watches`); the catalog loop runs as in a core, a
//! worker runs in-process. The tag then moves to a new image: the catalog's pass notices, records it and
//! queues its analysis, and the worker analyzes it — nobody submits the new digest. Then GENERATED SAMPLE
//! AdmissionReviews run a Deployment of the tag (and a dry run of another) through the webhook's core
//! with the inventory recorder, and `GET /v1/images/{digest}/workloads` lists the workload admitted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use fathom_catalog::{CatalogConfig, CatalogMetrics};
use fathom_queue::Queue;
use fathom_testkit::image::{BuiltImage, Compress};
use fathom_testkit::samples::sample_images;
use fathom_webhook::{Admission, Metrics, Mode};
use fathom_worker::store::Store;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::demo_registry::SampleRegistry;
use crate::config::FathomConfig;
use crate::core::api::{self, ApiMetrics, ApiState, Tokens, DOCUMENTS_AT_ONCE};
use crate::core::oracle::{policy_check, StoreOracle};
use crate::core::policy::PolicyEngine;

/// The watched repository and tag in the sample registry.
const REPOSITORY: &str = "demo/shop";
const TAG: &str = "prod";

/// How often the demo's catalog re-resolves the watched tag (a core's default is 5 minutes).
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Longest wait for any one step (an analysis on a loaded machine included).
const STEP: Duration = Duration::from_secs(180);

/// Runs the step on the demo's database at `url`.
pub async fn run(url: &str, store: &Store) -> anyhow::Result<()> {
    fathom_catalog::migrator()
        .run(store.pool())
        .await
        .context("applying the catalog migrations")?;
    let registry = SampleRegistry::start().await?;
    let host = registry.host().to_string();
    let (old, new) = tokio::task::spawn_blocking(two_images).await??;
    let first = registry.push(REPOSITORY, TAG, &old);

    let mut config = FathomConfig::default();
    config.registry.insecure = vec![host.clone()];
    config.metrics.address = "127.0.0.1:0".into();
    config.services.api.auth = false;
    config.services.catalog = CatalogConfig {
        watch_interval: WATCH_INTERVAL,
        ..CatalogConfig::default()
    };
    config.services.webhook.default_mode = Mode::Analysis;
    let (stop_tx, stop) = watch::channel(false);
    let core = Core::start(&config, url, store, stop.clone()).await?;
    let worker = tokio::spawn({
        let (config, url, stop) = (config.clone(), url.to_string(), stop.clone());
        async move { crate::services::worker::run_worker(&config, &url, stop).await }
    });
    let outcome = steps(&core, &registry, &config, store, &first, &new).await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(30), worker).await {
        Ok(Ok(Err(e))) => tracing::warn!("demo worker: {e:#}"),
        Ok(_) => {}
        Err(_) => tracing::warn!("demo worker did not stop within 30 s"),
    }
    core.stop().await;
    outcome
}

/// Two builds of the smallest sample (its base layers shared): the tag's first image and the one
/// pushed over it.
fn two_images() -> anyhow::Result<(BuiltImage, BuiltImage)> {
    let sample = sample_images()
        .into_iter()
        .find(|s| s.name == "alpine-apk")
        .context("the alpine-apk sample")?;
    let build = |n| {
        let variant = super::demo::variant(&sample, n);
        BuiltImage::from_sample(&variant, Compress::Gzip)
            .with_context(|| format!("building {}", variant.name))
    };
    Ok((build(101)?, build(102)?))
}

/// The core's API and catalog loop, served in-process on loopback.
struct Core {
    base: String,
    http: reqwest::Client,
    cache_key: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Core {
    async fn start(
        config: &FathomConfig,
        url: &str,
        store: &Store,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Core> {
        let options =
            fathom_worker::config::analyzer_options(&config.services.analyzer, &config.registry)?;
        let cache_key = fathom_analyzer::analyze::catalogers_key(
            &fathom_analyzer::catalog::default_catalogers(),
            &options,
        );
        let metrics = ApiMetrics::new()?;
        let catalog_metrics =
            CatalogMetrics::register(metrics.registry(), &config.services.catalog)?;
        let catalog = crate::core::catalog::build(
            config,
            store.pool().clone(),
            cache_key.clone(),
            catalog_metrics.clone(),
        )?;
        let state = Arc::new(ApiState {
            store: store.clone(),
            queue: Queue::connect(url, config.queue_config(2))?,
            config: config.services.api.clone(),
            cache_key: cache_key.clone(),
            documents: tokio::sync::Semaphore::new(DOCUMENTS_AT_ONCE),
            deletions: tokio::sync::Semaphore::new(crate::core::api::DELETIONS_AT_ONCE),
            policy: Arc::new(PolicyEngine::new(
                store.clone(),
                config.services.policy_engine.clone(),
            )?),
            catalog: Some(Arc::new(catalog.clone())),
            inventory_ttl: config.services.webhook.inventory_ttl,
            forget: crate::core::forget::metrics::ForgetMetrics::unregistered()?,
            retention: config.services.catalog.retention.clone(),
            estimator: None,
        });
        let app = api::router(state, Tokens::from_config(&[])?, metrics)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut serve_stop = stop.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = serve_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!("demo API: {e}");
            }
        });
        let catalog_loop = tokio::spawn(crate::core::catalog::run(
            catalog,
            store.pool().clone(),
            url.to_string(),
            config.services.catalog.clone(),
            catalog_metrics,
            stop,
        ));
        Ok(Core {
            base,
            http: reqwest::Client::new(),
            cache_key,
            tasks: vec![server, catalog_loop],
        })
    }

    /// `METHOD path` with an optional JSON body: the status and the JSON answer.
    async fn call(&self, post: Option<Value>, path: &str) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let request = match post {
            Some(body) => self.http.post(&url).json(&body),
            None => self.http.get(&url),
        };
        let response = request.send().await.with_context(|| url.clone())?;
        let status = response.status().as_u16();
        let body = response.json().await.with_context(|| url.clone())?;
        Ok((status, body))
    }

    async fn stop(self) {
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

/// Waits for `done` (polled every 200 ms), failing after [`STEP`] with `what`.
async fn until<F, Fut>(what: &str, mut done: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let started = Instant::now();
    while !done().await? {
        if started.elapsed() > STEP {
            bail!("{what}: not within {} s", STEP.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(started.elapsed())
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(19)]
}

async fn steps(
    core: &Core,
    registry: &SampleRegistry,
    config: &FathomConfig,
    store: &Store,
    first: &str,
    new: &BuiltImage,
) -> anyhow::Result<()> {
    let reference = format!("{}/{REPOSITORY}:{TAG}", registry.host());
    println!(
        "  watches (GENERATED SAMPLE registry in memory at {}; the catalog re-resolves watched tags every {} s):",
        registry.host(),
        WATCH_INTERVAL.as_secs()
    );
    let (status, watch) = core
        .call(Some(json!({"reference": reference})), "/v1/watches")
        .await?;
    if status != 201 {
        bail!("POST /v1/watches answered {status}: {watch}");
    }
    let id = watch["id"].as_i64().context("the watch's id")?;
    println!(
        "    POST /v1/watches {reference} → 201, watch {id} at {} (its analysis queued by the watch)",
        short(first)
    );
    let analyzed =
        |digest: String| async move { Ok(store.is_analyzed(&digest, &core.cache_key).await?) };
    let took = until("the tag's first image analyzed", || {
        analyzed(first.to_string())
    })
    .await?;
    println!(
        "    {} analyzed ({:.1} s)",
        short(first),
        took.as_secs_f64()
    );

    let moved = registry.push(REPOSITORY, TAG, new);
    println!(
        "    pushed another image to {REPOSITORY}:{TAG}: {} — nobody submits it",
        short(&moved)
    );
    let path = format!("/v1/watches/{id}");
    let seen = until("the catalog noticing the moved tag", || async {
        let (_, w) = core.call(None, &path).await?;
        Ok(w["history"].as_array().is_some_and(|h| h.len() >= 2))
    })
    .await?;
    let done = until("the moved tag's image analyzed", || analyzed(moved.clone())).await?;
    println!(
        "    the catalog's pass saw the tag move after {:.1} s and queued its analysis; analyzed {:.1} s later",
        seen.as_secs_f64(),
        done.as_secs_f64()
    );
    let (_, detail) = core.call(None, &path).await?;
    let history: Vec<String> = detail["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let job = h["job_id"]
                .as_i64()
                .map(|j| format!(" (job {j})"))
                .unwrap_or_default();
            format!("{}{job}", short(h["digest"].as_str().unwrap_or_default()))
        })
        .collect();
    println!(
        "    GET {path}: history, newest first: {}",
        history.join(", ")
    );

    admit_and_list(core, config, store, &reference, &moved).await
}

/// A GENERATED SAMPLE AdmissionReview of a Deployment in namespace `demo` running `image`.
fn review(uid: &str, name: &str, image: &str, dry_run: bool) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": name, "namespace": "demo", "operation": "CREATE",
            "userInfo": {"username": "demo"},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": name, "namespace": "demo"},
                       "spec": {"selector": {"matchLabels": {"app": name}},
                                "template": {"metadata": {"labels": {"app": name}},
                                             "spec": {"containers": [{"name": "app", "image": image}]}}}},
            "oldObject": null, "dryRun": dry_run
        }
    })
}

/// Admits a Deployment of the watched tag (and a dry run of another), then lists the workloads of the
/// tag's new digest through the API.
async fn admit_and_list(
    core: &Core,
    config: &FathomConfig,
    store: &Store,
    reference: &str,
    digest: &str,
) -> anyhow::Result<()> {
    let hook = &config.services.webhook;
    let options =
        fathom_worker::config::analyzer_options(&config.services.analyzer, &config.registry)?;
    let resolver =
        fathom_analyzer::source::registry::DigestResolver::new(options.registry, options.platform);
    let dropped = prometheus::IntCounter::new("demo_inventory_dropped", "uses not recorded")?;
    let recorder = fathom_catalog::inventory::Recorder::spawn(
        store.pool().clone(),
        hook.inventory_ttl,
        dropped,
    );
    let engine = Arc::new(PolicyEngine::new(
        store.clone(),
        config.services.policy_engine.clone(),
    )?);
    let oracle = StoreOracle::new(
        store.clone(),
        resolver,
        policy_check(Some(engine)),
        core.cache_key.clone(),
        3,
        hook.cache_ttl,
    )
    .with_inventory(recorder);
    let metrics = Metrics::register(&prometheus::Registry::new())?;
    let admission = Admission::new(hook.validate()?, Arc::new(oracle), metrics);
    println!("  inventory (GENERATED SAMPLE AdmissionReviews, mode analysis):");
    for (uid, name, dry_run) in [
        ("demo-shop", "shop", false),
        ("demo-canary", "canary", true),
    ] {
        let body = serde_json::to_vec(&review(uid, name, reference, dry_run))?;
        let answer = admission
            .review(&body, tokio::time::Instant::now() + hook.timeout)
            .await;
        let r = &answer.response;
        println!(
            "    Deployment demo/{name} running {reference}{}: {}{}",
            if dry_run { " (dry run)" } else { "" },
            if r.allowed { "allowed" } else { "denied" },
            if dry_run {
                " — a dry run records nothing"
            } else {
                ""
            },
        );
    }
    let path = format!("/v1/images/{digest}/workloads");
    until("the admitted workload in the inventory", || async {
        let (_, w) = core.call(None, &path).await?;
        Ok(w["items"].as_array().is_some_and(|i| !i.is_empty()))
    })
    .await?;
    let (_, workloads) = core.call(None, &path).await?;
    println!("    GET /v1/images/{}/workloads:", short(digest));
    for w in workloads["items"].as_array().into_iter().flatten() {
        let text = |k: &str| w[k].as_str().unwrap_or_default().to_string();
        println!(
            "      {} {} {} container {} (image {}, first seen {})",
            text("namespace"),
            text("kind"),
            text("name"),
            text("container"),
            text("image"),
            text("first_seen")
        );
    }
    Ok(())
}
