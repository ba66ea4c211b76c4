//! Registry sources over fathom's HTTP layer ([`super::http`]): manifest and platform resolution, the
//! config and the first layers requested together right after the manifest, and blob streams that feed a
//! blocking reader through a small bounded channel (download overlaps decompression, and at most a few
//! chunks per layer wait in memory).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::auth::Credentials;
use super::http::Http;
use super::manifest::{self, sha256_digest, Index, ManifestDoc, Platform};
use super::oci_dir::layer_infos;
use super::prefetch::{Pending, Prefetch};
use super::reference::ImageRef;
use super::registry_error::{classify, transport, Target};
use super::requests::RequestKind;
use super::{BlobReader, Fetcher, ImageInfo, LayerInfo, ResolvedImage};
use crate::error::{AnalyzeError, Result};

/// Chunks (typically 8–64 KiB each) buffered between the download task and the decompressor.
const CHANNEL_CHUNKS: usize = 32;

/// Largest manifest or config read (distribution registries accept manifests up to 4 MiB; configs of
/// images with thousands of history entries reach a few MiB).
const MAX_DOCUMENT: usize = 16 << 20;

/// How to talk to registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `HOST[:PORT]` of registries to reach over plain HTTP.
    pub insecure: Vec<String>,
    /// Credentials by registry.
    pub credentials: Credentials,
    /// Connect and read timeout.
    pub timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            credentials: Credentials::none(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A registry client shared by every image an analyzer resolves: connections, what each registry asked
/// for and bearer tokens are reused by every job of the process.
pub(crate) struct Registry {
    http: Http,
}

/// A resolved registry image: its reference and the layer requests already under way.
pub(crate) struct RemoteImage {
    reference: ImageRef,
    prefetch: Prefetch,
}

impl Registry {
    pub(crate) fn new(options: RegistryOptions) -> Self {
        Registry {
            http: Http::new(options.insecure, options.credentials, options.timeout),
        }
    }

    async fn fetch(
        &self,
        image: &ImageRef,
        path: &str,
        accept: Option<&str>,
        kind: RequestKind,
        target: Target<'_>,
    ) -> Result<Bytes> {
        let insecure = self.http.is_insecure(&image.registry);
        let what = match &target {
            Target::Manifest(r) => format!("manifest {r}"),
            Target::Blob(what, digest) => format!("{what} {digest}"),
        };
        let mut response = self
            .http
            .get(image, path, accept, kind)
            .await
            .map_err(|e| classify(e, insecure, target))?;
        // Manifests and configs are read whole: a hostile registry must not make that unbounded.
        let too_big =
            || AnalyzeError::invalid_image(&what, format!("larger than {MAX_DOCUMENT} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT as u64)
        {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(&e, &image.registry, insecure))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(body))
    }

    async fn manifest(&self, image: &ImageRef, what: &str) -> Result<(Bytes, String)> {
        let accept = manifest::ACCEPTED.join(", ");
        let path = format!("manifests/{}", image.manifest_key());
        let bytes = self
            .fetch(
                image,
                &path,
                Some(&accept),
                RequestKind::Manifest,
                Target::Manifest(what),
            )
            .await?;
        let digest = sha256_digest(&bytes);
        if let Some(pinned) = image.digest.as_deref().filter(|d| *d != digest) {
            return Err(AnalyzeError::DigestMismatch {
                what: format!("manifest {what}"),
                expected: pinned.to_string(),
                actual: digest,
            });
        }
        Ok((bytes, digest))
    }

    /// What `reference_text` names, from one manifest request: an image manifest's digest, or an index's
    /// digest and the index itself (its entries are the platform manifests an analysis is stored under).
    pub(crate) async fn lookup(&self, reference_text: &str) -> Result<Resolution> {
        let reference =
            ImageRef::parse(reference_text).map_err(|message| AnalyzeError::InvalidSource {
                source_text: reference_text.to_string(),
                message,
            })?;
        let whole = reference.to_string();
        let (bytes, digest) = self.manifest(&reference, &whole).await?;
        let (index, layers) =
            match manifest::parse_manifest(&bytes, &format!("manifest of {whole}"))? {
                ManifestDoc::Image(m) => (
                    None,
                    Some(m.layers.into_iter().map(|l| (l.digest, l.size)).collect()),
                ),
                ManifestDoc::Index(index) => (Some(index), None),
            };
        Ok(Resolution {
            digest,
            index,
            layers,
        })
    }

    /// The digest of the image manifest `reference_text` names for `platform` (in an index: the chosen
    /// entry's digest, the one an analysis is stored under), from one manifest request: no config, no
    /// layers.
    pub(crate) async fn manifest_digest(
        &self,
        reference_text: &str,
        platform: &Platform,
    ) -> Result<String> {
        let resolution = self.lookup(reference_text).await?;
        match &resolution.index {
            None => Ok(resolution.digest),
            Some(index) => {
                let what = format!("index of {reference_text}");
                let chosen = manifest::select_platform(index, platform, &what)?;
                manifest::check_digest(&chosen.digest, "manifest")?;
                Ok(chosen.digest.clone())
            }
        }
    }

    /// Fetches the manifest (selecting `platform` in an index), then the config, with the first
    /// `prefetch` layers requested at the same time; each layer opened later requests the next one, so
    /// `prefetch` requests stay ahead of the pipeline (0: layers are requested when opened).
    pub(crate) async fn resolve(
        self: &Arc<Self>,
        reference_text: &str,
        platform: &Platform,
        source_text: &str,
        prefetch: usize,
    ) -> Result<ResolvedImage> {
        let reference =
            ImageRef::parse(reference_text).map_err(|message| AnalyzeError::InvalidSource {
                source_text: source_text.to_string(),
                message,
            })?;
        let whole = reference.to_string();
        let (bytes, mut digest) = self.manifest(&reference, &whole).await?;
        let mut index_digest = None;
        let manifest = match manifest::parse_manifest(&bytes, &format!("manifest of {whole}"))? {
            ManifestDoc::Image(m) => m,
            ManifestDoc::Index(index) => {
                let chosen =
                    manifest::select_platform(&index, platform, &format!("index of {whole}"))?;
                manifest::check_digest(&chosen.digest, "manifest")?;
                index_digest = Some(digest);
                let by_digest = reference.with_digest(&chosen.digest);
                let bytes;
                (bytes, digest) = self.manifest(&by_digest, &chosen.digest).await?;
                match manifest::parse_manifest(&bytes, &format!("manifest {}", chosen.digest))? {
                    ManifestDoc::Image(m) => m,
                    ManifestDoc::Index(_) => {
                        return Err(AnalyzeError::invalid_image(
                            format!("manifest {}", chosen.digest),
                            "an index entry points to another index",
                        ))
                    }
                }
            }
        };
        manifest::check_digest(&manifest.config.digest, "config")?;
        let layer_digests = manifest
            .layers
            .iter()
            .filter(|l| manifest::check_digest(&l.digest, "layer").is_ok())
            .map(|l| l.digest.clone());
        let image = Arc::new(RemoteImage {
            reference,
            prefetch: Prefetch::new(layer_digests, prefetch),
        });
        image
            .prefetch
            .top_up(|digest| self.start_blob(&image.reference, digest));
        let config_digest = manifest.config.digest.clone();
        let config_bytes = self
            .fetch(
                &image.reference,
                &format!("blobs/{config_digest}"),
                None,
                RequestKind::Blob,
                Target::Blob("config", &config_digest),
            )
            .await?;
        let actual = sha256_digest(&config_bytes);
        if actual != config_digest {
            return Err(AnalyzeError::DigestMismatch {
                what: "config".into(),
                expected: config_digest,
                actual,
            });
        }
        let config = manifest::parse_config(&config_bytes, "config")?;
        let layers = layer_infos(&manifest, &config);
        Ok(ResolvedImage {
            info: ImageInfo {
                source: source_text.to_string(),
                reference: whole,
                manifest_digest: digest,
                index_digest,
                config_digest,
                platform: config.platform(),
                config: super::facts::ConfigFacts::from_config(&config_bytes),
                layers,
            },
            fetcher: Fetcher::Registry(Arc::clone(self), image),
        })
    }

    /// Requests a blob in a task of its own (the caller reads the body later).
    fn start_blob(self: &Arc<Self>, reference: &ImageRef, digest: &str) -> Pending {
        let registry = Arc::clone(self);
        let reference = reference.clone();
        let path = format!("blobs/{digest}");
        tokio::spawn(async move {
            registry
                .http
                .get(&reference, &path, None, RequestKind::Blob)
                .await
        })
    }

    /// Starts downloading a layer blob (or takes the request resolve started); the returned reader yields
    /// its bytes as they arrive.
    pub(crate) async fn open_blob(
        self: &Arc<Self>,
        image: &RemoteImage,
        layer: &LayerInfo,
    ) -> Result<BlobReader> {
        let reference = &image.reference;
        let insecure = self.http.is_insecure(&reference.registry);
        let target = || Target::Blob("layer", &layer.digest);
        let pending = image
            .prefetch
            .take(&layer.digest, |digest| self.start_blob(reference, digest));
        let response = match pending {
            Some(task) => task
                .await
                .map_err(|e| AnalyzeError::Internal(format!("layer request task: {e}")))?,
            None => {
                let path = format!("blobs/{}", layer.digest);
                self.http
                    .get(reference, &path, None, RequestKind::Blob)
                    .await
            }
        }
        .map_err(|e| classify(e, insecure, target()))?;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let registry = reference.registry.clone();
        let digest = layer.digest.clone();
        tokio::spawn(async move {
            let mut stream = response.bytes_stream();
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| {
                    let mut err = transport(&e, &registry, true);
                    if let AnalyzeError::Connect { message, .. } = &mut err {
                        *message = format!("downloading layer {digest}: {message}");
                    }
                    err
                });
                let failed = item.is_err();
                // The reader hung up (the layer failed or was cancelled): stop downloading.
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            current: Bytes::new(),
        }))
    }
}

