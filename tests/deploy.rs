//! deploy/ stays deployable: every kustomize overlay renders, the rendered objects validate against the
//! Kubernetes schemas offline, the Prometheus rules load, and each role's ConfigMap is a valid fathom
//! configuration whose ports the Deployment's probes, scrape annotations and Service use.

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

/// The example scrape config gives every fathom pod the `pod` and `namespace` labels the per-pod alerts
/// name, and the rest of it (relabel rules, rule file) loads in promtool. Debian's promtool is built
/// without Kubernetes discovery, so the check runs on a copy whose discovery is a static target.
#[test]
fn prometheus_scrape_config_labels_pods_and_loads() {
    let dir = repo().join("deploy/prometheus");
    let text = std::fs::read_to_string(dir.join("prometheus.yaml")).expect("prometheus.yaml");
    let config: serde_json::Value = serde_yaml::from_str(&text).expect("prometheus.yaml is YAML");
    let job = &config["scrape_configs"][0];
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod", "{job}");
    let relabels = job["relabel_configs"].as_array().expect("relabel_configs");
    for (source, target) in [
        ("__meta_kubernetes_pod_name", "pod"),
        ("__meta_kubernetes_namespace", "namespace"),
    ] {
        assert!(
            relabels
                .iter()
                .any(|r| r["source_labels"][0] == source && r["target_label"] == target),
            "no relabel of {source} into {target}: {relabels:?}"
        );
    }
    assert_eq!(config["rule_files"][0], "rules.yaml");
    let scratch = tempfile::tempdir().expect("scratch dir");
    std::fs::copy(dir.join("rules.yaml"), scratch.path().join("rules.yaml")).expect("copy rules");
    let statics = text.replace(
        "kubernetes_sd_configs:\n      - role: pod\n        namespaces:\n          names: [fathom]",
        "static_configs:\n      - targets: ['127.0.0.1:8228']",
    );
    assert_ne!(statics, text, "the discovery block moved; update this test");
    let copy = scratch.path().join("prometheus.yaml");
    std::fs::write(&copy, statics).expect("write the copy");
    let out = run(
        "promtool",
        &["check", "config", copy.to_str().expect("utf-8 path")],
        "apt-get install prometheus (for promtool)",
    );
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");
}

/// Every scraped Deployment of every overlay gives its process POD_NAME from the downward API: the
/// `pod` label of fathom_build_info, which the per-pod alerts fall back on.
#[test]
fn every_scraped_pod_knows_its_name() {
    for dir in overlays() {
        for doc in render(&dir).split("\n---\n") {
            let object: serde_json::Value = serde_yaml::from_str(doc).expect("rendered YAML");
            let template = &object["spec"]["template"];
            if object["kind"] != "Deployment"
                || template["metadata"]["annotations"]["prometheus.io/scrape"] != "true"
            {
                continue;
            }
            let named = template["spec"]["containers"]
                .as_array()
                .expect("containers")
                .iter()
                .all(|c| {
                    c["env"].as_array().is_some_and(|env| {
                        env.iter().any(|e| {
                            e["name"] == "POD_NAME"
                                && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                        })
                    })
                });
            assert!(
                named,
                "{}: Deployment {} sets no POD_NAME from metadata.name",
                dir.display(),
                object["metadata"]["name"]
            );
        }
    }
}

#[test]
fn grafana_dashboard_is_valid_json_with_panels() {
    let text =
        std::fs::read_to_string(repo().join("deploy/grafana/fathom.json")).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(targets
            .iter()
            .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("fathom_"))));
    }
}

/// One role of the split deployment: its ConfigMap source, Deployment, and the port its config listens on
/// for `/metrics` and the probes.
struct Role {
    config: &'static str,
    deployment: &'static str,
    /// `services.{api, analyzer, autoscaler}.enabled`.
    enabled: [bool; 3],
    port: fn(&serde_json::Value) -> String,
}

