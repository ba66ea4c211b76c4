//! A deleted image's cached admission verdicts are never served again: in a real `fathom run` (API +
//! webhook) over real HTTPS, with real AdmissionReview documents about an image a real worker analyzed,
//! an admitted image deleted through the API is judged as never analyzed at its next admission — by
//! tag, by digest and under another repository's name, in `policy` and `analysis` mode — past every
//! cache that held its answer: the webhook's verdict cache, its "seen analyzed" shortcut and the policy
//! engine's evaluation cache.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use support::api::Api;
use support::forget::deleted_events;
use support::webhook::{message, review, workload, Hook};
use support::{free_addr, http_get, metric, webhook_certs, Fleet};

/// `fathom_webhook_decisions_total` of (`result`, `mode`, `reason`) on the core's `/metrics`.
fn decided(api: &Api, result: &str, mode: &str, reason: &str) -> f64 {
    let text = http_get(&api.addr, "/metrics").unwrap().1;
    metric(
        &text,
        &format!(
            "fathom_webhook_decisions_total{{mode=\"{mode}\",reason=\"{reason}\",result=\"{result}\"}}"
        ),
    )
}

/// The admission of a Pod in `ns` running `image`.
async fn admit(hook: &Hook, uid: &str, ns: &str, image: &str, dry_run: bool) -> Value {
    let pod = workload("Pod", ns, &[("app", image)], &[]);
    hook.admit(&review(uid, &pod, dry_run)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_image_is_judged_unanalyzed_at_once_by_tag_digest_and_another_name_in_every_mode()
{
    let fleet = Fleet::direct(&["alpine-apk"]).await;
    let tag = fleet.refs[0].clone();
    let digest = fleet.digest(0);
    let repo = tag.rsplit_once(':').unwrap().0.to_string();
    // The same image under another repository's name, never submitted.
    let other = fleet.push("other-name", &fleet.images[0].1).await;
    let other_repo = other.rsplit_once(':').unwrap().0.to_string();
    let spellings = [
        tag.clone(),
        format!("{repo}@{digest}"),
        other.clone(),
        format!("{other_repo}@{digest}"),
    ];

    let tls = fleet.path().join("tls");
    webhook_certs(&tls);
    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // Every cache on and long-lived: only invalidation can make the next answer differ. No feed here,
    // so the default bundle's vulnerability STOP is unevaluable: `warn` admits.
    let extra = format!(
        "  policy_engine:\n    cache: true\n    cache_ttl: 1h\n  webhook:\n    enabled: true\n    \
         address: '{hook_addr}'\n    cert_file: '{}'\n    key_file: '{}'\n    timeout: 5s\n    \
         cache_ttl: 1h\n    unevaluable: warn\n    selectors:\n      \
         - {{name: lax, namespace: '^lax$', mode: analysis}}\n\
         registry:\n  insecure: ['{}']\n  timeout: 10s\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
        fleet.host,
    );
    let api = Api::start(fleet.path(), fleet.url(), &extra);
    let client = api.client();
    let hook = Hook::new(&tls, port);
    {
        let _worker = fleet.worker("w1", &fleet.spec());
        fleet.submit(std::slice::from_ref(&tag), 3).await;
        fleet
            .wait_analyzed(std::slice::from_ref(&tag), Duration::from_secs(120))
            .await;
    }

    // Admitted, twice each (the second answer comes from the caches), in both modes; the check route
    // answers from the policy engine's cache the second time.
    for round in 0..2 {
        for (i, image) in spellings.iter().enumerate() {
            for ns in ["shop", "lax"] {
                let r = admit(&hook, &format!("u-{round}-{i}-{ns}"), ns, image, false).await;
                assert_eq!(r["allowed"], true, "{ns} {image}: {r}");
            }
        }
    }
    let allowed =
        decided(&api, "allowed", "policy", "go") + decided(&api, "allowed", "policy", "warn");
    assert!(allowed >= 8.0, "policy-mode admissions counted: {allowed}");
    let check = format!("/v1/images/{digest}/check?tag={other}");
    for _ in 0..2 {
        let (status, e) = client.get(&check).await;
        assert_eq!(status, StatusCode::OK, "{e}");
    }
    let hit = client
        .request(reqwest::Method::GET, &check)
        .send()
        .await
        .unwrap();
    assert_eq!(hit.headers()["fathom-cache"], "hit");

    // Deleted through the API (forced: the admissions above recorded it running).
    let (status, answer) = client
        .delete(&format!("/v1/images/{digest}?force=true"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    assert_eq!(
        deleted_events(&support::forget::pool(fleet.url()).await, &digest).await,
        1
    );

    // Every spelling, in both modes, is now an image fathom never analyzed (dry runs: nothing queued).
    let before = (
        decided(&api, "denied", "policy", "unanalyzed"),
        decided(&api, "denied", "analysis", "unanalyzed"),
    );
    for (i, image) in spellings.iter().enumerate() {
        for ns in ["shop", "lax"] {
            let r = admit(&hook, &format!("u-gone-{i}-{ns}"), ns, image, true).await;
            assert_eq!(r["allowed"], false, "{ns} {image} served from a cache: {r}");
            assert!(
                message(&r).contains("has not been analyzed by fathom yet"),
                "{ns} {image}: {r}"
            );
        }
    }
    assert_eq!(
        (
            decided(&api, "denied", "policy", "unanalyzed") - before.0,
            decided(&api, "denied", "analysis", "unanalyzed") - before.1,
        ),
        (4.0, 4.0)
    );
    // The policy engine forgot it too, under any reference.
    let (status, e) = client.get(&check).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");

    // A real admission queues it again, and once analyzed it is admitted again.
    let r = admit(&hook, "u-requeue", "shop", &tag, false).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(message(&r).contains("queued"), "{r}");
    let _worker = fleet.worker("w2", &fleet.spec());
    let pinned = format!("{repo}@{digest}");
    fleet
        .wait_analyzed(std::slice::from_ref(&pinned), Duration::from_secs(120))
        .await;
    for (i, image) in spellings.iter().enumerate() {
        let r = admit(&hook, &format!("u-back-{i}"), "shop", image, true).await;
        assert_eq!(r["allowed"], true, "{image}: {r}");
    }
}
