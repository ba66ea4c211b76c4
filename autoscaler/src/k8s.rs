//! The Kubernetes target: a Deployment scaled through its scale subresource, with the override in its
//! annotations, pod deletion costs before scale-in, and a refusal to fight an HPA or KEDA.

mod lease;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v1::ScaleSpec;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tracing::{info, warn};

pub use lease::{LeaderElector, LeaseConfig};

use crate::decision::Override;
use crate::error::{Error, Result};
use crate::target::{BusyMap, Observed, OverrideOp, OverrideSettings, ScaleTarget, SetOutcome};

/// Annotation pinning the replica count: `"N"`.
pub const OVERRIDE_ANNOTATION: &str = "fathom.dev/replicas-override";
/// Annotation pausing autoscaling: `"true"`.
pub const PAUSED_ANNOTATION: &str = "fathom.dev/autoscaling-paused";
/// The ReplicaSet removes pods with the lowest cost first.
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Which Deployment to scale, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// Namespace of the Deployment.
    pub namespace: String,
    /// Name of the analyzer Deployment.
    pub deployment: String,
    /// Log replica and deletion-cost writes instead of making them.
    pub dry_run: bool,
    /// How many times a conflicting scale write is re-read and retried.
    pub conflict_retries: u32,
}

impl KubeConfig {
    /// Writes enabled, five conflict retries.
    pub fn new(namespace: impl Into<String>, deployment: impl Into<String>) -> KubeConfig {
        KubeConfig {
            namespace: namespace.into(),
            deployment: deployment.into(),
            dry_run: false,
            conflict_retries: 5,
        }
    }
}

/// A Deployment as a [`ScaleTarget`].
pub struct KubeTarget {
    client: Client,
    cfg: KubeConfig,
    elector: Option<Mutex<LeaderElector>>,
}

impl KubeTarget {
    /// A target without leader election (one autoscaler replica, or the CLI).
    pub fn new(client: Client, cfg: KubeConfig) -> KubeTarget {
        KubeTarget {
            client,
            cfg,
            elector: None,
        }
    }

    /// A target that writes only while it holds the Lease described by `lease`.
    pub fn with_leader_election(client: Client, cfg: KubeConfig, lease: LeaseConfig) -> KubeTarget {
        let elector = LeaderElector::new(client.clone(), &cfg.namespace, lease);
        KubeTarget {
            client,
            cfg,
            elector: Some(Mutex::new(elector)),
        }
    }

    /// Gives up the Lease (if held) so another replica takes over at once; call on shutdown.
    pub async fn release_leadership(&self) -> Result<()> {
        match &self.elector {
            Some(e) => e.lock().await.release().await,
            None => Ok(()),
        }
    }

    fn deployments(&self) -> Api<Deployment> {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    fn object(&self) -> String {
        format!("deployment {}/{}", self.cfg.namespace, self.cfg.deployment)
    }

    fn kube_err(&self, action: &str) -> impl FnOnce(kube::Error) -> Error {
        let action = format!("{action} {}/{}", self.cfg.namespace, self.cfg.deployment);
        move |source| Error::Kube { action, source }
    }

    async fn read(&self) -> Result<Deployment> {
        self.deployments()
            .get(&self.cfg.deployment)
            .await
            .map_err(self.kube_err("get deployment"))
    }

    /// Names an HPA or KEDA ScaledObject that targets the Deployment, if any.
    async fn find_conflict(&self) -> Result<Option<String>> {
        let ns = &self.cfg.namespace;
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.client.clone(), ns);
        let list = hpas
            .list(&ListParams::default())
            .await
            .map_err(self.kube_err("list HPAs for"))?;
        for hpa in list {
            let r = &hpa.spec.scale_target_ref;
            if r.kind == "Deployment" && r.name == self.cfg.deployment {
                let name = hpa.metadata.name.unwrap_or_default();
                return Ok(Some(format!(
                    "HorizontalPodAutoscaler {ns}/{name} targets {}",
                    self.object()
                )));
            }
        }
        let ar = ApiResource {
            group: "keda.sh".into(),
            version: "v1alpha1".into(),
            api_version: "keda.sh/v1alpha1".into(),
            kind: "ScaledObject".into(),
            plural: "scaledobjects".into(),
        };
        let sos: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let list = match sos.list(&ListParams::default()).await {
            Ok(list) => list,
            // No KEDA CRD (404) or no right to list it (403): KEDA's own HPA is still caught above.
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_forbidden() => return Ok(None),
            Err(e) => return Err(self.kube_err("list KEDA ScaledObjects for")(e)),
        };
        for so in list {
            let r = &so.data["spec"]["scaleTargetRef"];
            let kind = r["kind"].as_str().unwrap_or("Deployment");
            if kind == "Deployment" && r["name"].as_str() == Some(self.cfg.deployment.as_str()) {
                let name = so.metadata.name.unwrap_or_default();
                return Ok(Some(format!(
                    "KEDA ScaledObject {ns}/{name} targets {}",
                    self.object()
                )));
            }
        }
        Ok(None)
    }

