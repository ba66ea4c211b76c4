//! `services.webhook.stale_if_error` in a real `fathom run` over real HTTPS, on a throwaway Postgres
//! cluster the test stops: an image the webhook checked minutes ago is still answered on that verdict
//! (with its age) instead of the failure policy, a STOP stays a denial, and `stale_if_error: 0s` leaves
//! the failure policy in charge.

mod support;

use std::path::Path;
use std::time::Duration;

use fathom_testkit::pg::{Durability, OwnedCluster};
use serde_json::Value;
use support::api::Api;
use support::webhook::{message, review, workload, Hook};
use support::{free_addr, http_get, metric, webhook_certs, Fleet};

/// A core with the webhook on `url` in `dir` (its own config and logs), namespace `strict` on the bundle
/// `no-musl`; `stale_if_error` as given (the default when `None`). No vulnerability feed here, so the
/// default bundle's vulnerability STOP cannot be evaluated: `unevaluable: warn`.
fn core(dir: &Path, url: &str, tls: &Path, registry: &str, stale: Option<&str>) -> (Api, Hook) {
    std::fs::create_dir_all(dir).unwrap();
    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let stale = stale.map_or(String::new(), |s| format!("    stale_if_error: {s}\n"));
    let extra = format!(
        "  webhook:\n    enabled: true\n    address: '{hook_addr}'\n    \
         cert_file: '{}'\n    key_file: '{}'\n{stale}    unevaluable: warn\n    selectors:\n      \
         - {{name: strict, namespace: '^strict$', mode: policy, bundle: no-musl}}\n\
         registry:\n  insecure: ['{registry}']\n  timeout: 10s\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
    );
    let api = Api::start(dir, url, &extra);
    (api, Hook::new(tls, port))
}

async fn admit(hook: &Hook, uid: &str, ns: &str, image: &str) -> Value {
    let pod = workload("Pod", ns, &[("app", image)], &[]);
    hook.admit(&review(uid, &pod, false)).await
}

fn decided(api: &Api, result: &str, reason: &str) -> f64 {
    let text = http_get(&api.addr, "/metrics").unwrap().1;
    metric(
        &text,
        &format!(
            "fathom_webhook_decisions_total{{mode=\"policy\",reason=\"{reason}\",result=\"{result}\"}}"
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_a_recent_verdict_answers_a_stop_still_denies_and_zero_turns_it_off() {
    let cluster = tokio::task::spawn_blocking(|| OwnedCluster::start(Durability::Throwaway))
        .await
        .unwrap()
        .expect("a cluster of our own to stop");
    let url = cluster.info().url("postgres");
    let fleet = Fleet::on_database(&url, &["alpine-apk", "rocky-rpm"]).await;
    fleet.cli(&["migrate"]).await;
    let (image, never_checked) = (fleet.refs[0].clone(), fleet.refs[1].clone());
    {
        let _worker = fleet.worker("w1", &fleet.spec());
        fleet.submit(std::slice::from_ref(&image), 3).await;
        fleet
            .wait_analyzed(std::slice::from_ref(&image), Duration::from_secs(180))
            .await;
    }
    let tls = fleet.path().join("tls");
    webhook_certs(&tls);
    // The bundle of namespace `strict` STOPs on a package the image carries.
    let no_musl = serde_json::json!({
        "id": "no-musl", "version": "1_0", "name": "no-musl",
        "policies": [{"id": "p", "version": "1_0", "rules": [
            {"id": "no-pkg", "gate": "packages", "trigger": "blacklist", "action": "STOP",
             "params": [{"name": "name", "value": "musl"}]}]}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    });
    // Stored (not activated) before the webhook cores start: a core refuses to start on a selector naming a
    // bundle it does not have.
    {
        let seed_dir = fleet.path().join("seed");
        std::fs::create_dir_all(&seed_dir).unwrap();
        let seed = Api::start(&seed_dir, &url, "");
        let (status, body) = seed.client().post("/v1/policies", no_musl).await;
        assert!(status.is_success(), "{status} {body}");
    }
    let (api, hook) = core(&fleet.path().join("a"), &url, &tls, &fleet.host, None);
    let (off_api, off) = core(&fleet.path().join("b"), &url, &tls, &fleet.host, Some("0s"));

    // Checked while the store answers: admitted (the default bundle WARNs) in `shop`, stopped in `strict`.
    for hook in [&hook, &off] {
        let r = admit(hook, "fresh", "shop", &image).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert_eq!(r["auditAnnotations"]["reason"], "warn", "{r}");
    }
    let r = admit(&hook, "fresh-strict", "strict", &image).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("no-musl"), "{r}");

    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop postgres");
        cluster
    })
    .await
    .unwrap();

    // Postgres is down: the verdict of moments ago answers, with its age, not the failure policy.
    let r = admit(&hook, "stale", "shop", &image).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["reason"], "stale", "{r}");
    let first = r["warnings"][0].as_str().unwrap_or_default();
    assert!(
        first.contains("admitted on fathom's warn verdict of ")
            && first.contains(" ago (services.webhook.stale_if_error)"),
        "{r}"
    );
    assert!(
        !r.to_string().contains("failure_policy"),
        "not by failure policy: {r}"
    );
    // The STOP kept is still a denial, whatever the failure policy (allow here).
    let r = admit(&hook, "stale-strict", "strict", &image).await;
    assert_eq!(r["allowed"], false, "{r}");
    let why = message(&r);
    assert!(
        why.contains("no-musl") && why.contains("fathom's stop verdict of "),
        "{r}"
    );
    // An image this process never decided on: the failure policy, as before.
    let r = admit(&hook, "never", "shop", &never_checked).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        message(&r).contains("services.webhook.failure_policy"),
        "{r}"
    );
    assert_ne!(r["auditAnnotations"]["reason"], "stale", "{r}");
    assert_eq!(decided(&api, "allowed", "stale"), 1.0);
    assert_eq!(decided(&api, "denied", "stale"), 1.0);

    // stale_if_error: 0s: the same image, checked by that process moments ago, goes to the failure policy.
    let r = admit(&off, "off", "shop", &image).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        message(&r).contains("services.webhook.failure_policy"),
        "{r}"
    );
    assert_ne!(r["auditAnnotations"]["reason"], "stale", "{r}");
    assert_eq!(decided(&off_api, "allowed", "stale"), 0.0);
}
