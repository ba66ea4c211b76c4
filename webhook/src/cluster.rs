//! The Kubernetes API behind namespace-label selectors: a namespace's labels by
//! `GET /api/v1/namespaces/NAME` (the AdmissionReview carries the namespace's name only).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::config::WebhookConfig;
use crate::error::{Error, Result};
use crate::oracle::{ImageOracle, OracleError};

/// A namespace's labels, or `None` when it does not exist.
pub type Labels = Option<BTreeMap<String, String>>;

/// Where the webhook gets namespace labels (the Kubernetes API in a cluster; fakes in tests).
#[async_trait]
pub trait NamespaceSource: Send + Sync + 'static {
    /// The labels of `namespace`; an error when the source cannot answer.
    async fn labels(&self, namespace: &str) -> Result<Labels, OracleError>;
}

/// [`NamespaceSource`] over the Kubernetes API (needs `get` on `namespaces`: deploy/base/core-rbac.yaml).
#[derive(Clone)]
pub struct KubeNamespaces {
    api: Api<Namespace>,
}

impl KubeNamespaces {
    /// Lookups through `client`.
    pub fn new(client: Client) -> Self {
        KubeNamespaces {
            api: Api::all(client),
        }
    }

    /// The lookups `config` asks for: none when `namespace_labels` is off or no selector has
    /// `namespace_labels`, else a client from `kubeconfig` or the cluster (an error when neither works).
    pub async fn for_config(config: &WebhookConfig) -> Result<Option<Self>> {
        if !config.validate()?.looks_up_namespaces() {
            return Ok(None);
        }
        Self::connect(config.kubeconfig.as_deref(), config.timeout)
            .await
            .map(Some)
    }

    /// Lookups through [`kube_client`]`(kubeconfig, timeout)`.
    pub async fn connect(kubeconfig: Option<&Path>, timeout: Duration) -> Result<Self> {
        kube_client(kubeconfig, timeout)
            .await
            .map(Self::new)
            .map_err(|message| Error::Kube {
                key: "services.webhook.namespace_labels",
                message,
            })
    }
}

/// A client from `kubeconfig`, else the in-cluster configuration (service account token), else
/// `KUBECONFIG` / `~/.kube/config`; no call waits on the API longer than `timeout`. The error says why
/// none could be made; callers name the key that needed it.
pub(crate) async fn kube_client(
    kubeconfig: Option<&Path>,
    timeout: Duration,
) -> std::result::Result<Client, String> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file =
                Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => match Config::incluster() {
            Ok(config) => config,
            Err(in_cluster) => Config::infer()
                .await
                .map_err(|e| format!("not in a pod ({in_cluster}), and {e}"))?,
        },
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    Client::try_from(config).map_err(|e| e.to_string())
}

#[async_trait]
impl NamespaceSource for KubeNamespaces {
    async fn labels(&self, namespace: &str) -> Result<Labels, OracleError> {
        match self.api.get_opt(namespace).await {
            Ok(found) => Ok(found.map(|ns| ns.metadata.labels.unwrap_or_default())),
            Err(kube::Error::Api(status)) => {
                let hint = if status.code == 403 {
                    " (the core's ServiceAccount needs get on namespaces: deploy/base/core-rbac.yaml)"
                } else {
                    ""
                };
                Err(OracleError::Unavailable(format!(
                    "the Kubernetes API answered {} for namespace {namespace:?}: {}{hint}",
                    status.code, status.message
                )))
            }
            Err(e) => Err(OracleError::Unavailable(format!("the Kubernetes API: {e}"))),
        }
    }
}

/// The oracle's own [`ImageOracle::namespace_labels`], when no Kubernetes client is configured.
pub(crate) struct OracleNamespaces(pub Arc<dyn ImageOracle>);

#[async_trait]
impl NamespaceSource for OracleNamespaces {
    async fn labels(&self, namespace: &str) -> Result<Labels, OracleError> {
        self.0.namespace_labels(namespace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn mocked() -> (KubeNamespaces, Handle) {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (KubeNamespaces::new(Client::new(service, "default")), handle)
    }

    /// Takes the next request, asserts it is `GET path`, answers `status` with `body`.
    async fn expect_get(handle: &mut Handle, path: &str, status: u16, body: serde_json::Value) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
            .await
            .expect("the lookup never reached the API server (1 s)")
            .expect("a request");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), path);
        assert_eq!(req.uri().query(), None, "a plain GET: {}", req.uri());
        let reply = Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(reply);
    }

    #[tokio::test]
    async fn labels_come_from_get_namespace_and_a_missing_namespace_has_none() {
        let (source, mut handle) = mocked();
        let server = tokio::spawn(async move {
            expect_get(
                &mut handle,
                "/api/v1/namespaces/shop",
                200,
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "shop", "labels": {"env": "production",
                                    "kubernetes.io/metadata.name": "shop"}}}),
            )
            .await;
            expect_get(
                &mut handle,
                "/api/v1/namespaces/gone",
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "NotFound", "code": 404, "message": "namespaces \"gone\" not found"}),
            )
            .await;
            expect_get(
                &mut handle,
                "/api/v1/namespaces/secret",
                403,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": "Forbidden", "code": 403, "message": "forbidden"}),
            )
            .await;
        });
        let labels = source.labels("shop").await.unwrap().unwrap();
        assert_eq!(labels["env"], "production");
        assert_eq!(labels.len(), 2);
        assert_eq!(source.labels("gone").await.unwrap(), None);
        let err = source.labels("secret").await.unwrap_err().to_string();
        assert!(
            err.contains("403") && err.contains("core-rbac.yaml"),
            "{err}"
        );
        server.await.unwrap();
    }
}
