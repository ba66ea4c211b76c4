//! The standalone-matching tests' feed: the testkit's generated OSV sample feed in a directory, served
//! as well by a real local HTTP server that records which paths were asked for; and sample images
//! written as OCI layouts, optionally with a config that declares a user, ports and a healthcheck.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use fathom_testkit::image::{write_oci_layout, LayoutEntry};
use fathom_testkit::{BuiltImage, Compress};

/// A feed directory and an HTTP server over it.
pub struct FeedServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The directory it serves.
    pub dir: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FeedServer {
    /// Writes the sample feed (first edition) into `dir` and serves it.
    pub async fn start(dir: &Path) -> FeedServer {
        std::fs::create_dir_all(dir).unwrap();
        fathom_testkit::osv::write_sample_feed(dir, false).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = (dir.to_path_buf(), Arc::clone(&requests));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(serve).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FeedServer {
            url,
            dir: dir.to_path_buf(),
            requests,
        }
    }

    /// Paths asked for so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    State((dir, requests)): State<(PathBuf, Arc<Mutex<Vec<String>>>)>,
    uri: Uri,
) -> Response {
    let path = uri.path().replace("%20", " ");
    requests.lock().unwrap().push(path.clone());
    if path.contains("..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    match tokio::fs::read(dir.join(path.trim_start_matches('/'))).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The named sample image.
pub fn sample(name: &str) -> BuiltImage {
    let samples = fathom_testkit::samples::sample_images();
    let sample = samples.iter().find(|s| s.name == name).unwrap();
    BuiltImage::from_sample(sample, Compress::Gzip).unwrap()
}

/// Replaces the image's run config (`User`, `ExposedPorts`, `Healthcheck`, ...) and history.
pub fn with_config(image: &mut BuiltImage, run: serde_json::Value, history: serde_json::Value) {
    let mut config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
    config["config"] = run;
    config["history"] = history;
    image.config = config.to_string().into_bytes();
    image.set_manifest(|_| {});
}

/// Writes `image` as an OCI layout under `dir` (ref name `v1`); returns the `oci-dir:` source.
pub fn oci_dir(dir: &Path, image: &BuiltImage) -> String {
    write_oci_layout(dir, &[("v1", LayoutEntry::Image(image))]).unwrap();
    format!("oci-dir:{}", dir.display())
}
