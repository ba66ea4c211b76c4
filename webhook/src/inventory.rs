//! What runs: each admitted container's use of an image (namespace, owning workload, container, the
//! digest checked), handed to the oracle after the answer is decided, for fathom's inventory. Dry runs
//! and denials record nothing; images whose digest was never resolved (breakglass) are not recorded.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::images::ImageUse;
use crate::review::Request;

/// One container of an admitted object running one image.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sighting {
    /// The object's namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// The workload's kind: the object's first ownerReference's, else the object's own.
    pub owner_kind: String,
    /// The workload's name (the ownerReference's, else the object's name or `generateName`).
    pub owner_name: String,
    /// The container (`init:` and `ephemeral:` prefixed as in messages).
    pub container: String,
    /// The image as written in the spec.
    pub image: String,
    /// The digest it was checked as.
    pub digest: String,
}

/// The owning workload of `object` of `kind`: its first ownerReference, else itself.
pub fn owner(kind: &str, object: &Value) -> (String, String) {
    let metadata = object.get("metadata");
    let first_owner = metadata
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .and_then(|list| list.first());
    let text = |v: Option<&Value>, key: &str| {
        v.and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    if let (Some(k), Some(n)) = (text(first_owner, "kind"), text(first_owner, "name")) {
        return (k, n);
    }
    let name = text(metadata, "name")
        .or_else(|| text(metadata, "generateName"))
        .unwrap_or_default();
    (kind.to_string(), name)
}

/// The sightings of an admitted request: one per container of each use whose digest is known.
pub(crate) fn sightings(
    req: &Request,
    uses: &[ImageUse],
    resolved: &BTreeMap<String, String>,
) -> Vec<Sighting> {
    let (owner_kind, owner_name) = owner(&req.kind.kind, &req.object);
    let namespace = req.namespace.clone().unwrap_or_default();
    let mut out = Vec::new();
    for u in uses {
        let Some(digest) = resolved.get(&u.image) else {
            continue;
        };
        for container in &u.containers {
            out.push(Sighting {
                namespace: namespace.clone(),
                owner_kind: owner_kind.clone(),
                owner_name: owner_name.clone(),
                container: container.clone(),
                image: u.image.clone(),
                digest: digest.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_owner_is_the_first_owner_reference_else_the_object() {
        let pod = json!({"metadata": {"generateName": "web-7d9f-", "ownerReferences": [
            {"kind": "ReplicaSet", "name": "web-7d9f"}, {"kind": "Other", "name": "x"}]}});
        assert_eq!(owner("Pod", &pod), ("ReplicaSet".into(), "web-7d9f".into()));
        let deployment = json!({"metadata": {"name": "web"}});
        assert_eq!(
            owner("Deployment", &deployment),
            ("Deployment".into(), "web".into())
        );
        let bare = json!({"metadata": {"generateName": "job-", "ownerReferences": [{"kind": ""}]}});
        assert_eq!(owner("Pod", &bare), ("Pod".into(), "job-".into()));
        assert_eq!(owner("Pod", &json!({})), ("Pod".into(), String::new()));
    }
}
