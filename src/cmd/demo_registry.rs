//! `fathom demo`'s registry: a GENERATED SAMPLE OCI distribution endpoint held in memory on loopback
//! (plain HTTP), so the demo's watch step needs neither network nor a registry install. It answers what
//! the analyzer and the catalog's watchers ask — `GET /v2/`, `HEAD`/`GET` of a manifest by tag or digest
//! (with `Docker-Content-Digest`), `GET` of a blob, `GET /v2/<name>/tags/list` — and the demo "pushes"
//! by pointing a tag at an image ([`SampleRegistry::push`]); there is no upload API.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fathom_testkit::image::BuiltImage;
use tokio::task::JoinHandle;

/// What the registry holds: blobs and manifests by digest, tags by (repository, tag).
#[derive(Default)]
struct Content {
    blobs: HashMap<String, Bytes>,
    manifests: HashMap<String, (String, Bytes)>,
    tags: BTreeMap<(String, String), String>,
}

type Shared = Arc<RwLock<Content>>;

/// The in-memory registry, served until dropped.
pub struct SampleRegistry {
    host: String,
    content: Shared,
    server: JoinHandle<()>,
}

impl SampleRegistry {
    /// Serves an empty registry on a free loopback port.
    pub async fn start() -> anyhow::Result<SampleRegistry> {
        let content = Shared::default();
        let app = axum::Router::new()
            .route("/v2/", axum::routing::get(|| async { "{}" }))
            // `get` answers HEAD too (without the body): what the watchers send.
            .route("/v2/{*rest}", axum::routing::get(serve))
            .with_state(content.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the demo registry on loopback")?;
        let host = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("demo registry: {e}");
            }
        });
        Ok(SampleRegistry {
            host,
            content,
            server,
        })
    }

    /// `127.0.0.1:PORT`: the registry part of the references it serves (plain HTTP: insecure).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Stores `image` and points `repository:tag` at it, as a push would; its manifest digest.
    pub fn push(&self, repository: &str, tag: &str, image: &BuiltImage) -> String {
        let digest = image.manifest_digest();
        let mut content = match self.content.write() {
            Ok(c) => c,
            // A panicked handler cannot leave the maps half-written: every insert is one call.
            Err(poisoned) => poisoned.into_inner(),
        };
        for layer in &image.layers {
            content
                .blobs
                .insert(layer.digest(), Bytes::from(layer.blob.clone()));
        }
        content.blobs.insert(
            fathom_analyzer::source::manifest::sha256_digest(&image.config),
            Bytes::from(image.config.clone()),
        );
        content.manifests.insert(
            digest.clone(),
            (
                image.manifest_media_type(),
                Bytes::from(image.manifest.clone()),
            ),
        );
        content
            .tags
            .insert((repository.to_string(), tag.to_string()), digest.clone());
        digest
    }
}

impl Drop for SampleRegistry {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The distribution API's error body.
fn unknown(code: &str, what: &str) -> Response {
    let body =
        serde_json::json!({"errors": [{"code": code, "message": format!("{what} unknown")}]});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn with_digest(media_type: &str, digest: &str, body: Bytes) -> Response {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::CONTENT_TYPE, media_type),
        (
            header::HeaderName::from_static("docker-content-digest"),
            digest,
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    (StatusCode::OK, headers, body).into_response()
}

/// `<name>/manifests/<ref>`, `<name>/blobs/<digest>` or `<name>/tags/list`.
async fn serve(State(content): State<Shared>, Path(rest): Path<String>) -> Response {
    let content = match content.read() {
        Ok(c) => c,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        let tags: Vec<&str> = content
            .tags
            .keys()
            .filter(|(repo, _)| repo == name)
            .map(|(_, tag)| tag.as_str())
            .collect();
        if tags.is_empty() {
            return unknown("NAME_UNKNOWN", "repository name");
        }
        return axum::Json(serde_json::json!({"name": name, "tags": tags})).into_response();
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        let digest = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            content
                .tags
                .get(&(name.to_string(), reference.to_string()))
                .cloned()
        };
        return match digest.and_then(|d| content.manifests.get(&d).map(|m| (d, m))) {
            Some((digest, (media_type, body))) => with_digest(media_type, &digest, body.clone()),
            None => unknown("MANIFEST_UNKNOWN", "manifest"),
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        return match content.blobs.get(digest) {
            Some(blob) => with_digest("application/octet-stream", digest, blob.clone()),
            None => unknown("BLOB_UNKNOWN", "blob"),
        };
    }
    unknown("UNSUPPORTED", "route")
}
