//! `services.webhook.pin_digests`: `POST /mutate` checks like `/validate` and, when it admits, answers
//! with a JSON patch that rewrites each checked tag reference to `tag@digest` (the digest checked), as
//! Kyverno's `mutateDigest` does. A validating webhook's verdict holds for the digest it resolved, while
//! the kubelet pulls the tag later (up to `cache_ttl` plus the scheduling delay): pinning closes that
//! window.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::admission::{Admission, Answer};
use crate::check::CheckContext;
use crate::images::{self, LISTS};

impl CheckContext<'_> {
    /// Records the digest `image` (as written) was checked as.
    pub(crate) fn resolved(&self, image: &str, digest: &str) {
        let mut map = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        map.insert(image.to_owned(), digest.to_owned());
    }

    /// `image → image@digest` for the tag references among `passed` (digest references are pinned
    /// already). `repo:tag@digest` keeps the tag, so the policy (mappings by tag) and the validating
    /// webhook still see the reference as written, while the node pulls the digest.
    pub(crate) fn pins(&self, passed: &[String]) -> BTreeMap<String, String> {
        let map = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        passed
            .iter()
            .filter(|image| !image.contains('@'))
            .filter_map(|image| {
                let digest = map.get(image)?;
                // `nginx` was checked as `nginx:latest`: pinned without its tag, the validating webhook
                // (and mappings by tag) would see no tag at all and judge another reference.
                let last = image.rsplit('/').next().unwrap_or(image);
                let tag = if last.contains(':') { "" } else { ":latest" };
                Some((image.clone(), format!("{image}{tag}@{digest}")))
            })
            .collect()
    }
}

impl Admission {
    /// Answers an AdmissionReview body like [`review`](Self::review) and, when the object is admitted,
    /// adds the patch pinning its checked tag references; counts the decision.
    pub async fn mutate(&self, body: &[u8], deadline: Instant) -> Answer {
        let (request, mut answer) = self.answer(body, deadline).await;
        if let Some(request) = request {
            let ops = if answer.response.allowed {
                patch(&request.kind.kind, &request.object, &answer.pins)
            } else {
                Vec::new()
            };
            if !ops.is_empty() {
                self.metrics.pinned.inc_by(ops.len() as u64);
                let text = Value::Array(ops).to_string();
                answer.response.patch_type = Some("JSONPatch".to_owned());
                answer.response.patch =
                    Some(base64::engine::general_purpose::STANDARD.encode(text));
            }
        }
        self.count(&answer);
        answer
    }
}

/// RFC 6902 `replace` operations setting every container whose image is a key of `pins` (in every
/// container list of the object's pod spec) to its pinned form.
pub(crate) fn patch(kind: &str, object: &Value, pins: &BTreeMap<String, String>) -> Vec<Value> {
    let Some(pointer) = images::pod_spec_pointer(kind) else {
        return Vec::new();
    };
    let Some(spec) = object.pointer(pointer) else {
        return Vec::new();
    };
    let mut ops = Vec::new();
    for (field, _) in LISTS {
        let Some(list) = spec.get(field).and_then(Value::as_array) else {
            continue;
        };
        for (i, container) in list.iter().enumerate() {
            let pinned = container
                .get("image")
                .and_then(Value::as_str)
                .and_then(|image| pins.get(image));
            if let Some(pinned) = pinned {
                ops.push(json!({
                    "op": "replace",
                    "path": format!("{pointer}/{field}/{i}/image"),
                    "value": pinned,
                }));
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    #[test]
    fn a_reference_without_tag_is_pinned_under_the_tag_it_was_checked_as() {
        let ctx = CheckContext {
            mode: Mode::Policy,
            bundle: None,
            dry_run: false,
            namespace: "shop",
            resolved: Default::default(),
        };
        for image in [
            "nginx",
            "localhost:5000/app",
            "nginx:1.25",
            "localhost:5000/app:2",
        ] {
            ctx.resolved(image, "sha256:aa");
        }
        let passed: Vec<String> = [
            "nginx",
            "localhost:5000/app",
            "nginx:1.25",
            "localhost:5000/app:2",
        ]
        .map(String::from)
        .to_vec();
        let pins = ctx.pins(&passed);
        assert_eq!(pins["nginx"], "nginx:latest@sha256:aa");
        assert_eq!(
            pins["localhost:5000/app"],
            "localhost:5000/app:latest@sha256:aa"
        );
        assert_eq!(pins["nginx:1.25"], "nginx:1.25@sha256:aa");
        assert_eq!(
            pins["localhost:5000/app:2"],
            "localhost:5000/app:2@sha256:aa"
        );
    }

    #[test]
    fn every_list_of_the_spec_and_only_pinned_images() {
        let pins: BTreeMap<String, String> = [("nginx:1.25", "nginx:1.25@sha256:aa")]
            .into_iter()
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .collect();
        let spec = json!({
            "initContainers": [{"name": "i", "image": "nginx:1.25"}],
            "containers": [{"name": "a", "image": "busybox@sha256:bb"}, {"name": "b", "image": "nginx:1.25"}],
            "ephemeralContainers": [{"name": "e", "image": "nginx:1.25"}]
        });
        let ops = patch(
            "CronJob",
            &json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": spec}}}}}),
            &pins,
        );
        let paths: Vec<&str> = ops.iter().map(|o| o["path"].as_str().unwrap()).collect();
        let base = "/spec/jobTemplate/spec/template/spec";
        assert_eq!(
            paths,
            [
                format!("{base}/initContainers/0/image"),
                format!("{base}/containers/1/image"),
                format!("{base}/ephemeralContainers/0/image"),
            ]
        );
        assert!(ops
            .iter()
            .all(|o| o["op"] == "replace" && o["value"] == "nginx:1.25@sha256:aa"));
        // The old EphemeralContainers kind: the list at the top.
        let old = json!({"kind": "EphemeralContainers", "ephemeralContainers": [{"name": "e", "image": "nginx:1.25"}]});
        assert_eq!(
            patch("EphemeralContainers", &old, &pins)[0]["path"],
            "/ephemeralContainers/0/image"
        );
        assert!(patch("ConfigMap", &old, &pins).is_empty());
    }
}
