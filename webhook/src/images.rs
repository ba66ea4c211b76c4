//! Which images a Pod or pod-template object runs: `containers`, `initContainers` and
//! `ephemeralContainers` of every kind that carries a pod spec.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

/// One image and the containers that run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUse {
    /// The reference as written in the spec.
    pub image: String,
    /// Container names; init and ephemeral containers are prefixed `init:` and `ephemeral:`.
    pub containers: Vec<String>,
}

/// The container lists of a pod spec and the prefix their container names get in messages.
pub(crate) const LISTS: [(&str, &str); 3] = [
    ("initContainers", "init:"),
    ("containers", ""),
    ("ephemeralContainers", "ephemeral:"),
];

/// The JSON pointer of the pod spec inside an object of `kind`, or none for a kind without one.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        // API servers before 1.22 sent the `pods/ephemeralcontainers` subresource as this kind: the
        // object itself holds the `ephemeralContainers` list (the whole pointer: the object).
        "EphemeralContainers" => Some(""),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The images an object runs, in order of first appearance, one entry per distinct reference.
/// A missing spec (or a kind without pod spec: see [`pod_spec_pointer`]) runs no image.
pub fn extract(kind: &str, object: &Value) -> Vec<ImageUse> {
    let mut uses: Vec<ImageUse> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let Some(spec) = pod_spec_pointer(kind).and_then(|p| object.pointer(p)) else {
        return uses;
    };
    for (field, prefix) in LISTS {
        let Some(list) = spec.get(field).and_then(Value::as_array) else {
            continue;
        };
        for container in list {
            let Some(image) = container.get("image").and_then(Value::as_str) else {
                continue;
            };
            let name = container.get("name").and_then(Value::as_str).unwrap_or("?");
            let slot = *index.entry(image.to_owned()).or_insert_with(|| {
                uses.push(ImageUse {
                    image: image.to_owned(),
                    containers: Vec::new(),
                });
                uses.len() - 1
            });
            uses[slot].containers.push(format!("{prefix}{name}"));
        }
    }
    uses
}

/// On UPDATE: the images of `object` that `old_object` did not run already (they were admitted then).
pub fn changed(kind: &str, object: &Value, old_object: &Value) -> Vec<ImageUse> {
    let before: HashSet<String> = extract(kind, old_object)
        .into_iter()
        .map(|u| u.image)
        .collect();
    extract(kind, object)
        .into_iter()
        .filter(|u| !before.contains(&u.image))
        .collect()
}

/// The object's `metadata.labels` (string values only).
pub fn labels(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Value {
        json!({
            "initContainers": [{"name": "setup", "image": "busybox:1.36"}],
            "containers": [{"name": "web", "image": "nginx:1.25"}, {"name": "side", "image": "busybox:1.36"}],
            "ephemeralContainers": [{"name": "dbg", "image": "alpine"}]
        })
    }

    #[test]
    fn every_container_list_of_every_kind() {
        let pod = json!({"spec": spec()});
        let templated = json!({"spec": {"template": {"spec": spec()}}});
        let cron = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec()}}}}});
        let want = vec![
            ImageUse {
                image: "busybox:1.36".into(),
                containers: vec!["init:setup".into(), "side".into()],
            },
            ImageUse {
                image: "nginx:1.25".into(),
                containers: vec!["web".into()],
            },
            ImageUse {
                image: "alpine".into(),
                containers: vec!["ephemeral:dbg".into()],
            },
        ];
        assert_eq!(extract("Pod", &pod), want);
        for kind in [
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "ReplicationController",
        ] {
            assert_eq!(extract(kind, &templated), want, "{kind}");
        }
        assert_eq!(extract("CronJob", &cron), want);
        // The pre-1.22 EphemeralContainers kind: the list at the top of the object.
        let old_kind = json!({"apiVersion": "v1", "kind": "EphemeralContainers",
            "metadata": {"name": "web"}, "ephemeralContainers": [{"name": "dbg", "image": "alpine"}]});
        assert_eq!(extract("EphemeralContainers", &old_kind), want[2..]);
        // The right path per kind: a CronJob's shape is not a Deployment's.
        assert!(extract("CronJob", &templated).is_empty());
        assert!(extract("ConfigMap", &pod).is_empty());
    }

    #[test]
    fn update_checks_only_new_images() {
        let old = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}});
        let new = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1.25"}, {"name": "log", "image": "fluent-bit:3"}]}});
        let got = changed("Pod", &new, &old);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].image, "fluent-bit:3");
        assert!(changed("Pod", &old, &new).is_empty());
    }
}