fn port_of(address: &serde_json::Value) -> String {
    let address = address.as_str().expect("an address string");
    address
        .rsplit_once(':')
        .map(|(_, p)| p.to_string())
        .unwrap_or_else(|| panic!("{address} has no port"))
}

const ROLES: &[Role] = &[
    Role {
        config: "deploy/base/core-config.yaml",
        deployment: "fathom-core",
        enabled: [true, false, false],
        port: |c| port_of(&c["services"]["api"]["address"]),
    },
    Role {
        config: "deploy/base/worker-config.yaml",
        deployment: "fathom-analyzer",
        enabled: [false, true, false],
        port: |c| port_of(&c["metrics"]["address"]),
    },
    Role {
        config: "deploy/base/autoscaler-config.yaml",
        deployment: "fathom-autoscaler",
        enabled: [false, false, true],
        port: |c| port_of(&c["services"]["autoscaler"]["metrics_address"]),
    },
];

/// The rendered document of the named object of `kind`.
fn object<'a>(rendered: &'a str, kind: &str, name: &str) -> &'a str {
    rendered
        .split("\n---\n")
        .find(|doc| {
            doc.contains(&format!("kind: {kind}\n")) && doc.contains(&format!("\n  name: {name}\n"))
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in:\n{rendered}"))
}

/// The effective configuration of `file` as `fathom config` prints it, with only `env` set (or the error).
fn effective(file: &Path, env: &[(&str, &str)]) -> Result<serde_json::Value, String> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fathom"));
    cmd.arg("config").arg("--config").arg(file).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run fathom config");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("fathom config prints JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn each_configmap_loads_and_enables_only_its_role() {
    for role in ROLES {
        let path = repo().join(role.config);
        // The environment the Deployments give: the core's tokens from their Secret.
        let env = [(
            "FATHOM_SERVICES_API_TOKENS",
            "0123456789abcdef0123,fedcba9876543210fedc",
        )];
        let config = effective(&path, &env).unwrap_or_else(|e| panic!("{}: {e}", role.config));
        let enabled = ["api", "analyzer", "autoscaler"]
            .map(|r| config["services"][r]["enabled"].as_bool().expect("enabled"));
        assert_eq!(
            enabled, role.enabled,
            "{}: [api, analyzer, autoscaler] enabled",
            role.config
        );
    }
    // Without the Secret the core refuses to start with auth on (rather than serving unauthenticated).
    let err = effective(&repo().join("deploy/base/core-config.yaml"), &[]).unwrap_err();
    assert!(err.contains("services.api.tokens"), "{err}");
}

#[test]
fn scrape_annotations_probes_and_services_point_at_the_configured_ports() {
    let rendered = render(&repo().join("deploy/base"));
    for role in ROLES {
        let env = [("FATHOM_SERVICES_API_TOKENS", "0123456789abcdef0123")];
        let config = effective(&repo().join(role.config), &env).unwrap();
        let port = (role.port)(&config);
        let deployment = object(&rendered, "Deployment", role.deployment);
        assert!(
            deployment.contains(&format!("prometheus.io/port: \"{port}\"")),
            "{}: scrape annotation on port {port}",
            role.deployment
        );
        assert!(
            deployment.contains(&format!("containerPort: {port}\n")),
            "{}: container port {port}",
            role.deployment
        );
        for probe in ["path: /healthz", "path: /readyz"] {
            assert!(deployment.contains(probe), "{}: {probe}", role.deployment);
        }
        assert!(
            deployment.contains("name: migrate") || role.deployment == "fathom-autoscaler",
            "{} migrates before it starts",
            role.deployment
        );
    }
    let service = object(&rendered, "Service", "fathom-core");
    for line in [
        "port: 8228",
        "targetPort: http",
        "app.kubernetes.io/name: fathom-core",
    ] {
        assert!(
            service.contains(line),
            "Service fathom-core: {line}\n{service}"
        );
    }
    let core = object(&rendered, "Deployment", "fathom-core");
    assert!(
        core.contains("name: fathom-api-tokens")
            && core.contains("name: FATHOM_SERVICES_API_TOKENS"),
        "the core takes its tokens from the Secret fathom-api-tokens"
    );
}

#[test]
fn the_webhook_is_served_by_the_core_on_its_configured_port_with_the_mounted_certificate() {
    let rendered = render(&repo().join("deploy/base"));
    let env = [("FATHOM_SERVICES_API_TOKENS", "0123456789abcdef0123")];
    let config = effective(&repo().join("deploy/base/core-config.yaml"), &env).unwrap();
    let hook = &config["services"]["webhook"];
    assert_eq!(
        hook["enabled"], true,
        "core-config.yaml enables the webhook"
    );
    let port = port_of(&hook["address"]);
    let core = object(&rendered, "Deployment", "fathom-core");
    let lines: Vec<&str> = core.lines().map(str::trim).collect();
    let named = lines
        .windows(2)
        .any(|w| w[0] == format!("- containerPort: {port}") && w[1] == "name: webhook");
    assert!(
        named,
        "fathom-core: container port {port} named webhook\n{core}"
    );
    // The certificate and key the config names live in the mounted Secret.
    let mount = "mountPath: /etc/fathom/webhook-tls";
    assert!(
        core.contains(mount),
        "fathom-core mounts the webhook TLS Secret"
    );
    assert!(core.contains("secretName: fathom-webhook-tls"), "{core}");
    for key in ["cert_file", "key_file"] {
        let file = hook[key].as_str().expect("a path");
        assert!(
            file.starts_with("/etc/fathom/webhook-tls/"),
            "services.webhook.{key} {file} is not in the mounted Secret"
        );
    }
    // The Service the ValidatingWebhookConfiguration calls reaches that port on the core pods.
    let service = object(&rendered, "Service", "fathom-webhook");
    for line in [
        format!("targetPort: {port}"),
        "app.kubernetes.io/name: fathom-core".into(),
        "port: 443".into(),
    ] {
        assert!(
            service.contains(&line),
            "Service fathom-webhook: {line}\n{service}"
        );
    }
    let vwc = object(
        &rendered,
        "ValidatingWebhookConfiguration",
        "fathom-image-admission",
    );
    assert!(vwc.contains("name: fathom-webhook"), "{vwc}");
}

/// The rendered objects of `dir`, parsed.
fn objects(dir: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(&render(&repo().join(dir)))
        .map(|d| serde::Deserialize::deserialize(d).expect("rendered YAML"))
        .collect()
}

fn find<'a>(objects: &'a [serde_yaml::Value], kind: &str, name: &str) -> &'a serde_yaml::Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn text(v: &serde_yaml::Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// The webhook's Service (name, namespace) as the ValidatingWebhookConfiguration calls it, after
/// checking its namespaceSelector still exempts the control plane, fathom itself and opted-out ones.
fn webhook_service(objects: &[serde_yaml::Value]) -> (String, String) {
    let vwc = find(
        objects,
        "ValidatingWebhookConfiguration",
        "fathom-image-admission",
    );
    let hook = &vwc["webhooks"][0];
    let service = &hook["clientConfig"]["service"];
    let (name, ns) = (text(&service["name"]), text(&service["namespace"]));
    let selector = serde_yaml::to_string(&hook["namespaceSelector"]).unwrap();
    for exempt in ["kube-system", ns, "fathom.dev/admission", "disabled"] {
        assert!(
            selector.contains(exempt),
            "namespaceSelector lost {exempt}: {selector}"
        );
    }
    find(objects, "Service", name);
    (name.to_string(), ns.to_string())
}

