//! AdmissionReview documents as the API server sends them (shapes from the Kubernetes API reference).

use serde_json::{json, Value};

/// `(group, version, resource)` of each checked kind.
pub fn resource_of(kind: &str) -> (&'static str, &'static str, &'static str) {
    match kind {
        "Pod" => ("", "v1", "pods"),
        "ReplicationController" => ("", "v1", "replicationcontrollers"),
        "Deployment" => ("apps", "v1", "deployments"),
        "ReplicaSet" => ("apps", "v1", "replicasets"),
        "StatefulSet" => ("apps", "v1", "statefulsets"),
        "DaemonSet" => ("apps", "v1", "daemonsets"),
        "Job" => ("batch", "v1", "jobs"),
        "CronJob" => ("batch", "v1", "cronjobs"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Service" => ("", "v1", "services"),
        _ => panic!("no resource for {kind}"),
    }
}

pub const KINDS: [&str; 8] = [
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "ReplicationController",
];

/// A pod spec with these containers and init containers (`(name, image)`).
pub fn pod_spec(containers: &[(&str, &str)], init: &[(&str, &str)]) -> Value {
    let list = |cs: &[(&str, &str)]| -> Vec<Value> {
        cs.iter()
            .map(|(n, i)| json!({"name": n, "image": i, "imagePullPolicy": "IfNotPresent", "resources": {}}))
            .collect()
    };
    let mut spec = json!({
        "containers": list(containers),
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "terminationGracePeriodSeconds": 30
    });
    if !init.is_empty() {
        spec["initContainers"] = Value::Array(list(init));
    }
    spec
}

/// An object of `kind` named `name` in `ns`, running `spec`, labelled `labels`.
pub fn workload(kind: &str, name: &str, ns: &str, labels: Value, mut spec: Value) -> Value {
    let (group, version, _) = resource_of(kind);
    let api_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    let meta = json!({"name": name, "namespace": ns, "labels": labels});
    let template = |spec: Value| json!({"metadata": {"labels": {"app": name}}, "spec": spec});
    let body = match kind {
        "Pod" => spec,
        "Deployment" | "ReplicaSet" | "StatefulSet" => json!({
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": template(spec)
        }),
        "DaemonSet" => {
            json!({"selector": {"matchLabels": {"app": name}}, "template": template(spec)})
        }
        "ReplicationController" => {
            json!({"replicas": 1, "selector": {"app": name}, "template": template(spec)})
        }
        "Job" => {
            spec["restartPolicy"] = json!("Never");
            json!({"backoffLimit": 4, "template": template(spec)})
        }
        "CronJob" => {
            spec["restartPolicy"] = json!("OnFailure");
            json!({"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template(spec)}}})
        }
        "ConfigMap" => {
            return json!({"apiVersion": "v1", "kind": kind, "metadata": meta, "data": {"a": "b"}})
        }
        "Service" => {
            json!({"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]})
        }
        _ => panic!("no shape for {kind}"),
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": body})
}

/// The AdmissionReview for `operation` on `object` (with `old` for UPDATE).
pub fn review(
    uid: &str,
    operation: &str,
    object: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Value {
    let kind = object["kind"].as_str().unwrap();
    let (group, version, resource) = resource_of(kind);
    let options_kind = if operation == "CREATE" {
        "CreateOptions"
    } else {
        "UpdateOptions"
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "admin", "uid": "014fbff9a07c", "groups": ["system:authenticated", "my-admin-group"]},
            "object": object,
            "oldObject": old.cloned().unwrap_or(Value::Null),
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": options_kind}
        }
    })
}

/// The AdmissionReview an API server before 1.22 sent for `kubectl debug`: kind `EphemeralContainers`
/// on the `pods/ephemeralcontainers` subresource, the object holding only the `ephemeralContainers`.
pub fn old_ephemeral_review(uid: &str, ns: &str, pod: &str, containers: &[(&str, &str)]) -> Value {
    let list: Vec<Value> = containers
        .iter()
        .map(|(n, i)| json!({"name": n, "image": i, "stdin": true, "tty": true}))
        .collect();
    let object = json!({"apiVersion": "v1", "kind": "EphemeralContainers",
        "metadata": {"name": pod, "namespace": ns}, "ephemeralContainers": list});
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "EphemeralContainers"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "subResource": "ephemeralcontainers",
            "name": pod,
            "namespace": ns,
            "operation": "UPDATE",
            "userInfo": {"username": "dev", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": {"apiVersion": "v1", "kind": "EphemeralContainers",
                "metadata": {"name": pod, "namespace": ns}, "ephemeralContainers": []},
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "UpdateOptions"}
        }
    })
}
