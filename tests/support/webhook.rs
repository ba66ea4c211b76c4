//! Talking to the webhook of a real `fathom run` as the API server does: workloads and AdmissionReview
//! documents in the API's shapes, and an HTTPS client trusting the CA of `fathom webhook certs`.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

/// The Service name the certificate is made for (deploy/base/webhook.yaml's).
pub const HOST: &str = "fathom-webhook.fathom.svc";

/// A workload of `kind` in `ns` running `containers` and `init` (`(name, image)`).
pub fn workload(kind: &str, ns: &str, containers: &[(&str, &str)], init: &[(&str, &str)]) -> Value {
    let list = |cs: &[(&str, &str)]| -> Vec<Value> {
        cs.iter()
            .map(|(n, i)| json!({"name": n, "image": i, "imagePullPolicy": "IfNotPresent"}))
            .collect()
    };
    let spec = json!({"containers": list(containers), "initContainers": list(init)});
    let meta = json!({"name": "app", "namespace": ns, "labels": {"app": "app"}});
    match kind {
        "Pod" => json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}),
        _ => json!({"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {"metadata": {"labels": {"app": "app"}}, "spec": spec}
        }}),
    }
}

/// The AdmissionReview the API server sends for CREATE of `object`.
pub fn review(uid: &str, object: &Value, dry_run: bool) -> Value {
    let kind = object["kind"].as_str().unwrap();
    let (group, resource) = match kind {
        "Pod" => ("", "pods"),
        _ => ("apps", "deployments"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": "app",
            "namespace": object["metadata"]["namespace"],
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// A client of one webhook.
pub struct Hook {
    pub client: reqwest::Client,
    pub port: u16,
}

/// The answer's `status.message` (empty when none).
pub fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

impl Hook {
    /// POSTs `review` to /validate; the `response` of the answer, after checking it echoes `uid`.
    pub async fn admit(&self, review: &Value) -> Value {
        self.post("/validate", review).await
    }

    /// A client of the webhook on `port` trusting the CA `fathom webhook certs` wrote to `tls/ca.crt`.
    pub fn new(tls: &Path, port: u16) -> Hook {
        let ca_pem = std::fs::read_to_string(tls.join("ca.crt")).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .resolve(HOST, ([127, 0, 0, 1], port).into())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Hook { client, port }
    }

    /// POSTs `review` to `path` (`/validate`, `/mutate`); the `response`, after checking it echoes the uid.
    pub async fn post(&self, path: &str, review: &Value) -> Value {
        let answer: Value = self
            .client
            .post(format!("https://{HOST}:{}{path}", self.port))
            .json(review)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
        assert_eq!(
            answer["response"]["uid"], review["request"]["uid"],
            "{answer}"
        );
        answer["response"].clone()
    }
}
