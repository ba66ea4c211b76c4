//! deploy/overlays/policy-engine: the engine's ConfigMap enables only the policy engine, on the port its
//! Deployment, probes, scrape annotation and Service use; the core's replaced ConfigMap is the base's plus
//! `services.api.policy_engine_url`, naming the engine's Service and port. (Rendering and schema
//! validation of every overlay is tests/deploy.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The effective configuration of `file` as `fathom config` prints it, with the Deployments' token env.
fn effective(file: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fathom"))
        .arg("config")
        .arg("--config")
        .arg(file)
        .env_clear()
        .env(
            "FATHOM_SERVICES_API_TOKENS",
            "0123456789abcdef0123,fedcba9876543210fedc",
        )
        .output()
        .expect("run fathom config");
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("fathom config prints JSON")
}

fn rendered() -> String {
    let out = Command::new("kubectl")
        .args(["kustomize", "deploy/overlays/policy-engine"])
        .current_dir(repo())
        .output()
        .expect("install kubectl (it renders the kustomize overlays)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn object<'a>(rendered: &'a str, kind: &str, name: &str) -> &'a str {
    rendered
        .split("\n---\n")
        .find(|doc| {
            doc.contains(&format!("kind: {kind}\n")) && doc.contains(&format!("\n  name: {name}\n"))
        })
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn the_engine_configmap_enables_only_the_engine_on_its_deployments_port() {
    let dir = repo().join("deploy/overlays/policy-engine");
    let config = effective(&dir.join("policy-engine-config.yaml"));
    let services = &config["services"];
    for off in ["api", "analyzer", "autoscaler", "feeds", "webhook"] {
        assert_eq!(services[off]["enabled"], false, "services.{off}.enabled");
    }
    assert_eq!(services["policy_engine"]["enabled"], true);
    let address = services["policy_engine"]["address"]
        .as_str()
        .expect("address");
    let port = address.rsplit_once(':').expect("HOST:PORT").1;
    let all = rendered();
    let deployment = object(&all, "Deployment", "fathom-policy-engine");
    assert!(
        deployment.contains(&format!("containerPort: {port}\n")),
        "{deployment}"
    );
    assert!(
        deployment.contains(&format!("prometheus.io/port: \"{port}\"")),
        "{deployment}"
    );
    assert!(deployment.contains("path: /readyz") && deployment.contains("path: /healthz"));
    assert!(
        deployment.contains("name: fathom-policy-engine-config-"),
        "{deployment}"
    );
    let service = object(&all, "Service", "fathom-policy-engine");
    assert!(service.contains(&format!("port: {port}\n")), "{service}");
}

#[test]
fn the_core_configmap_is_the_base_plus_the_engine_url() {
    let base = effective(&repo().join("deploy/base/core-config.yaml"));
    let mut overlay = effective(&repo().join("deploy/overlays/policy-engine/core-config.yaml"));
    let api = overlay["services"]["api"]
        .as_object_mut()
        .expect("services.api");
    let url = api
        .remove("policy_engine_url")
        .and_then(|u| u.as_str().map(str::to_string))
        .expect("services.api.policy_engine_url set");
    api.insert("policy_engine_url".into(), serde_json::Value::Null);
    let timeout = api.remove("policy_engine_timeout");
    api.insert(
        "policy_engine_timeout".into(),
        base["services"]["api"]["policy_engine_timeout"].clone(),
    );
    assert!(timeout.is_some());
    assert_eq!(
        overlay, base,
        "only services.api.policy_engine_* may differ"
    );
    let engine = effective(&repo().join("deploy/overlays/policy-engine/policy-engine-config.yaml"));
    let port = engine["services"]["policy_engine"]["address"]
        .as_str()
        .and_then(|a| a.rsplit_once(':'))
        .expect("engine address")
        .1
        .to_string();
    assert_eq!(url, format!("http://fathom-policy-engine:{port}"));
    // The core Deployment mounts the replaced ConfigMap.
    let all = rendered();
    let core = object(&all, "Deployment", "fathom-core");
    let config_map = all
        .split("\n---\n")
        .find(|d| d.contains("kind: ConfigMap\n") && d.contains("name: fathom-core-config-"))
        .expect("core ConfigMap");
    assert!(config_map.contains("policy_engine_url: http://fathom-policy-engine:"));
    let name = config_map
        .lines()
        .find_map(|l| l.trim().strip_prefix("name: fathom-core-config-"))
        .expect("generated name");
    assert!(
        core.contains(&format!("name: fathom-core-config-{name}")),
        "{core}"
    );
}
