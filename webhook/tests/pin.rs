//! `services.webhook.pin_digests`: `POST /mutate` over real HTTPS answers real AdmissionReviews with a
//! JSON patch that, applied as the API server applies it, pins every checked tag in every container list
//! of every kind to the digest checked; digest references and denied objects are left alone.

mod support;

use std::sync::Arc;

use base64::Engine;
use fathom_webhook::{Finding, Outcome, Verdict};
use serde_json::{json, Value};
use support::docs::{pod_spec, review, workload, KINDS};
use support::{client, digest, start, FakeOracle, Hook, HOST};

const WEB: &str = "registry.test/shop/web:1.4";
const SETUP: &str = "registry.test/tools/setup:1.2";

/// POSTs `doc` to /mutate; the response.
async fn mutate(hook: &Hook, doc: &Value) -> Value {
    let r = client(&hook.certs.ca_pem, hook.port)
        .post(format!("https://{HOST}:{}/mutate", hook.port))
        .json(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["response"]["uid"], doc["request"]["uid"], "{v}");
    v["response"].clone()
}

/// The object after the API server applies the answer's patch (unchanged without one).
fn patched(response: &Value, object: &Value) -> Value {
    let mut object = object.clone();
    let Some(patch) = response["patch"].as_str() else {
        assert!(response.get("patchType").is_none(), "{response}");
        return object;
    };
    assert_eq!(response["patchType"], "JSONPatch", "{response}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    json_patch::patch(&mut object, &patch).unwrap();
    object
}

/// Every `image` of the object's containers.
fn images_of(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("image", Value::String(s)) => out.push(s.clone()),
                    _ => images_of(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| images_of(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn admitted_tags_are_pinned_to_the_checked_digest_in_every_kind_and_list() {
    let oracle = Arc::new(FakeOracle::default());
    for (reference, name) in [(WEB, "web"), (SETUP, "setup")] {
        oracle.tag(reference, &digest(name));
        oracle.analyzed(&digest(name));
    }
    let pinned_sidecar = format!("registry.test/shop/side@{}", digest("side"));
    oracle.analyzed(&digest("side"));
    let hook = start(oracle.clone(), |c| c.pin_digests = true).await;
    for kind in KINDS {
        let spec = pod_spec(
            &[("web", WEB), ("side", &pinned_sidecar), ("web2", WEB)],
            &[("setup", SETUP)],
        );
        let object = workload(kind, "app", "shop", json!({}), spec);
        let r = mutate(&hook, &review(kind, "CREATE", &object, None, false)).await;
        assert_eq!(r["allowed"], true, "{kind}: {r}");
        let mut got = Vec::new();
        images_of(&patched(&r, &object), &mut got);
        let web = format!("{WEB}@{}", digest("web"));
        let setup = format!("{SETUP}@{}", digest("setup"));
        got.sort();
        let mut want = [setup, web.clone(), pinned_sidecar.clone(), web];
        want.sort();
        assert_eq!(got, want, "{kind}");
    }
    assert_eq!(
        hook.counter("fathom_webhook_pinned_images_total", &[]),
        24.0
    );
    hook.stop().await;
}

#[tokio::test]
async fn denied_objects_are_not_patched_and_without_pin_digests_there_is_no_mutate() {
    let oracle = Arc::new(FakeOracle::default());
    oracle.tag(WEB, &digest("web"));
    oracle.analyzed(&digest("web"));
    oracle.tag(SETUP, &digest("setup"));
    oracle.verdicts.lock().unwrap().insert(
        digest("setup"),
        Verdict {
            outcome: Outcome::Stop,
            bundle: "strict".into(),
            unmapped: false,
            findings: vec![Finding {
                trigger: "packages.blacklist".into(),
                outcome: Outcome::Stop,
                message: "musl".into(),
                unevaluable: false,
            }],
        },
    );
    oracle.analyzed(&digest("setup"));
    let hook = start(oracle.clone(), |c| c.pin_digests = true).await;
    let object = workload(
        "Pod",
        "app",
        "shop",
        json!({}),
        pod_spec(&[("web", WEB), ("setup", SETUP)], &[]),
    );
    let r = mutate(&hook, &review("stop", "CREATE", &object, None, false)).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        r.get("patch").is_none(),
        "a denied object is not patched: {r}"
    );
    // Unanalyzed (queued now): denied, not patched.
    let fresh = "registry.test/shop/new:1";
    oracle.tag(fresh, &digest("new"));
    let object = workload(
        "Pod",
        "app",
        "shop",
        json!({}),
        pod_spec(&[("n", fresh)], &[]),
    );
    let r = mutate(&hook, &review("new", "CREATE", &object, None, false)).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(r.get("patch").is_none(), "{r}");
    // Only digest references: admitted, nothing to patch.
    let by_digest = format!("registry.test/shop/web@{}", digest("web"));
    let object = workload(
        "Pod",
        "app",
        "shop",
        json!({}),
        pod_spec(&[("w", &by_digest)], &[]),
    );
    let r = mutate(&hook, &review("d", "CREATE", &object, None, false)).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(patched(&r, &object), object);
    hook.stop().await;

    let hook = start(oracle, |_| {}).await;
    let status = client(&hook.certs.ca_pem, hook.port)
        .post(format!("https://{HOST}:{}/mutate", hook.port))
        .json(&review("off", "CREATE", &object, None, false))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404, "/mutate is served only with pin_digests");
    hook.stop().await;
}
