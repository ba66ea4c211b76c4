//! deploy/ stays deployable: every kustomize overlay renders, the rendered objects validate against the
//! Kubernetes schemas offline, and the Prometheus rules load.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a tool, failing the test with a one-line install hint when it is missing.
fn run(program: &str, args: &[&str], install: &str) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{program} not runnable ({e}): {install}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn overlays() -> Vec<PathBuf> {
    let mut dirs = vec![repo().join("deploy/base")];
    let mut extra: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/overlays"))
        .expect("deploy/overlays")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("kustomization.yaml").is_file())
        .collect();
    extra.sort();
    dirs.extend(extra);
    dirs
}

fn render(dir: &Path) -> String {
    run(
        "kubectl",
        &["kustomize", dir.to_str().expect("utf-8 path")],
        "install kubectl (it renders the kustomize overlays)",
    )
}

#[test]
fn every_overlay_renders_and_validates_against_kubernetes_schemas() {
    let scratch = std::env::temp_dir().join(format!("fathom-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch dir");
    for dir in overlays() {
        let rendered = render(&dir);
        assert!(
            rendered.contains("kind: Deployment"),
            "{} renders Deployments",
            dir.display()
        );
        let file = scratch.join(format!(
            "{}.yaml",
            dir.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("overlay")
        ));
        std::fs::write(&file, &rendered).expect("write rendered manifests");
        run(
            "kubernetes-validate",
            &["--strict", "--quiet", file.to_str().expect("utf-8 path")],
            "pip install kubernetes-validate (scripts/deps.d/60-deploy.sh does)",
        );
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn analyzer_replicas_belong_to_the_autoscaler_unless_pinned_by_the_manual_overlay() {
    let base = render(&repo().join("deploy/base"));
    let analyzer = base
        .split("\n---\n")
        .find(|doc| doc.contains("kind: Deployment") && doc.contains("name: fathom-analyzer\n"))
        .expect("analyzer Deployment");
    assert!(
        !analyzer.contains("\n  replicas:"),
        "the base must not set analyzer replicas (the autoscaler owns them)"
    );
    let manual = render(&repo().join("deploy/overlays/manual-replicas"));
    assert!(
        !manual.contains("name: fathom-autoscaler\n"),
        "manual overlay drops the autoscaler"
    );
}

#[test]
fn prometheus_rules_load() {
    let out = run(
        "promtool",
        &["check", "rules", "deploy/prometheus/rules.yaml"],
        "apt-get install prometheus (for promtool)",
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn grafana_dashboard_is_valid_json_with_panels() {
    let text =
        std::fs::read_to_string(repo().join("deploy/grafana/fathom.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(targets
            .iter()
            .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("fathom_"))));
    }
}
