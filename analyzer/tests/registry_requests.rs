//! What a scan costs a registry, counted by a proxy in front of the real `docker-registry`: an N-layer
//! image is one manifest (two for an index), one config and N layers; authentication is learned once per
//! process (one 401 and one token, reused by later jobs, refreshed when it expires).

#[path = "support/rtt_proxy.rs"]
mod rtt_proxy;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use fathom_analyzer::analyze::{Analyzer, AnalyzerOptions};
use fathom_analyzer::source::registry::RegistryOptions;
use fathom_analyzer::source::requests::{registry_requests, RequestKind};
use fathom_analyzer::source::Platform;
use fathom_analyzer::{ImageSource, NoCache};
use fathom_testkit::image::layer_tar;
use fathom_testkit::registry;
use fathom_testkit::{BuiltImage, BuiltLayer, Compress, Pusher};
use rtt_proxy::{BearerAuth, Proxy};
use support::*;

const LAYERS: usize = 4;

fn image(name: &str, platform: Platform) -> BuiltImage {
    let layers = (0..LAYERS)
        .map(|i| {
            let entries = vec![file(
                &format!("/l{i}.pkglist"),
                format!("{name}-{i} 1\n").as_bytes(),
            )];
            BuiltLayer::from_tar(&layer_tar(&entries).unwrap(), Compress::Gzip).unwrap()
        })
        .collect();
    BuiltImage::from_layers(name, platform, layers)
}

/// Pushes `image` to the shared registry and returns `PROXY/repo:tag`.
async fn push(repo: &str, image: &BuiltImage) -> String {
    let reg = registry::shared().unwrap_or_else(|e| panic!("local registry: {e}"));
    Pusher::new(&reg.addr, None)
        .push(repo, "v1", image)
        .await
        .unwrap();
    format!("{repo}:v1")
}

fn analyzer(proxy: &Proxy) -> Analyzer {
    list_analyzer(AnalyzerOptions {
        registry: RegistryOptions {
            insecure: vec![proxy.addr.clone()],
            ..Default::default()
        },
        ..Default::default()
    })
}

async fn scan(analyzer: &Analyzer, proxy: &Proxy, repo_tag: &str) -> usize {
    let source: ImageSource = format!("{}/{repo_tag}", proxy.addr).parse().unwrap();
    let analysis = analyzer.analyze(&source, &NoCache).await.unwrap();
    analysis.packages.len()
}

