//! The optional Pod lister (`services.webhook.inventory_sync`): every running Pod's containers as
//! inventory [`Sighting`]s, to fill in workloads admitted before fathom was installed. It pages through
//! `GET /api/v1/pods?limit=500` (RBAC `list pods`: deploy/overlays/inventory-sync), one page at a time so
//! that a large cluster is never held in memory at once, and takes each container's digest from its
//! status's `imageID` (what the node pulled): containers not started yet have none and are skipped, as
//! are Pods that finished (`Succeeded`, `Failed`: they run nothing any more).

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{json, Value};

use crate::cluster::kube_client;
use crate::config::WebhookConfig;
use crate::error::{Error, Result};
use crate::inventory::{owner, Sighting};

/// Pods asked for per page: big enough that a 10,000-Pod cluster takes 20 requests, small enough
/// that the API server answers each page quickly and a page's sightings are one inventory statement.
pub const PAGE: u32 = 500;

/// How long one page may take (connect and read): a list is no admission, it may wait on a busy
/// API server far longer than an answer to the API server could.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// One page of sightings and the token of the next page (`None` after the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The containers of this page's Pods whose digest the node reported.
    pub sightings: Vec<Sighting>,
    /// The API server's `continue` token, when more Pods follow.
    pub next: Option<String>,
}

/// Lists Pods through the Kubernetes API.
#[derive(Clone)]
pub struct KubePods {
    api: Api<Pod>,
}

impl KubePods {
    /// A lister through `client`, across all namespaces.
    pub fn new(client: Client) -> Self {
        KubePods {
            api: Api::all(client),
        }
    }

    /// The lister `config` asks for: none when `inventory_sync` is off, else a client from
    /// `kubeconfig` or the cluster (an error naming the key when neither works).
    pub async fn for_config(config: &WebhookConfig) -> Result<Option<Self>> {
        if !config.inventory_sync {
            return Ok(None);
        }
        Self::connect(config.kubeconfig.as_deref()).await.map(Some)
    }

    /// A lister through a client from `kubeconfig` or the cluster.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self> {
        kube_client(kubeconfig, LIST_TIMEOUT)
            .await
            .map(Self::new)
            .map_err(|message| Error::Kube {
                key: "services.webhook.inventory_sync",
                message,
            })
    }

    /// The page after `token` (the first page without one). A token the API server no longer
    /// honours (`410 Gone`, the list took longer than its compaction window) is an error: the next
    /// sync starts over, and the pages written so far stay written.
    pub async fn page(&self, token: Option<&str>) -> Result<Page> {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(token) = token {
            params = params.continue_token(token);
        }
        let list = self
            .api
            .list(&params)
            .await
            .map_err(|e| Error::PodList(e.to_string()))?;
        Ok(Page {
            sightings: list.items.iter().flat_map(pod_sightings).collect(),
            next: list.metadata.continue_.filter(|c| !c.is_empty()),
        })
    }

    /// Every page's sightings, one after another.
    pub async fn sightings(&self) -> Result<Vec<Sighting>> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.page(token.as_deref()).await?;
            out.extend(page.sightings);
            match page.next {
                Some(next) => token = Some(next),
                None => return Ok(out),
            }
        }
    }
}

/// The digest in a container status's `imageID` (`docker-pullable://repo@sha256:…`,
/// `registry/repo@sha256:…`); none for a bare config id or an empty one.
fn digest_of(image_id: &str) -> Option<String> {
    let (_, digest) = image_id.rsplit_once('@')?;
    let hex = digest.strip_prefix("sha256:")?;
    let ok = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    ok.then(|| digest.to_string())
}

/// A container's name and its image as written in the spec.
type Named = (String, Option<String>);

