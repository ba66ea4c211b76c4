//! The webhook's optional overlays: deploy/overlays/webhook-networkpolicy lets only the API server's
//! range reach the webhook port of the core pods (and keeps their API port open), and
//! deploy/overlays/pin-digests adds the MutatingWebhookConfiguration calling `/mutate` with the
//! validating one's Service, rules and exemptions, and turns `services.webhook.pin_digests` on. The
//! shipped core configuration suggests no breakglass a workload could grant itself. deploy/overlays/
//! inventory-sync grants the core `list pods` (the base does not) and turns the Pod lister on. (Rendering and
//! schema validation of every overlay is tests/deploy.rs.)

use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rendered objects of `dir`.
fn objects(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(repo())
        .output()
        .expect("install kubectl (it renders the kustomize overlays)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_yaml::Deserializer::from_slice(&out.stdout)
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The effective core configuration (`fathom config`) with the Deployment's token and `env`.
fn effective_core(env: &[(&str, &str)]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .arg("config")
        .arg("--config")
        .arg(repo().join("deploy/base/core-config.yaml"))
        .env_clear()
        .env("FATHOM_SERVICES_API_TOKENS", "0123456789abcdef0123")
        .envs(env.iter().copied())
        .output()
        .expect("run fathom config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fathom config prints JSON")
}

/// The core container's port named `name`.
fn core_port(objects: &[Value], name: &str) -> u64 {
    let core = &find(objects, "Deployment", "fathom-core")["spec"]["template"]["spec"];
    core["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("the core has no port {name}"))
}

#[test]
fn only_the_api_servers_range_reaches_the_webhook_port() {
    let objects = objects("deploy/overlays/webhook-networkpolicy");
    let policy = find(&objects, "NetworkPolicy", "fathom-webhook-ingress");
    // It selects the core pods ...
    let pods =
        &find(&objects, "Deployment", "fathom-core")["spec"]["template"]["metadata"]["labels"];
    let wanted = policy["spec"]["podSelector"]["matchLabels"]
        .as_mapping()
        .unwrap();
    assert!(!wanted.is_empty());
    for (k, v) in wanted {
        assert_eq!(&pods[k], v, "the podSelector matches the core pods");
    }
    // ... on the port the configuration serves the webhook on ...
    let config = effective_core(&[]);
    let address = config["services"]["webhook"]["address"].as_str().unwrap();
    let port: u64 = address.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(core_port(&objects, "webhook"), port);
    let rules = policy["spec"]["ingress"].as_sequence().unwrap();
    let allows = |port: &str| -> Vec<&Value> {
        rules
            .iter()
            .filter(|r| {
                r["ports"]
                    .as_sequence()
                    .is_none_or(|ps| ps.iter().any(|p| p["port"] == port))
            })
            .collect()
    };
    // ... from one IP block only (no rule opens it to every source) ...
    let webhook = allows("webhook");
    assert_eq!(webhook.len(), 1, "{webhook:?}");
    let from = webhook[0]["from"].as_sequence().expect("a source");
    assert_eq!(from.len(), 1);
    assert!(from[0]["ipBlock"]["cidr"].is_string(), "{from:?}");
    assert!(from[0]["podSelector"].is_null() && from[0]["namespaceSelector"].is_null());
    // ... while the API port stays reachable as without the policy.
    assert_eq!(core_port(&objects, "http"), 8228);
    let api = allows("http");
    assert!(api.iter().any(|r| r["from"].is_null()), "{api:?}");
}

#[test]
fn the_pin_overlay_mutates_with_the_validating_webhooks_service_rules_and_exemptions() {
    let objects = objects("deploy/overlays/pin-digests");
    let vwc = &find(
        &objects,
        "ValidatingWebhookConfiguration",
        "fathom-image-admission",
    )["webhooks"][0];
    let mwc = &find(
        &objects,
        "MutatingWebhookConfiguration",
        "fathom-image-pinning",
    )["webhooks"][0];
    assert_eq!(mwc["clientConfig"]["service"]["path"], "/mutate");
    for key in ["name", "namespace", "port"] {
        assert_eq!(
            mwc["clientConfig"]["service"][key], vwc["clientConfig"]["service"][key],
            "{key}"
        );
    }
    for key in [
        "rules",
        "namespaceSelector",
        "sideEffects",
        "admissionReviewVersions",
        "matchPolicy",
    ] {
        assert_eq!(
            mwc[key], vwc[key],
            "{key} differs from the validating webhook's"
        );
    }
    assert_eq!(mwc["reinvocationPolicy"], "IfNeeded");
    // The overlay turns pin_digests on through the core's environment, and the core reads it.
    let core = &find(&objects, "Deployment", "fathom-core")["spec"]["template"]["spec"];
    let env = core["containers"][0]["env"].as_sequence().unwrap();
    let set = env
        .iter()
        .find(|e| e["name"] == "FATHOM_SERVICES_WEBHOOK_PIN_DIGESTS")
        .expect("the overlay sets pin_digests");
    let value = set["value"].as_str().unwrap();
    let config = effective_core(&[("FATHOM_SERVICES_WEBHOOK_PIN_DIGESTS", value)]);
    assert_eq!(config["services"]["webhook"]["pin_digests"], true);
    assert_eq!(
        effective_core(&[])["services"]["webhook"]["pin_digests"],
        false
    );
}

#[test]
fn the_shipped_core_config_suggests_no_self_granted_breakglass() {
    let text = std::fs::read_to_string(repo().join("deploy/base/core-config.yaml")).unwrap();
    let suggestion = text
        .lines()
        .filter(|l| l.contains("mode: breakglass") && l.contains("object_labels"))
        .collect::<Vec<_>>();
    assert!(suggestion.is_empty(), "{suggestion:?}");
    assert!(
        text.contains("namespace_labels: {fathom.dev/breakglass"),
        "the admin-controlled way"
    );
}

/// The rules of every ClusterRole bound to the core's service account in `objects`.
fn core_cluster_rules(objects: &[Value]) -> Vec<Value> {
    let core = &find(objects, "Deployment", "fathom-core")["spec"]["template"]["spec"];
    let account = core["serviceAccountName"].as_str().unwrap();
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRoleBinding")
        .filter(|b| {
            b["subjects"].as_sequence().is_some_and(|s| {
                s.iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"] == account
                        && s["namespace"] == "fathom"
                })
            })
        })
        .flat_map(|b| {
            let role = b["roleRef"]["name"].as_str().unwrap();
            find(objects, "ClusterRole", role)["rules"]
                .as_sequence()
                .unwrap()
                .clone()
        })
        .collect()
}

/// Whether `rules` allow `verb` on core-group `resource`.
fn allows(rules: &[Value], resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        let has = |key: &str, want: &str| {
            r[key]
                .as_sequence()
                .is_some_and(|l| l.iter().any(|v| v == want || v == "*"))
        };
        has("apiGroups", "") && has("resources", resource) && has("verbs", verb)
    })
}