    async fn patch_annotations(
        &self,
        api: &Api<impl kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug>,
        name: &str,
        annotations: Value,
    ) -> Result<()> {
        let patch = json!({ "metadata": { "annotations": annotations } });
        api.patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| Error::Kube {
                action: format!("annotate {name} in {}", self.cfg.namespace),
                source,
            })
    }
}

/// Reads the override from a Deployment's annotations; a malformed value is an error, never a guess.
pub fn parse_override(annotations: &BTreeMap<String, String>, place: &str) -> Result<Override> {
    let bad = |why: String| Error::BadOverride {
        place: place.to_string(),
        why,
    };
    let mut settings = OverrideSettings::default();
    if let Some(v) = annotations.get(PAUSED_ANNOTATION) {
        settings.paused = match v.trim() {
            "true" => true,
            "false" | "" => false,
            other => {
                return Err(bad(format!(
                    "{PAUSED_ANNOTATION}={other:?} is not \"true\" or \"false\""
                )))
            }
        };
    }
    if let Some(v) = annotations.get(OVERRIDE_ANNOTATION) {
        let n = v.trim().parse::<u32>().map_err(|_| {
            bad(format!(
                "{OVERRIDE_ANNOTATION}={v:?} is not a replica count"
            ))
        })?;
        settings.pinned = Some(n);
    }
    Ok(settings.effective())
}

fn selector_of(d: &Deployment) -> Option<String> {
    let labels = d.spec.selector.match_labels.as_ref()?;
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

impl ScaleTarget for KubeTarget {
    async fn observe(&self) -> Result<Observed> {
        let d = self.read().await?;
        let annotations = d.metadata.annotations.clone().unwrap_or_default();
        let ov = parse_override(&annotations, &self.object())?;
        let replicas = d.spec.replicas.unwrap_or(1);
        let replicas = u32::try_from(replicas).map_err(|_| Error::BadObject {
            object: self.object(),
            why: format!("spec.replicas is {replicas}"),
        })?;
        let conflict = self.find_conflict().await?;
        Ok(Observed {
            replicas,
            ov,
            conflict,
        })
    }

    async fn prepare_scale_in(&self, to: u32, busy: &BusyMap) -> Result<()> {
        let d = self.read().await?;
        let selector = selector_of(&d).ok_or_else(|| Error::BadObject {
            object: self.object(),
            why: "spec.selector has no matchLabels to find its pods by".into(),
        })?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.cfg.namespace);
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(self.kube_err("list pods of"))?;
        for pod in list {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let want = i32::try_from(busy.get(&name).copied().unwrap_or(0)).unwrap_or(i32::MAX);
            let have = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DELETION_COST_ANNOTATION));
            let have = have.and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
            if have == want {
                continue;
            }
            if self.cfg.dry_run {
                info!(pod = %name, cost = want, to, "dry-run: would set pod deletion cost");
                continue;
            }
            self.patch_annotations(
                &pods,
                &name,
                json!({ DELETION_COST_ANNOTATION: want.to_string() }),
            )
            .await?;
        }
        Ok(())
    }

    async fn set_replicas(&self, from: u32, to: u32) -> Result<SetOutcome> {
        if self.cfg.dry_run {
            info!(object = %self.object(), from, to, "dry-run: would scale");
            return Ok(SetOutcome::DryRun);
        }
        let api = self.deployments();
        let name = &self.cfg.deployment;
        for attempt in 1..=self.cfg.conflict_retries.max(1) {
            let mut scale = api
                .get_scale(name)
                .await
                .map_err(self.kube_err("get scale of"))?;
            let found = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            let found = u32::try_from(found).unwrap_or(0);
            if found == to {
                return Ok(SetOutcome::Unchanged);
            }
            if found != from {
                return Ok(SetOutcome::Raced { found });
            }
            // The resourceVersion read above travels with the PUT: a concurrent write makes it a 409.
            scale.spec = Some(ScaleSpec {
                replicas: Some(i32::try_from(to).unwrap_or(i32::MAX)),
            });
            match api
                .replace_scale(name, &PostParams::default(), &scale)
                .await
            {
                Ok(_) => return Ok(SetOutcome::Written),
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    warn!(object = %self.object(), attempt, "scale write conflicted; re-reading");
                }
                Err(e) => return Err(self.kube_err("put scale of")(e)),
            }
        }
        Err(Error::Conflict {
            object: self.object(),
            attempts: self.cfg.conflict_retries.max(1),
        })
    }

    async fn apply_override(&self, op: OverrideOp) -> Result<()> {
        let annotations = match op {
            OverrideOp::Pin(n) => json!({ OVERRIDE_ANNOTATION: n.to_string() }),
            OverrideOp::Clear => json!({ OVERRIDE_ANNOTATION: null }),
            OverrideOp::Pause => json!({ PAUSED_ANNOTATION: "true" }),
            OverrideOp::Resume => json!({ PAUSED_ANNOTATION: null }),
        };
        self.patch_annotations(&self.deployments(), &self.cfg.deployment, annotations)
            .await?;
        info!(object = %self.object(), ?op, "override changed");
        Ok(())
    }

    async fn ensure_leader(&self) -> Result<bool> {
        match &self.elector {
            Some(e) => {
                e.lock()
                    .await
                    .try_acquire_or_renew(std::time::Instant::now())
                    .await
            }
            None => Ok(true),
        }
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
