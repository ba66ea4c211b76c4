//! `admission.k8s.io/v1` AdmissionReview on the wire: a tolerant two-stage parse (the `uid` is recovered
//! even when the rest is unusable, so a bad request still gets an answer the API server can match) and
//! the response document.
//!
//! kube's `kube::core::admission` types exist (feature `admission`, which pulls in json-patch) but decode
//! the whole review in one step: one bad field loses the `uid`. These few types keep the object as JSON,
//! which is all image extraction needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only AdmissionReview version served (`admissionReviewVersions: ["v1"]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// An object's group/version/kind as the request names it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    /// API group (`""` for core, `apps`, `batch`).
    #[serde(default)]
    pub group: String,
    /// API version (`v1`).
    #[serde(default)]
    pub version: String,
    /// Kind (`Pod`, `Deployment`, ...).
    #[serde(default)]
    pub kind: String,
}

/// The fields of `request` the webhook uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Echoed in the response.
    pub uid: String,
    /// The object's kind.
    pub kind: GroupVersionKind,
    /// `status`, `scale`, `ephemeralcontainers`, ... or none.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// The object's name (may be empty on CREATE with `generateName`).
    #[serde(default)]
    pub name: String,
    /// The namespace (none for cluster-scoped objects).
    #[serde(default)]
    pub namespace: Option<String>,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// The new object (null on DELETE).
    #[serde(default)]
    pub object: Value,
    /// The existing object (UPDATE and DELETE).
    #[serde(default)]
    pub old_object: Value,
    /// Whether this request must have no side effects.
    #[serde(default)]
    pub dry_run: bool,
}

/// A request the webhook cannot work with, and the `uid` when it could still be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `request.uid`, if present.
    pub uid: Option<String>,
    /// What is wrong, for the answer's message.
    pub message: String,
}

/// Parses an AdmissionReview body.
pub fn parse(body: &[u8]) -> Result<Request, Invalid> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| Invalid {
        uid: None,
        message: format!("the body is not JSON: {e}"),
    })?;
    let uid = doc
        .pointer("/request/uid")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let invalid = |message: String| Invalid {
        uid: uid.clone(),
        message,
    };
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind != KIND || api_version != API_VERSION {
        return Err(invalid(format!(
            "expected kind {KIND} apiVersion {API_VERSION}, got kind {kind:?} apiVersion {api_version:?}"
        )));
    }
    let Some(request) = doc.get("request") else {
        return Err(invalid("the AdmissionReview has no request".into()));
    };
    if uid.is_none() {
        return Err(invalid("request.uid is missing or empty".into()));
    }
    Request::deserialize(request).map_err(|e| invalid(format!("request: {e}")))
}

/// `response.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// HTTP-like code: 200 when allowed, 403 denied, 400 unreadable, 504 undecided in time.
    pub code: u16,
    /// What the user reads (kubectl prints it after "admission webhook ... denied the request:").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// `response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    /// The request's uid (empty only when it could not be read).
    pub uid: String,
    /// Whether the object is admitted.
    pub allowed: bool,
    /// Code and message.
    pub status: Status,
    /// Shown to the client (kubectl prints them as `Warning: ...`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Added to the audit event (prefixed with the webhook's name by the API server).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub audit_annotations: BTreeMap<String, String>,
    /// `JSONPatch` when [`patch`](Self::patch) is set (mutating answers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_type: Option<String>,
    /// The base64 of an RFC 6902 JSON patch the API server applies to the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

impl Response {
    /// The whole AdmissionReview document carrying this response.
    pub fn to_review_json(&self) -> Vec<u8> {
        let doc = serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": KIND,
            "response": self,
        });
        // Serializing a Value of strings, numbers and maps cannot fail.
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_survives_a_bad_request() {
        let bad = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":7}}"#;
        let e = parse(bad).unwrap_err();
        assert_eq!(e.uid.as_deref(), Some("u1"));
        assert!(e.message.starts_with("request:"), "{}", e.message);
        let old = br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u2"}}"#;
        let e = parse(old).unwrap_err();
        assert_eq!(e.uid.as_deref(), Some("u2"));
        assert!(e.message.contains("admission.k8s.io/v1beta1"));
        assert_eq!(parse(b"{").unwrap_err().uid, None);
    }

    #[test]
    fn response_field_names_follow_the_api() {
        let r = Response {
            uid: "u".into(),
            allowed: false,
            status: Status {
                code: 403,
                message: "no".into(),
            },
            warnings: vec!["w".into()],
            audit_annotations: [("mode".to_string(), "policy".to_string())].into(),
            patch_type: None,
            patch: None,
        };
        let v: Value = serde_json::from_slice(&r.to_review_json()).unwrap();
        assert_eq!(v["apiVersion"], API_VERSION);
        assert_eq!(v["response"]["auditAnnotations"]["mode"], "policy");
        assert_eq!(v["response"]["status"]["code"], 403);
        assert_eq!(v["response"]["warnings"][0], "w");
        assert!(
            v["response"].get("patch").is_none(),
            "no patch unless mutating"
        );
    }
}
