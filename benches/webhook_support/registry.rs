//! A registry that knows `count` distinct image manifests and nothing else, for the bench's
//! `unanalyzed` case: each request names a digest this registry serves, so the webhook takes its
//! real path for an image it has never seen (a store lookup, one manifest GET to learn whether the
//! digest is an index, an enqueue, a denial). Blobs are never read on that path, so none are served.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// The served manifests by digest, and the digests in order.
pub struct Manifests {
    by_digest: HashMap<String, Vec<u8>>,
    /// `sha256:…` of each manifest, in generation order.
    pub digests: Vec<String>,
}

impl Manifests {
    /// `count` manifests, distinct by an annotation, each with its real sha256 digest.
    pub fn generate(count: usize) -> Manifests {
        let mut by_digest = HashMap::with_capacity(count);
        let mut digests = Vec::with_capacity(count);
        for n in 0..count {
            let body = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": format!("sha256:{n:064x}"), "size": 2},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": format!("sha256:{:064x}", n + 1), "size": 32}],
                "annotations": {"fathom.bench/n": n.to_string()}
            })
            .to_string()
            .into_bytes();
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
            digests.push(digest.clone());
            by_digest.insert(digest, body);
        }
        Manifests { by_digest, digests }
    }
}

/// Serves `manifests` on a free loopback port; returns `127.0.0.1:PORT`.
pub async fn serve(manifests: Arc<Manifests>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the bench registry");
    let addr = listener.local_addr().expect("local addr").to_string();
    let app = Router::new()
        .route("/v2/", get(|| async { StatusCode::OK }))
        .route("/v2/{*rest}", get(manifest))
        .with_state(manifests);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// `GET|HEAD /v2/<name>/manifests/<digest>` (axum answers HEAD from the GET route).
async fn manifest(State(manifests): State<Arc<Manifests>>, Path(rest): Path<String>) -> Response {
    let found = rest
        .rsplit_once("/manifests/")
        .and_then(|(_, digest)| manifests.by_digest.get(digest).map(|b| (digest, b)));
    match found {
        Some((digest, body)) => Response::builder()
            .header(header::CONTENT_TYPE, OCI_MANIFEST)
            .header("Docker-Content-Digest", digest)
            .body(Body::from(body.clone()))
            .expect("response"),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ))
            .expect("response"),
    }
}
