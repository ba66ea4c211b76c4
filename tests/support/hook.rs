//! The admission webhook of a real `fathom run` as the API server reaches it: a serving certificate from
//! `fathom webhook certs`, a client that trusts only that CA, and AdmissionReview documents for Pods.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::{free_addr, webhook_certs};

/// The Service name the certificate is made for (deploy/base/webhook.yaml's).
pub const HOST: &str = "fathom-webhook.fathom.svc";

/// A webhook address with its certificates, and a client for it.
pub struct Hook {
    /// Trusts only the webhook's CA; resolves [`HOST`] to the webhook.
    pub client: reqwest::Client,
    /// `127.0.0.1:PORT` the webhook is configured to listen on.
    pub address: String,
    tls: PathBuf,
}

impl Hook {
    /// Makes the certificates under `dir/tls` and picks a free port; start the core with [`Hook::config`].
    pub fn prepare(dir: &Path) -> Hook {
        let tls = dir.join("tls");
        webhook_certs(&tls);
        let ca = std::fs::read_to_string(tls.join("ca.crt")).unwrap();
        let address = free_addr();
        let port: u16 = address.rsplit_once(':').unwrap().1.parse().unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .resolve(HOST, ([127, 0, 0, 1], port).into())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Hook {
            client,
            address,
            tls,
        }
    }

    /// The `services.webhook` YAML block for [`super::api::Api::start`], with `extra` keys (each
    /// `key: value`, one per line) added.
    pub fn config(&self, extra: &[&str]) -> String {
        let mut yaml = format!(
            "  webhook:\n    enabled: true\n    address: '{}'\n    cert_file: '{}'\n    \
             key_file: '{}'\n    timeout: 5s\n",
            self.address,
            self.tls.join("tls.crt").display(),
            self.tls.join("tls.key").display(),
        );
        for line in extra {
            yaml.push_str(&format!("    {line}\n"));
        }
        yaml
    }

    /// POSTs `review` to /validate; the answer's `response`, after checking it echoes the uid.
    pub async fn admit(&self, review: &Value) -> Value {
        let answer: Value = self
            .client
            .post(format!("https://{HOST}:{}/validate", self.port()))
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

    fn port(&self) -> u16 {
        self.address.rsplit_once(':').unwrap().1.parse().unwrap()
    }
}

/// The AdmissionReview the API server sends for CREATE of a Pod in `ns` running `image`.
pub fn pod_review(uid: &str, ns: &str, image: &str) -> Value {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "app", "namespace": ns},
        "spec": {"containers": [{"name": "app", "image": image}]}
    });
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": "app",
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "admin", "groups": ["system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// The answer's `status.message` (empty when there is none).
pub fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