/// One Pod's sightings: each container (init and ephemeral containers prefixed `init:` and
/// `ephemeral:`, as admissions name them) whose status reports the digest it runs, owned as an
/// admission of the Pod would record it (its first ownerReference, else the Pod). Nothing for a Pod
/// that finished.
pub fn pod_sightings(pod: &Pod) -> Vec<Sighting> {
    let (Some(spec), Some(status)) = (&pod.spec, &pod.status) else {
        return Vec::new();
    };
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return Vec::new();
    }
    // The owner rule is the admissions' own, which reads the object as JSON; the metadata suffices.
    let metadata = serde_json::to_value(&pod.metadata).unwrap_or(Value::Null);
    let (owner_kind, owner_name) = owner("Pod", &json!({ "metadata": metadata }));
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let named = |name: &str, image: &Option<String>| (name.to_string(), image.clone());
    let lists: [(&str, Vec<Named>, &[ContainerStatus]); 3] = [
        (
            "init:",
            spec.init_containers
                .iter()
                .flatten()
                .map(|c| named(&c.name, &c.image))
                .collect(),
            status
                .init_container_statuses
                .as_deref()
                .unwrap_or_default(),
        ),
        (
            "",
            spec.containers
                .iter()
                .map(|c| named(&c.name, &c.image))
                .collect(),
            status.container_statuses.as_deref().unwrap_or_default(),
        ),
        (
            "ephemeral:",
            spec.ephemeral_containers
                .iter()
                .flatten()
                .map(|c| named(&c.name, &c.image))
                .collect(),
            status
                .ephemeral_container_statuses
                .as_deref()
                .unwrap_or_default(),
        ),
    ];
    let mut out = Vec::new();
    for (prefix, containers, statuses) in lists {
        for (name, image) in containers {
            let digest = statuses
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| digest_of(&s.image_id));
            if let Some(digest) = digest {
                out.push(Sighting {
                    namespace: namespace.clone(),
                    owner_kind: owner_kind.clone(),
                    owner_name: owner_name.clone(),
                    container: format!("{prefix}{name}"),
                    // The spec's image as written (a status's `image` is the runtime's rewrite).
                    image: image.unwrap_or_default(),
                    digest,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::json;
    use std::time::Duration;
    use tower_test::mock;

    type Handle = mock::Handle<Request<Body>, Response<Body>>;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn pod(ns: &str, owner: Option<&str>, containers: &[(&str, &str, &str)]) -> serde_json::Value {
        let mut metadata = json!({"name": format!("{ns}-pod"), "namespace": ns});
        if let Some(o) = owner {
            metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": o, "uid": "u"}]);
        }
        let spec: Vec<_> = containers
            .iter()
            .map(|(n, i, _)| json!({"name": n, "image": i}))
            .collect();
        let statuses: Vec<_> = containers
            .iter()
            .map(|(n, i, id)| {
                json!({"name": n, "image": i, "imageID": id, "ready": true,
                                     "restartCount": 0})
            })
            .collect();
        json!({"metadata": metadata, "spec": {"containers": spec},
               "status": {"containerStatuses": statuses}})
    }

    /// Takes the next request, asserts it lists pods with `query`, answers with a PodList page.
    async fn expect_list(
        handle: &mut Handle,
        query: &str,
        items: Vec<serde_json::Value>,
        next: &str,
    ) {
        let (req, send) = tokio::time::timeout(Duration::from_secs(1), handle.next_request())
            .await
            .expect("the list never reached the API server (1 s)")
            .expect("a request");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/api/v1/pods");
        assert_eq!(req.uri().query(), Some(query), "{}", req.uri());
        let body = json!({"apiVersion": "v1", "kind": "PodList",
                          "metadata": {"continue": next, "resourceVersion": "7"}, "items": items});
        let reply = Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        send.send_response(reply);
    }

    #[tokio::test]
    async fn every_page_of_pods_becomes_sightings_of_the_digests_nodes_pulled() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let pods = KubePods::new(Client::new(service, "default"));
        let server = tokio::spawn(async move {
            let first = pod(
                "shop",
                Some("web-7d9f"),
                &[
                    (
                        "app",
                        "r.test/app:1",
                        &format!("docker-pullable://r.test/app@{}", digest('a')),
                    ),
                    // Not started: no digest yet, nothing recorded.
                    ("side", "r.test/side:1", ""),
                ],
            );
            expect_list(&mut handle, "&limit=500", vec![first], "page-2").await;
            let second = pod(
                "ops",
                None,
                &[(
                    "tool",
                    "r.test/tool@x",
                    &format!("r.test/tool@{}", digest('b')),
                )],
            );
            expect_list(&mut handle, "&limit=500&continue=page-2", vec![second], "").await;
        });
        let seen = pods.sightings().await.unwrap();
        server.await.unwrap();
        assert_eq!(
            seen,
            [
                Sighting {
                    namespace: "shop".into(),
                    owner_kind: "ReplicaSet".into(),
                    owner_name: "web-7d9f".into(),
                    container: "app".into(),
                    image: "r.test/app:1".into(),
                    digest: digest('a'),
                },
                Sighting {
                    namespace: "ops".into(),
                    owner_kind: "Pod".into(),
                    owner_name: "ops-pod".into(),
                    container: "tool".into(),
                    image: "r.test/tool@x".into(),
                    digest: digest('b'),
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_refused_list_is_an_error_naming_it() {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let pods = KubePods::new(Client::new(service, "default"));
        let server = tokio::spawn(async move {
            let (_, send) = handle.next_request().await.expect("a request");
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "reason": "Forbidden", "code": 403, "message": "pods is forbidden"});
            send.send_response(
                Response::builder()
                    .status(403)
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
        });
        let err = pods.sightings().await.unwrap_err().to_string();
        server.await.unwrap();
        assert!(
            err.contains("listing pods")
                && err.contains("forbidden")
                && err.contains("deploy/overlays/inventory-sync"),
            "{err}"
        );
    }

    #[test]
    fn init_and_ephemeral_containers_are_named_as_admissions_name_them_and_finished_pods_skip() {
        let id = |c: char| format!("r.test/x@{}", digest(c));
        let mut running: Pod = serde_json::from_value(json!({
            "metadata": {"name": "dbg", "namespace": "ops"},
            "spec": {"initContainers": [{"name": "setup", "image": "r.test/setup:1"}],
                     "containers": [{"name": "app", "image": "r.test/app:1"}],
                     "ephemeralContainers": [{"name": "shell", "image": "r.test/shell:1"}]},
            "status": {"phase": "Running",
                "initContainerStatuses": [{"name": "setup", "image": "x", "imageID": id('1'),
                                           "ready": false, "restartCount": 0}],
                "containerStatuses": [{"name": "app", "image": "x", "imageID": id('2'),
                                       "ready": true, "restartCount": 0}],
                "ephemeralContainerStatuses": [{"name": "shell", "image": "x", "imageID": id('3'),
                                                "ready": false, "restartCount": 0}]}
        }))
        .unwrap();
        let seen: Vec<_> = pod_sightings(&running)
            .into_iter()
            .map(|s| (s.owner_kind, s.owner_name, s.container, s.image, s.digest))
            .collect();
        let row =
            |c: &str, i: &str, d: char| ("Pod".into(), "dbg".into(), c.into(), i.into(), digest(d));
        assert_eq!(
            seen,
            [
                row("init:setup", "r.test/setup:1", '1'),
                row("app", "r.test/app:1", '2'),
                row("ephemeral:shell", "r.test/shell:1", '3'),
            ]
        );
        running.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(pod_sightings(&running), []);
    }

    #[test]
    fn only_repository_digests_count() {
        assert_eq!(
            digest_of(&format!("docker-pullable://a/b@{}", digest('c'))),
            Some(digest('c'))
        );
        assert_eq!(
            digest_of(&digest('c')),
            None,
            "a bare config id is not a manifest digest"
        );
        assert_eq!(digest_of("a/b@sha256:short"), None);
        assert_eq!(digest_of(""), None);
    }
}
