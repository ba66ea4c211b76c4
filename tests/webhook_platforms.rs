//! The admission gate of a real `fathom run` for multi-platform images and registries that refuse fathom:
//! indexes with linux/amd64 and linux/arm64 manifests in the test registry, a real worker, a registry with
//! htpasswd auth (401), the fault proxy refusing (403) or down (503), real AdmissionReview documents over
//! real HTTPS.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use fathom_analyzer::source::manifest::sha256_digest;
use fathom_analyzer::source::Platform;
use fathom_testkit::image::{index_json, layer_tar};
use fathom_testkit::samples::{sample_images, SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, BuiltLayer, Compress, Pusher};
use support::api::Api;
use support::webhook::{message, review, workload, Hook};
use support::{free_addr, http_get, metric, registry, unique_repo, webhook_certs, Fleet};

const WAIT: Duration = Duration::from_secs(120);

/// A `fathom run` serving the webhook (certificates from `fathom webhook certs`) on the fleet's
/// database, reaching the registries `insecure` over plain HTTP; a client of the webhook.
fn core(fleet: &Fleet, insecure: &[&str]) -> (Api, Hook) {
    let tls = fleet.path().join("tls");
    webhook_certs(&tls);
    let address = free_addr();
    let port: u16 = address.rsplit_once(':').unwrap().1.parse().unwrap();
    // No feed here: the default bundle's vulnerability STOP rule cannot be evaluated; `warn` admits
    // (tests/webhook_reference.rs covers the default, `stop`).
    let extra = format!(
        "  webhook:\n    enabled: true\n    address: '{address}'\n    cert_file: '{}'\n    \
         key_file: '{}'\n    timeout: 5s\n    unevaluable: warn\nregistry:\n  insecure: ['{}']\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
        insecure.join("', '"),
    );
    let api = Api::start(fleet.path(), fleet.url(), &extra);
    (api, Hook::new(&tls, port))
}

/// The AdmissionReview for CREATE of a Pod in `ns` running `image`.
fn pod_review(uid: &str, ns: &str, image: &str) -> serde_json::Value {
    review(uid, &workload("Pod", ns, &[("app", image)], &[]), false)
}

/// The sample `name` for `platform`, with a layer of its own (`marker`) so each test has its own digests.
fn image(name: &str, platform: &str, marker: &str) -> BuiltImage {
    let sample = sample_images()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap();
    let mut image = BuiltImage::from_sample(&sample, Compress::Gzip).unwrap();
    let entry = SampleEntry {
        path: "/etc/fathom-test-marker".into(),
        mode: 0o644,
        kind: SampleKind::File(format!("{marker} {platform}\n").into_bytes()),
    };
    let layer = BuiltLayer::from_tar(&layer_tar(&[entry]).unwrap(), Compress::Gzip).unwrap();
    image.layers.push(layer);
    image.platform = platform.parse::<Platform>().unwrap();
    image.rebuild();
    image
}

/// An index of alpine-apk for linux/amd64 and rocky-rpm (which carries `bash`) for linux/arm64, pushed
/// as `repo:v1`; (tag reference, index digest, amd64 image, arm64 image).
async fn push_multi_arch(marker: &str) -> (String, String, BuiltImage, BuiltImage) {
    let amd = image("alpine-apk", "linux/amd64", marker);
    let arm = image("rocky-rpm", "linux/arm64", marker);
    let registry = registry();
    let repo = unique_repo("multi");
    Pusher::new(&registry, None)
        .push_index(&repo, "v1", &[&amd, &arm])
        .await
        .unwrap();
    let index = sha256_digest(&index_json(&[&amd, &arm]));
    (format!("{registry}/{repo}:v1"), index, amd, arm)
}

fn repository(tag: &str) -> &str {
    tag.rsplit_once(':').unwrap().0
}