fn counts(pairs: &[(&'static str, usize)]) -> BTreeMap<&'static str, usize> {
    pairs.iter().copied().collect()
}

async fn start(bearer: Option<BearerAuth>) -> Proxy {
    let reg = registry::shared().unwrap_or_else(|e| panic!("local registry: {e}"));
    Proxy::start(&reg.addr, Duration::ZERO, bearer).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_registry_costs_layers_plus_two_per_job() {
    let reference = push("count-anon", &image("anon", Platform::default())).await;
    let proxy = start(None).await;
    let analyzer = analyzer(&proxy);
    assert_eq!(scan(&analyzer, &proxy, &reference).await, LAYERS);
    let per_job = counts(&[("blob", LAYERS + 1), ("manifest", 1)]);
    assert_eq!(proxy.counts(), per_job);
    proxy.reset();
    // A second job of the same worker: no ping, no token, the same requests again.
    assert_eq!(scan(&analyzer, &proxy, &reference).await, LAYERS);
    assert_eq!(proxy.counts(), per_job);
    // The process-wide counters the worker exports saw both jobs.
    let manifests: u64 = registry_requests()
        .iter()
        .filter(|c| c.host == proxy.addr && c.kind == RequestKind::Manifest)
        .map(|c| c.count)
        .sum();
    assert_eq!(manifests, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_fetched_once_and_reused() {
    let first = push("count-bearer", &image("bearer", Platform::default())).await;
    let other = push("count-bearer-2", &image("other", Platform::default())).await;
    let proxy = start(Some(BearerAuth {
        expires_in: Duration::from_secs(300),
    }))
    .await;
    let analyzer = analyzer(&proxy);
    assert_eq!(scan(&analyzer, &proxy, &first).await, LAYERS);
    // One optimistic manifest request refused with the challenge, one token, then the image: the config
    // and the layers started together all carried the one token.
    assert_eq!(
        proxy.counts(),
        counts(&[
            ("blob", LAYERS + 1),
            ("denied", 1),
            ("manifest", 2),
            ("token", 1)
        ])
    );
    proxy.reset();
    assert_eq!(scan(&analyzer, &proxy, &first).await, LAYERS);
    assert_eq!(
        proxy.counts(),
        counts(&[("blob", LAYERS + 1), ("manifest", 1)])
    );
    proxy.reset();
    // Another repository on the same registry needs its own scope: a token up front, no 401 first.
    assert_eq!(scan(&analyzer, &proxy, &other).await, LAYERS);
    assert_eq!(
        proxy.counts(),
        counts(&[("blob", LAYERS + 1), ("manifest", 1), ("token", 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refreshed() {
    let reference = push("count-expiry", &image("expiry", Platform::default())).await;
    let proxy = start(Some(BearerAuth {
        expires_in: Duration::from_secs(1),
    }))
    .await;
    let analyzer = analyzer(&proxy);
    assert_eq!(scan(&analyzer, &proxy, &reference).await, LAYERS);
    // Past the token's lifetime (the proxy refuses it from now on).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    proxy.reset();
    assert_eq!(scan(&analyzer, &proxy, &reference).await, LAYERS);
    assert_eq!(
        proxy.counts(),
        counts(&[("blob", LAYERS + 1), ("manifest", 1), ("token", 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_costs_one_more_manifest() {
    let amd = image("multi-amd", Platform::default());
    let arm = image("multi-arm", "linux/arm64/v8".parse().unwrap());
    let reg = registry::shared().unwrap_or_else(|e| panic!("local registry: {e}"));
    Pusher::new(&reg.addr, None)
        .push_index("count-index", "v1", &[&amd, &arm])
        .await
        .unwrap();
    let proxy = start(None).await;
    let analyzer = analyzer(&proxy);
    assert_eq!(scan(&analyzer, &proxy, "count-index:v1").await, LAYERS);
    assert_eq!(
        proxy.counts(),
        counts(&[("blob", LAYERS + 1), ("manifest", 2)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tag_is_one_request_and_classified() {
    push("count-missing", &image("missing", Platform::default())).await;
    let proxy = start(Some(BearerAuth {
        expires_in: Duration::from_secs(300),
    }))
    .await;
    let analyzer = analyzer(&proxy);
    let source: ImageSource = format!("{}/count-missing:nope", proxy.addr)
        .parse()
        .unwrap();
    let err = analyzer.analyze(&source, &NoCache).await.unwrap_err();
    assert_eq!(err.reason(), "manifest_unknown", "{err}");
    assert_eq!(
        proxy.counts(),
        counts(&[("denied", 1), ("manifest", 2), ("token", 1)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_jobs_share_one_token_and_revoked_tokens_are_replaced() {
    let reference = push(
        "count-concurrent",
        &image("concurrent", Platform::default()),
    )
    .await;
    let proxy = start(Some(BearerAuth {
        expires_in: Duration::from_secs(300),
    }))
    .await;
    let analyzer = analyzer(&proxy);
    let (a, b) = tokio::join!(
        scan(&analyzer, &proxy, &reference),
        scan(&analyzer, &proxy, &reference)
    );
    assert_eq!((a, b), (LAYERS, LAYERS));
    // Both optimistic requests were refused; the second waited for the first one's token.
    let counts_now = proxy.counts();
    assert_eq!(counts_now.get("token"), Some(&1), "{counts_now:?}");
    assert_eq!(counts_now.get("denied"), Some(&2), "{counts_now:?}");
    proxy.reset();
    // The token service forgot its tokens: the refused one is replaced once, then reused.
    proxy.revoke_tokens();
    assert_eq!(scan(&analyzer, &proxy, &reference).await, LAYERS);
    assert_eq!(
        proxy.counts(),
        counts(&[
            ("blob", LAYERS + 1),
            ("denied", 1),
            ("manifest", 2),
            ("token", 1)
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_keeps_retry_after() {
    let reference = push("count-limited", &image("limited", Platform::default())).await;
    let proxy = start(None).await;
    let analyzer = analyzer(&proxy);
    proxy.refuse_next(429, "7");
    let source: ImageSource = format!("{}/{reference}", proxy.addr).parse().unwrap();
    let err = analyzer.analyze(&source, &NoCache).await.unwrap_err();
    assert_eq!(err.reason(), "rate_limited", "{err}");
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    proxy.refuse_next(503, "2");
    let err = analyzer.analyze(&source, &NoCache).await.unwrap_err();
    assert_eq!(err.reason(), "registry_unavailable", "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
}
