//! The admission gate's own defences in a real `fathom run` (API + webhook) on a throwaway Postgres, over
//! real HTTPS, about images in the real test registry: `pin_digests` pins admitted tags to the digest the
//! registry serves, a namespace's analyses are limited by `max_enqueues_per_minute` with nothing queued
//! past it, and a breakglass selector on a workload's own labels stops the core at startup.

mod support;

use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use support::api::Api;
use support::webhook::{message, review, workload, Hook};
use support::{fathom, free_addr, metric, webhook_certs, Fleet};

/// The digest the registry serves for `reference` (`host/repo:tag`), as a kubelet would pull it.
async fn registry_digest(reference: &str) -> String {
    let (host, rest) = reference.split_once('/').unwrap();
    let (repo, tag) = rest.rsplit_once(':').unwrap();
    let r = reqwest::Client::new()
        .head(format!("http://{host}/v2/{repo}/manifests/{tag}"))
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{reference}: {}", r.status());
    r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// The object after applying the answer's JSON patch as the API server does.
fn patched(response: &Value, object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(patch) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch", "{response}");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
        json_patch::patch(&mut object, &patch).unwrap();
    }
    object
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_digests_are_the_registrys_and_a_namespace_cannot_flood_the_queue() {
    let fleet = Fleet::direct(&["alpine-apk", "rocky-rpm"]).await;
    let tls = fleet.path().join("tls");
    webhook_certs(&tls);
    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // No feed here: the default bundle's vulnerability STOP rule cannot be evaluated; `warn` admits
    // (tests/webhook_reference.rs covers the default, `stop`).
    let extra = format!(
        "  webhook:\n    enabled: true\n    address: '{hook_addr}'\n    \
         cert_file: '{}'\n    key_file: '{}'\n    timeout: 5s\n    pin_digests: true\n    \
         max_enqueues_per_minute: 1\n    unevaluable: warn\n\
         registry:\n  insecure: ['{}']\n  timeout: 10s\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
        fleet.host,
    );
    let api = Api::start(fleet.path(), fleet.url(), &extra);
    let hook = Hook::new(&tls, port);
    let (alpine, rocky) = (fleet.refs[0].clone(), fleet.refs[1].clone());
    let pinned =
        |i: usize, r: &str| format!("{}@{}", r.rsplit_once(':').unwrap().0, fleet.digest(i));

    // Two unanalyzed images in one namespace, limit 1 a minute: one analysis queued, the other image
    // denied with the limit named and nothing queued for it.
    let flood = workload("Pod", "flood", &[("a", &alpine), ("b", &rocky)], &[]);
    let r = hook.admit(&review("u-flood", &flood, false)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let why = message(&r);
    assert!(
        why.contains("namespace \"flood\" reached its enqueue limit")
            && why.contains("max_enqueues_per_minute: 1"),
        "{r}"
    );
    let mut queued = 0;
    for (i, r) in [(0, &alpine), (1, &rocky)] {
        queued += fleet
            .db
            .store
            .status(Some(&pinned(i, r)), 5)
            .await
            .unwrap()
            .len();
    }
    assert_eq!(queued, 1, "exactly one analysis queued");
    // Another namespace has its own budget.
    let other = workload("Pod", "other", &[("b", &rocky), ("a", &alpine)], &[]);
    let r = hook.admit(&review("u-other", &other, false)).await;
    assert!(message(&r).contains("queued at high priority"), "{r}");
    let text = support::http_get(&api.addr, "/metrics").unwrap().1;
    assert_eq!(
        metric(&text, "fathom_webhook_enqueues_limited_total"),
        1.0,
        "{text}"
    );

    // Analyzed (by the worker): /mutate admits and pins each tag to the digest the registry serves.
    let _worker = fleet.worker("w1", &fleet.spec());
    let both = [pinned(0, &alpine), pinned(1, &rocky)];
    fleet.submit(&both, 3).await;
    fleet.wait_analyzed(&both, Duration::from_secs(180)).await;
    let deployment = workload(
        "Deployment",
        "shop",
        &[("web", &alpine)],
        &[("init", &rocky)],
    );
    let r = hook
        .post("/mutate", &review("u-pin", &deployment, false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let pinned_object = patched(&r, &deployment);
    let spec = &pinned_object["spec"]["template"]["spec"];
    for (image, reference) in [
        (&spec["containers"][0]["image"], &alpine),
        (&spec["initContainers"][0]["image"], &rocky),
    ] {
        let want = format!("{reference}@{}", registry_digest(reference).await);
        assert_eq!(image.as_str().unwrap(), want, "{r}");
    }
    // The validating webhook (called after the mutating one) admits the pinned object as is.
    let r = hook.admit(&review("u-pinned", &pinned_object, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    let r = hook
        .post("/mutate", &review("u-again", &pinned_object, false))
        .await;
    assert!(
        r.get("patch").is_none(),
        "pinned images are left alone: {r}"
    );
    drop(api);
}

#[test]
fn a_breakglass_selector_on_object_labels_stops_the_core_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.yaml");
    let selector = "selectors: [{namespace: '^shop$', mode: analysis}, {object_labels: {fathom.dev/breakglass: 'true'}, \
                    mode: breakglass}]";
    std::fs::write(
        &config,
        format!("services: {{webhook: {{enabled: true, {selector}}}}}"),
    )
    .unwrap();
    let out = fathom()
        .args(["config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services.webhook.selectors[1].object_labels")
            && err.contains("allow_object_label_breakglass"),
        "{err}"
    );
    // The operator who means it says so.
    std::fs::write(
        &config,
        format!(
            "services: {{webhook: {{enabled: true, allow_object_label_breakglass: true, {selector}}}}}"
        ),
    )
    .unwrap();
    let out = fathom()
        .args(["config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
