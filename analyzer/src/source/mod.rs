//! Where images come from: a registry, an OCI image layout directory or a `docker save` tarball.
//!
//! Resolving a source reads only the manifest and config ([`ResolvedImage`]); layer blobs are opened one by
//! one later as plain blocking readers, so the layer pipeline treats every source alike.

pub mod auth;
mod docker_archive;
pub mod facts;
mod http;
pub mod manifest;
mod oci_dir;
mod prefetch;
pub mod reference;
pub mod registry;
mod registry_error;
pub mod requests;
mod token;
pub mod watch;

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{AnalyzeError, Result};
pub use manifest::Platform;

/// An image to analyze, as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `registry:REF` (the default when no prefix is given).
    Registry {
        /// Image reference (`debian:12`, `127.0.0.1:5000/app@sha256:...`).
        reference: String,
    },
    /// `oci-dir:PATH[:REF]`: an OCI image layout directory.
    OciDir {
        /// Layout directory.
        path: PathBuf,
        /// `org.opencontainers.image.ref.name` to pick, when the layout holds several images.
        reference: Option<String>,
    },
    /// `docker-archive:PATH`: a `docker save` tarball.
    DockerArchive {
        /// The tarball.
        path: PathBuf,
    },
}

impl std::str::FromStr for ImageSource {
    type Err = AnalyzeError;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |message: &str| AnalyzeError::InvalidSource {
            source_text: s.to_string(),
            message: message.to_string(),
        };
        if let Some(rest) = s.strip_prefix("oci-dir:") {
            if rest.is_empty() {
                return Err(invalid("oci-dir: needs a path"));
            }
            // A path may itself contain ':'; prefer the whole string when it names a directory.
            if std::path::Path::new(rest).is_dir() {
                return Ok(ImageSource::OciDir {
                    path: rest.into(),
                    reference: None,
                });
            }
            return Ok(match rest.rsplit_once(':') {
                Some((path, reference)) if !reference.contains('/') && !path.is_empty() => {
                    ImageSource::OciDir {
                        path: path.into(),
                        reference: Some(reference.to_string()),
                    }
                }
                _ => ImageSource::OciDir {
                    path: rest.into(),
                    reference: None,
                },
            });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            if rest.is_empty() {
                return Err(invalid("docker-archive: needs a path"));
            }
            return Ok(ImageSource::DockerArchive { path: rest.into() });
        }
        let reference = s.strip_prefix("registry:").unwrap_or(s);
        if reference.is_empty() {
            return Err(invalid("empty image reference"));
        }
        Ok(ImageSource::Registry {
            reference: reference.to_string(),
        })
    }
}

impl std::fmt::Display for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageSource::Registry { reference } => write!(f, "registry:{reference}"),
            ImageSource::OciDir {
                path,
                reference: None,
            } => write!(f, "oci-dir:{}", path.display()),
            ImageSource::OciDir {
                path,
                reference: Some(r),
            } => write!(f, "oci-dir:{}:{r}", path.display()),
            ImageSource::DockerArchive { path } => write!(f, "docker-archive:{}", path.display()),
        }
    }
}

/// One layer as the manifest describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the blob as stored (compressed), `sha256:...`; the layer's identity and cache key.
    pub digest: String,
    /// Blob size in bytes.
    pub size: u64,
    /// Media type from the manifest (empty for docker-archive layers: detected from magic bytes).
    pub media_type: String,
    /// Digest of the uncompressed tar, from the config's `rootfs.diff_ids`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
}

/// What identifies an analyzed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The source as given (`registry:...`, `oci-dir:...`).
    pub source: String,
    /// The normalized reference (`docker.io/library/debian:12`), or the layout's ref name.
    pub reference: String,
    /// Digest of the image manifest (for a multi-arch image: the platform's manifest, not the index).
    pub manifest_digest: String,
    /// Digest of the index the manifest was selected from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<String>,
    /// Digest of the config blob.
    pub config_digest: String,
    /// Platform from the config.
    pub platform: Platform,
    /// Layers, base first.
    pub layers: Vec<LayerInfo>,
    /// What the config says about running and building the image.
    #[serde(default)]
    pub config: facts::ConfigFacts,
}

/// A reader over one layer blob's stored (compressed) bytes.
pub type BlobReader = Box<dyn Read + Send>;

/// An image whose manifest and config have been read; layer blobs are opened on demand.
#[derive(Clone)]
pub struct ResolvedImage {
    /// Manifest-level facts.
    pub info: ImageInfo,
    pub(crate) fetcher: Fetcher,
}

impl std::fmt::Debug for ResolvedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedImage")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// How to open a layer blob of a resolved image.
#[derive(Clone)]
pub(crate) enum Fetcher {
    Registry(Arc<registry::Registry>, Arc<registry::RemoteImage>),
    OciDir(PathBuf),
    DockerArchive(Arc<docker_archive::Archive>),
}

impl Fetcher {
    /// Opens a layer blob. Registry errors that need no bytes (404, 401) surface here; the returned reader
    /// yields network errors mid-stream as `io::Error`s carrying an [`AnalyzeError`].
    pub(crate) async fn open(&self, layer: &LayerInfo) -> Result<BlobReader> {
        match self {
            Fetcher::Registry(registry, image) => registry.open_blob(image, layer).await,
            Fetcher::OciDir(dir) => oci_dir::open_blob(dir, &layer.digest, "layer"),
            Fetcher::DockerArchive(archive) => archive.open_layer(layer),
        }
    }
}

/// Resolves a local source (oci-dir, docker-archive); registry sources go through [`registry::Registry`].
pub(crate) fn resolve_local(source: &ImageSource, platform: &Platform) -> Result<ResolvedImage> {
    match source {
        ImageSource::OciDir { path, reference } => {
            oci_dir::resolve(path, reference.as_deref(), platform, &source.to_string())
        }
        ImageSource::DockerArchive { path } => docker_archive::resolve(path, &source.to_string()),
        ImageSource::Registry { .. } => Err(AnalyzeError::Internal(
            "resolve_local called with a registry source".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        let p = |s: &str| s.parse::<ImageSource>().unwrap();
        assert_eq!(
            p("debian:12"),
            ImageSource::Registry {
                reference: "debian:12".into()
            }
        );
        assert_eq!(
            p("registry:127.0.0.1:5000/a/b:c"),
            ImageSource::Registry {
                reference: "127.0.0.1:5000/a/b:c".into()
            }
        );
        assert_eq!(
            p("oci-dir:/nonexistent/layout:app"),
            ImageSource::OciDir {
                path: "/nonexistent/layout".into(),
                reference: Some("app".into())
            }
        );
        assert_eq!(
            p("docker-archive:/x.tar"),
            ImageSource::DockerArchive {
                path: "/x.tar".into()
            }
        );
        assert!("oci-dir:".parse::<ImageSource>().is_err());
        assert!("registry:".parse::<ImageSource>().is_err());
    }
}