/// The job answering the submission of `reference`: (payload reference, platform column).
async fn job_of(fleet: &Fleet, reference: &str) -> (String, Option<String>) {
    let entry = fleet.db.status(reference).await;
    let id = entry.job_id.expect("a job");
    let job = fleet.db.queue.job(id).await.unwrap().expect("the job");
    let platform: Option<String> =
        sqlx::query_scalar("SELECT platform FROM fathom_jobs WHERE id = $1")
            .bind(id)
            .fetch_one(fleet.db.store.pool())
            .await
            .unwrap();
    assert!(
        job.priority < 0,
        "admission analyses jump the queue: {job:?}"
    );
    (
        job.payload["reference"].as_str().unwrap().to_owned(),
        platform,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_pinned_by_digest_is_admitted_once_each_platform_is_analyzed() {
    let fleet = Fleet::direct(&[]).await;
    let (_api, hook) = core(&fleet, &[&registry()]);
    let _worker = fleet.worker("w1", &fleet.spec());
    let (tag, index, amd, arm) = push_multi_arch("pinned").await;
    let pinned = format!("{}@{index}", repository(&tag));

    // Never seen: denied, and each platform queued as a job of its own, for its platform.
    let r = hook.admit(&pod_review("p1", "shop", &pinned)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = message(&r);
    for (platform, built) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        assert!(
            msg.contains(&format!(
                "for platform {platform} ({})",
                built.manifest_digest()
            )),
            "{msg}"
        );
    }
    let manifests: Vec<String> = [&amd, &arm]
        .iter()
        .map(|i| format!("{}@{}", repository(&tag), i.manifest_digest()))
        .collect();
    for (manifest, platform) in manifests.iter().zip(["linux/amd64", "linux/arm64"]) {
        let (reference, asked) = job_of(&fleet, manifest).await;
        assert_eq!(reference, pinned, "the job fetches the index");
        assert_eq!(asked.as_deref(), Some(platform));
    }
    fleet.wait_analyzed(&manifests, WAIT).await;

    // The stored images know the index they were picked from, and their platform.
    for (built, platform) in [(&amd, "linux/amd64"), (&arm, "linux/arm64")] {
        let stored = fleet
            .db
            .store
            .image(&built.manifest_digest())
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(stored.index_digest.as_deref(), Some(index.as_str()));
        assert_eq!(stored.platform, platform);
    }
    // Admitted now: the index digest is not "never analyzed" for ever.
    let r = hook.admit(&pod_review("p2", "shop", &pinned)).await;
    assert_eq!(r["allowed"], true, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_of_an_index_is_judged_on_arm64_too() {
    let fleet = Fleet::direct(&[]).await;
    let (api, hook) = core(&fleet, &[&registry()]);
    let _worker = fleet.worker("w1", &fleet.spec());
    let (tag, index, _amd, arm) = push_multi_arch("tagged").await;

    // Submitted by tag: the worker analyzes its own platform (linux/amd64) only.
    fleet.submit(std::slice::from_ref(&tag), 3).await;
    fleet.wait_analyzed(std::slice::from_ref(&tag), WAIT).await;
    let r = hook.admit(&pod_review("t1", "shop", &tag)).await;
    assert_eq!(r["allowed"], false, "arm64 is not analyzed: {r}");
    let msg = message(&r);
    assert!(msg.contains("for platform linux/arm64"), "{msg}");
    assert!(!msg.contains("linux/amd64"), "amd64 is analyzed: {msg}");
    let arm_ref = format!("{}@{}", repository(&tag), arm.manifest_digest());
    let (reference, platform) = job_of(&fleet, &arm_ref).await;
    assert_eq!(reference, format!("{}@{index}", repository(&tag)));
    assert_eq!(platform.as_deref(), Some("linux/arm64"));
    fleet
        .wait_analyzed(std::slice::from_ref(&arm_ref), WAIT)
        .await;

    // A bundle that STOPs on a package only the arm64 image carries: the index is denied, naming arm64.
    let stop = serde_json::json!({
        "id": "no-bash", "version": "1_0", "name": "no-bash",
        "policies": [{"id": "p", "version": "1_0", "rules": [
            {"id": "r", "gate": "packages", "trigger": "blacklist", "action": "STOP",
             "params": [{"name": "name", "value": "bash"}]}]}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    });
    let (status, body) = api.client().post("/v1/policies?active=true", stop).await;
    assert!(status.is_success(), "{status} {body}");
    let r = hook.admit(&pod_review("t2", "shop", &tag)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let msg = message(&r);
    assert!(
        msg.contains(&format!(
            "for platform linux/arm64 ({})",
            arm.manifest_digest()
        )) && msg.contains("packages.blacklist"),
        "{msg}"
    );
    assert!(!msg.contains("linux/amd64"), "amd64 passes: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_that_refuses_fathom_is_a_denial_and_an_unreachable_one_the_failure_policy() {
    // 401: a registry with htpasswd auth fathom has no credentials for.
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "owner", "s3cret"])
        .output()
        .expect("htpasswd (apt-get install apache2-utils; see scripts/deps.d/20-analyzer.sh)");
    assert!(out.status.success());
    let private = fathom_testkit::registry::Registry::start_private(Some(
        &String::from_utf8_lossy(&out.stdout),
    ))
    .unwrap();
    let secret = image("alpine-apk", "linux/amd64", "private");
    let private_tag = Pusher::new(&private.addr, Some(("owner", "s3cret")))
        .push("team/app", "v1", &secret)
        .await
        .unwrap();
    let private_pinned = format!("{}/team/app@{}", private.addr, secret.manifest_digest());
    // 403 and 503: the fault proxy in front of the test registry.
    let fleet = Fleet::new(&["alpine-apk"]).await;
    let (api, hook) = core(&fleet, &[&fleet.host, &private.addr]);

    // Under the default failure_policy (allow), a refusal is still a denial, with the registry's answer.
    for (uid, image) in [("a1", &private_tag), ("a2", &private_pinned)] {
        let r = hook.admit(&pod_review(uid, "shop", image)).await;
        assert_eq!(r["allowed"], false, "{image}: {r}");
        assert_eq!(r["auditAnnotations"]["reason"], "registry_refused", "{r}");
        assert!(message(&r).contains("HTTP 401"), "{r}");
        assert!(!message(&r).contains("failure_policy"), "{r}");
    }
    fleet.proxy.rules.forbid.store(true, Ordering::SeqCst);
    let r = hook.admit(&pod_review("b1", "shop", &fleet.refs[0])).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains("HTTP 403: DENIED: requested access to the resource is denied"),
        "{r}"
    );
    fleet.proxy.rules.forbid.store(false, Ordering::SeqCst);

    // Down (503) is fathom not being able to decide: the failure policy answers.
    fleet.proxy.rules.down.store(true, Ordering::SeqCst);
    let r = hook.admit(&pod_review("c1", "shop", &fleet.refs[0])).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        message(&r).contains("admitted by services.webhook.failure_policy"),
        "{r}"
    );
    fleet.proxy.rules.down.store(false, Ordering::SeqCst);

    // A host that does not resolve is reported as that, not as a plain-HTTP problem.
    let r = hook
        .admit(&pod_review("d1", "shop", "fathom-registry.invalid/app:1"))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let msg = message(&r);
    assert!(
        msg.contains("name resolution failed for host \"fathom-registry.invalid\""),
        "{msg}"
    );
    assert!(!msg.contains("--insecure-registry"), "{msg}");

    let (status, text) = http_get(&api.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    let series = "fathom_webhook_decisions_total{mode=\"policy\",reason=\"registry_refused\",\
                  result=\"denied\"}";
    assert_eq!(metric(&text, series), 3.0, "{text}");
    // Nothing was queued for images fathom cannot fetch.
    let queued = fleet.db.queue.stats().await.unwrap();
    assert_eq!(queued.queued() + queued.running, 0, "{queued:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_pinned_by_digest_whose_platforms_were_analyzed_on_their_own_is_judged() {
    // The platform manifests analyzed by their own digests (no index recorded; as after an analysis
    // from another index that shares them): the index pinned by digest is judged on them, not refused
    // by the policy engine as "another image" and admitted by failure policy.
    let fleet = Fleet::direct(&[]).await;
    let (_api, hook) = core(&fleet, &[&registry()]);
    let _worker = fleet.worker("w1", &fleet.spec());
    let (tag, index, amd, arm) = push_multi_arch("own").await;
    let manifests: Vec<String> = [&amd, &arm]
        .iter()
        .map(|i| format!("{}@{}", repository(&tag), i.manifest_digest()))
        .collect();
    fleet.submit(&manifests, 3).await;
    fleet.wait_analyzed(&manifests, WAIT).await;
    let pinned = format!("{}@{index}", repository(&tag));
    let r = hook.admit(&pod_review("o1", "shop", &pinned)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_ne!(r["auditAnnotations"]["reason"], "unavailable", "{r}");
    assert!(!message(&r).contains("failure_policy"), "{r}");
    assert!(r["auditAnnotations"]["unchecked-images"].is_null(), "{r}");
}