/// Blocking reader over the download task's chunks. Errors travel as `io::Error`s wrapping the
/// [`AnalyzeError`], which the layer pipeline unwraps to keep the classification.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// What a reference names in its registry.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The digest of the document the reference names (for a tag, what it points at now): an image
    /// manifest's, or an index's.
    pub digest: String,
    /// The index, when the reference names one.
    pub index: Option<Index>,
    /// An image manifest's layers as `(digest, compressed size)`, from the same request: what a job
    /// analyzing it would fetch, so a submitter can queue it with its estimated work. `None` for an index.
    pub layers: Option<Vec<(String, u64)>>,
}

impl Resolution {
    /// The manifest digest of each platform in `wanted` that the index lists ([`manifest::find_platform`],
    /// the analyzer's own choice), paired with the platform asked for; platforms it lacks are left out, and
    /// two asked-for platforms choosing one entry give it once. Empty for an image manifest. A malformed
    /// entry digest is an error: the index is hostile or broken.
    pub fn platform_manifests(&self, wanted: &[Platform]) -> Result<Vec<(Platform, String)>> {
        let Some(index) = &self.index else {
            return Ok(Vec::new());
        };
        let mut out: Vec<(Platform, String)> = Vec::new();
        for want in wanted {
            if let Some(entry) = manifest::find_platform(index, want) {
                manifest::check_digest(&entry.digest, &format!("index entry for {want}"))?;
                if !out.iter().any(|(_, d)| *d == entry.digest) {
                    out.push((want.clone(), entry.digest.clone()));
                }
            }
        }
        Ok(out)
    }
}

