//! Admission webhook load check: a real `fathom run` (release build) serving the API and the webhook on
//! the shared test Postgres, over HTTPS with a certificate from `fathom webhook certs`, and 64 concurrent
//! keep-alive clients in this process posting AdmissionReviews for a fixed window. `analyzed` admits a
//! Pod whose image (a digest reference) a real worker analyzed; `analyzed-tag` the same by tag (resolved
//! once, then from the tag cache); `unanalyzed` names a new digest per request, one of 50,000 manifests a
//! local registry in this process serves (a store lookup, one manifest GET to learn whether the digest is
//! an index, a real enqueue, a denial; the per-namespace enqueue limit is off, or the case would measure
//! its denials).
//! No feed is synced, so `unevaluable: warn` keeps the default bundle's answer the WARN it was measured
//! with. Client and server share the machine's cores, so the figures are a floor.
//!
//! Prints exactly one line per case on stdout: `webhook case=C rps=X p99_ms=Y`.

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "webhook_support/registry.rs"]
mod webhook_registry;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::api::Api;
use support::{WorkerProc, WorkerSpec};

const CLIENTS: usize = 64;
const WARMUP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(5);
const HOST: &str = "fathom-webhook.fathom.svc";
/// Distinct manifests the `unanalyzed` case names (more than one window's requests: each is new).
const UNANALYZED_IMAGES: usize = 50_000;

#[derive(Clone, Copy)]
enum Case {
    Analyzed,
    AnalyzedTag,
    Unanalyzed,
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    support::webhook_certs(&tls);
    let hook = support::free_addr();
    let port: u16 = hook
        .rsplit_once(':')
        .expect("port")
        .1
        .parse()
        .expect("port");
    let registry = support::registry();
    let manifests = Arc::new(webhook_registry::Manifests::generate(UNANALYZED_IMAGES));
    let unknown = webhook_registry::serve(Arc::clone(&manifests)).await;
    let extra = format!(
        "    max_attempts: 1\n  webhook:\n    enabled: true\n    address: '{hook}'\n    \
         cert_file: '{}'\n    key_file: '{}'\n    max_enqueues_per_minute: 0\n    unevaluable: warn\n\
         registry:\n  insecure: ['{registry}', '{unknown}']\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
    );
    let api = Api::start(dir.path(), db.url(), &extra);
    let (tag, pinned) = seed(dir.path(), db.url()).await;
    let ca = std::fs::read_to_string(tls.join("ca.crt")).expect("ca.crt");
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA"))
        .resolve(HOST, ([127, 0, 0, 1], port).into())
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    for (name, case) in [
        ("analyzed", Case::Analyzed),
        ("analyzed-tag", Case::AnalyzedTag),
        ("unanalyzed", Case::Unanalyzed),
    ] {
        let (rps, p99) = load(&http, port, case, &tag, &pinned, &unknown, &manifests).await;
        println!("webhook case={name} rps={rps:.0} p99_ms={p99:.2}");
    }
    drop(api);
}

/// Analyzes one sample image with a real worker; returns (tag reference, pinned digest reference).
async fn seed(dir: &std::path::Path, url: &str) -> (String, String) {
    let pushed = support::push_samples(&["alpine-apk"]).await;
    let tag = format!("{}/{}", support::registry(), pushed[0].0);
    let repo = tag.rsplit_once(':').expect("tag").0.to_string();
    let pinned = format!("{repo}@{}", pushed[0].1.manifest_digest());
    let worker = WorkerProc::start(dir, "bench-seed", url, &WorkerSpec::default());
    let db = support::Db::new(url);
    db.store
        .submit(std::slice::from_ref(&pinned), 3)
        .await
        .expect("submit");
    db.wait_for(
        std::slice::from_ref(&pinned),
        Duration::from_secs(120),
        |s| s.status == "analyzed",
    )
    .await;
    drop(worker);
    (tag, pinned)
}

fn review(uid: &str, image: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "app", "namespace": "shop", "operation": "CREATE",
            "userInfo": {"username": "admin"},
            "object": {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "app", "namespace": "shop"},
                "spec": {"containers": [{"name": "app", "image": image}]}},
            "oldObject": null, "dryRun": false
        }
    })
}

/// Runs `CLIENTS` loops on one case; returns (requests per second, p99 latency in ms) over the window.
async fn load(
    http: &reqwest::Client,
    port: u16,
    case: Case,
    tag: &str,
    pinned: &str,
    unknown: &str,
    manifests: &Arc<webhook_registry::Manifests>,
) -> (f64, f64) {
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + WARMUP;
    let end = measure_from + WINDOW;
    let url = format!("https://{HOST}:{port}/validate");
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, counter, url) = (http.clone(), Arc::clone(&counter), url.clone());
        let (tag, pinned) = (tag.to_string(), pinned.to_string());
        let (unknown, manifests) = (unknown.to_string(), Arc::clone(manifests));
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let (image, allowed) = match case {
                    Case::Analyzed => (pinned.clone(), true),
                    Case::AnalyzedTag => (tag.clone(), true),
                    Case::Unanalyzed => {
                        let digest = &manifests.digests[n as usize % manifests.digests.len()];
                        (format!("{unknown}/unknown/c{c}@{digest}"), false)
                    }
                };
                let sent = Instant::now();
                let answer: Value = http
                    .post(&url)
                    .json(&review(&format!("u{n}"), &image))
                    .send()
                    .await
                    .expect("request")
                    .json()
                    .await
                    .expect("AdmissionReview");
                let elapsed = sent.elapsed();
                assert_eq!(answer["response"]["allowed"], allowed, "{answer}");
                if sent >= measure_from && Instant::now() <= end {
                    latencies.push(elapsed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    all.sort();
    let rps = all.len() as f64 / WINDOW.as_secs_f64();
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    (rps, p99)
}