#[test]
fn the_inventory_sync_overlay_lets_the_core_list_pods_and_turns_the_sync_on() {
    let base = core_cluster_rules(&objects("deploy/base"));
    assert!(
        !allows(&base, "pods", "list"),
        "the base grants the core no pods: {base:?}"
    );
    let objects = objects("deploy/overlays/inventory-sync");
    let rules = core_cluster_rules(&objects);
    assert!(allows(&rules, "pods", "list"), "{rules:?}");
    // List only: the lister never gets, watches or changes a Pod.
    let pods = &find(&objects, "ClusterRole", "fathom-core-pods")["rules"];
    assert_eq!(pods[0]["verbs"], serde_yaml::to_value(["list"]).unwrap());
    // The overlay turns inventory_sync on through the core's environment, and the core reads it.
    let core = &find(&objects, "Deployment", "fathom-core")["spec"]["template"]["spec"];
    let env = core["containers"][0]["env"].as_sequence().unwrap();
    let set = env
        .iter()
        .find(|e| e["name"] == "FATHOM_SERVICES_WEBHOOK_INVENTORY_SYNC")
        .expect("the overlay sets inventory_sync");
    let value = set["value"].as_str().unwrap();
    let config = effective_core(&[("FATHOM_SERVICES_WEBHOOK_INVENTORY_SYNC", value)]);
    assert_eq!(config["services"]["webhook"]["inventory_sync"], true);
    assert_eq!(
        effective_core(&[])["services"]["webhook"]["inventory_sync"],
        false
    );
}