/// Resolves references to manifest digests with a shared client (connections and tokens reused), for
/// callers that need an image's identity but not its contents (the admission webhook).
#[derive(Clone)]
pub struct DigestResolver {
    registry: Arc<Registry>,
    platform: Platform,
}

impl std::fmt::Debug for DigestResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestResolver")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl DigestResolver {
    /// A resolver with these registry options, picking `platform` from multi-arch indexes (as the
    /// analyzer does, so the digest is the one its analysis is stored under).
    pub fn new(options: RegistryOptions, platform: Platform) -> Self {
        DigestResolver {
            registry: Arc::new(Registry::new(options)),
            platform,
        }
    }

    /// The manifest digest (`sha256:...`) of `reference` (`host/repo:tag`); a 404 is
    /// [`AnalyzeError::ManifestUnknown`].
    pub async fn manifest_digest(&self, reference: &str) -> Result<String> {
        self.registry
            .manifest_digest(reference, &self.platform)
            .await
    }

    /// What `reference` (a tag or a digest reference) names: one manifest, or an index with its
    /// platform manifests, from one manifest request; a 404 is [`AnalyzeError::ManifestUnknown`].
    pub async fn resolve(&self, reference: &str) -> Result<Resolution> {
        self.registry.lookup(reference).await
    }
}

/// The canonical form of a registry reference (`alpine` → `docker.io/library/alpine:latest`), so one
/// image submitted under two spellings is deduplicated as one. Errors say what does not parse.
pub fn canonical_reference(reference: &str) -> Result<String, String> {
    let parsed = ImageRef::parse(reference)?;
    // The distribution spec allows only lowercase repository names; registries refuse the others later
    // with a less helpful message.
    if parsed.repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "repository name {:?} must be lowercase",
            parsed.repository
        ));
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod canonical_tests {
    use super::canonical_reference;

    #[test]
    fn spellings_of_one_image_agree_and_garbage_is_refused() {
        assert_eq!(
            canonical_reference("alpine").unwrap(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            canonical_reference("127.0.0.1:5000/app:1").unwrap(),
            "127.0.0.1:5000/app:1"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            canonical_reference(&format!("ghcr.io/o/app@{digest}")).unwrap(),
            format!("ghcr.io/o/app@{digest}")
        );
        for bad in ["", "UPPER/case", "a b", "app@sha256:short", "app:"] {
            assert!(canonical_reference(bad).is_err(), "{bad:?}");
        }
    }
}