/// The Secret the core mounts at the webhook's certificate directory.
fn mounted_tls_secret(objects: &[serde_yaml::Value]) -> String {
    let core = &find(objects, "Deployment", "fathom-core")["spec"]["template"]["spec"];
    let mounts = core["containers"][0]["volumeMounts"].as_sequence().unwrap();
    let mount = mounts
        .iter()
        .find(|m| m["mountPath"] == "/etc/fathom/webhook-tls")
        .expect("the core mounts /etc/fathom/webhook-tls");
    let volume = core["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    text(&volume["secret"]["secretName"]).to_string()
}

#[test]
fn the_core_may_read_namespaces_for_the_webhooks_label_selectors() {
    for dir in ["deploy/base", "deploy/overlays/cert-manager"] {
        let objects = objects(dir);
        let (_, ns) = webhook_service(&objects);
        let pod = &find(&objects, "Deployment", "fathom-core")["spec"]["template"]["spec"];
        let account = text(&pod["serviceAccountName"]);
        assert_eq!(
            pod["automountServiceAccountToken"], true,
            "{dir}: the token is mounted"
        );
        find(&objects, "ServiceAccount", account);
        let binding = objects
            .iter()
            .find(|o| {
                o["kind"] == "ClusterRoleBinding"
                    && o["subjects"].as_sequence().is_some_and(|s| {
                        s.iter()
                            .any(|s| s["name"] == account && s["namespace"] == ns.as_str())
                    })
            })
            .unwrap_or_else(|| panic!("{dir}: no ClusterRoleBinding for {ns}/{account}"));
        let role = find(&objects, "ClusterRole", text(&binding["roleRef"]["name"]));
        let grants = role["rules"].as_sequence().unwrap().iter().any(|r| {
            r["resources"]
                .as_sequence()
                .unwrap()
                .iter()
                .any(|x| x == "namespaces")
                && r["verbs"].as_sequence().unwrap().iter().any(|v| v == "get")
        });
        assert!(grants, "{dir}: get on namespaces: {role:?}");
    }
}

#[test]
fn the_cert_manager_overlay_issues_the_mounted_secret_for_the_called_service_and_injects_its_ca() {
    let objects = objects("deploy/overlays/cert-manager");
    let (service, ns) = webhook_service(&objects);
    // The annotation names the serving Certificate (in the Service's namespace) ...
    let vwc = find(
        &objects,
        "ValidatingWebhookConfiguration",
        "fathom-image-admission",
    );
    let inject = text(&vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]);
    let (cert_ns, cert_name) = inject.split_once('/').expect("namespace/name");
    assert_eq!(cert_ns, ns, "the Certificate lives beside the Service");
    let serving = find(&objects, "Certificate", cert_name);
    // ... which is for the name the API server calls, into the Secret the core mounts ...
    let names: Vec<&str> = serving["spec"]["dnsNames"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(text)
        .collect();
    assert!(
        names.contains(&format!("{service}.{ns}.svc").as_str()),
        "{names:?}"
    );
    assert_eq!(
        text(&serving["spec"]["secretName"]),
        mounted_tls_secret(&objects)
    );
    // ... signed by a CA Issuer whose CA Certificate a self-signed Issuer signs.
    let ca_issuer = find(
        &objects,
        "Issuer",
        text(&serving["spec"]["issuerRef"]["name"]),
    );
    let ca_secret = text(&ca_issuer["spec"]["ca"]["secretName"]);
    let ca_cert = objects
        .iter()
        .find(|o| o["kind"] == "Certificate" && o["spec"]["secretName"] == ca_secret)
        .expect("the CA Certificate writing the CA Issuer's Secret");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let root = find(
        &objects,
        "Issuer",
        text(&ca_cert["spec"]["issuerRef"]["name"]),
    );
    assert!(root["spec"]["selfSigned"].is_mapping(), "{root:?}");
    // The base, for `fathom webhook certs`, carries no cainjector annotation (its caBundle is patched).
    let base = objects_of_base();
    let vwc = find(
        &base,
        "ValidatingWebhookConfiguration",
        "fathom-image-admission",
    );
    assert!(vwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].is_null());
    assert!(!base.iter().any(|o| o["kind"] == "Certificate"));
}

fn objects_of_base() -> Vec<serde_yaml::Value> {
    objects("deploy/base")
}
