//! Registry sources through `oci-client`: auth, manifest and platform resolution, and blob streams that
//! feed a blocking reader through a small bounded channel (download overlaps decompression, and at most
//! a few chunks per layer wait in memory).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::mpsc;

use super::auth::Credentials;
use super::manifest::{self, sha256_digest, ManifestDoc, Platform};
use super::oci_dir::layer_infos;
use super::{BlobReader, Fetcher, ImageInfo, LayerInfo, ResolvedImage};
use crate::error::{AnalyzeError, Result};

/// Chunks (typically 8–64 KiB each) buffered between the download task and the decompressor.
const CHANNEL_CHUNKS: usize = 32;

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

/// A registry client shared by every image an analyzer resolves (connections and tokens are reused).
pub(crate) struct Registry {
    client: Client,
    options: RegistryOptions,
}

/// What a failing request was after, to classify a 404.
enum Target<'a> {
    Manifest(&'a str),
    Blob(&'a str, &'a str),
}

impl Registry {
    pub(crate) fn new(options: RegistryOptions) -> Self {
        let config = oci_client::client::ClientConfig {
            protocol: oci_client::client::ClientProtocol::HttpsExcept(options.insecure.clone()),
            connect_timeout: Some(options.timeout),
            read_timeout: Some(options.timeout),
            ..Default::default()
        };
        Registry {
            client: Client::new(config),
            options,
        }
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        match self.options.credentials.for_host(reference.registry()) {
            Some(secret) => RegistryAuth::Basic(secret.username.clone(), secret.password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }

    /// The digest of the image manifest `reference_text` names for `platform` (in an index: the chosen
    /// entry's digest, the one an analysis is stored under), from one manifest request: no config, no
    /// layers.
    pub(crate) async fn manifest_digest(
        &self,
        reference_text: &str,
        platform: &Platform,
    ) -> Result<String> {
        let reference: Reference =
            reference_text
                .parse()
                .map_err(|e: oci_client::ParseError| AnalyzeError::InvalidSource {
                    source_text: reference_text.to_string(),
                    message: e.to_string(),
                })?;
        let auth = self.auth(&reference);
        let whole = reference.whole();
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&reference, &auth, &manifest::ACCEPTED)
            .await
            .map_err(|e| self.classify(e, &reference, Target::Manifest(&whole)))?;
        match manifest::parse_manifest(&bytes, &format!("manifest of {whole}"))? {
            ManifestDoc::Image(_) => Ok(digest),
            ManifestDoc::Index(index) => {
                let chosen =
                    manifest::select_platform(&index, platform, &format!("index of {whole}"))?;
                manifest::check_digest(&chosen.digest, "manifest")?;
                Ok(chosen.digest.clone())
            }
        }
    }

    /// Fetches the manifest (selecting `platform` in an index) and the config.
    pub(crate) async fn resolve(
        self: &Arc<Self>,
        reference_text: &str,
        platform: &Platform,
        source_text: &str,
    ) -> Result<ResolvedImage> {
        let reference: Reference =
            reference_text
                .parse()
                .map_err(|e: oci_client::ParseError| AnalyzeError::InvalidSource {
                    source_text: source_text.to_string(),
                    message: e.to_string(),
                })?;
        let auth = self.auth(&reference);
        let whole = reference.whole();
        let (mut bytes, mut digest) = self
            .client
            .pull_manifest_raw(&reference, &auth, &manifest::ACCEPTED)
            .await
            .map_err(|e| self.classify(e, &reference, Target::Manifest(&whole)))?;
        let mut index_digest = None;
        let manifest = match manifest::parse_manifest(&bytes, &format!("manifest of {whole}"))? {
            ManifestDoc::Image(m) => m,
            ManifestDoc::Index(index) => {
                let chosen =
                    manifest::select_platform(&index, platform, &format!("index of {whole}"))?;
                manifest::check_digest(&chosen.digest, "manifest")?;
                index_digest = Some(digest);
                let by_digest = reference.clone_with_digest(chosen.digest.clone());
                (bytes, digest) = self
                    .client
                    .pull_manifest_raw(&by_digest, &auth, &manifest::ACCEPTED)
                    .await
                    .map_err(|e| self.classify(e, &reference, Target::Manifest(&chosen.digest)))?;
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
        let config_desc = descriptor(
            &manifest.config.digest,
            manifest.config.size,
            &manifest.config.media_type,
        );
        let mut config_bytes = Vec::new();
        self.client
            .pull_blob(&reference, &config_desc, &mut config_bytes)
            .await
            .map_err(|e| {
                self.classify(
                    e,
                    &reference,
                    Target::Blob("config", &manifest.config.digest),
                )
            })?;
        let actual = sha256_digest(&config_bytes);
        if actual != manifest.config.digest {
            return Err(AnalyzeError::DigestMismatch {
                what: "config".into(),
                expected: manifest.config.digest.clone(),
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
                config_digest: manifest.config.digest.clone(),
                platform: config.platform(),
                layers,
            },
            fetcher: Fetcher::Registry(Arc::clone(self), Arc::new(reference)),
        })
    }

    /// Starts downloading a layer blob; the returned reader yields its bytes as they arrive.
    pub(crate) async fn open_blob(
        &self,
        reference: &Reference,
        layer: &LayerInfo,
    ) -> Result<BlobReader> {
        let desc = descriptor(&layer.digest, layer.size, &layer.media_type);
        let stream = self
            .client
            .pull_blob_stream(reference, &desc)
            .await
            .map_err(|e| self.classify(e, reference, Target::Blob("layer", &layer.digest)))?;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let registry = reference.registry().to_string();
        let digest = layer.digest.clone();
        tokio::spawn(async move {
            let mut stream = stream.stream;
            while let Some(item) = stream.next().await {
                let item = item.map_err(|e| stream_error(e, &registry, &digest));
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

    fn classify(
        &self,
        err: OciDistributionError,
        reference: &Reference,
        target: Target<'_>,
    ) -> AnalyzeError {
        let registry = reference.registry().to_string();
        let not_found = |message: String| match target {
            Target::Manifest(r) => AnalyzeError::ManifestUnknown {
                reference: r.to_string(),
                message,
            },
            Target::Blob(what, digest) => AnalyzeError::BlobMissing {
                what: what.to_string(),
                digest: digest.to_string(),
            },
        };
        match err {
            OciDistributionError::RequestError(e) => {
                let insecure = self.options.insecure.iter().any(|h| h == &registry);
                request_error(e, &registry, insecure, not_found)
            }
            OciDistributionError::ServerError { code, url, message } => match code {
                404 => not_found(message),
                401 | 403 => AnalyzeError::Unauthorized { registry, message },
                _ => AnalyzeError::RegistryStatus {
                    status: code,
                    url,
                    message,
                    retry_after: None,
                },
            },
            OciDistributionError::RegistryError { envelope, url } => {
                let message = envelope.to_string();
                match envelope.errors.first().map(|e| &e.code) {
                    Some(
                        OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound,
                    ) => not_found(message),
                    Some(OciErrorCode::BlobUnknown) => not_found(message),
                    Some(OciErrorCode::Unauthorized | OciErrorCode::Denied) => {
                        AnalyzeError::Unauthorized { registry, message }
                    }
                    Some(OciErrorCode::Toomanyrequests) => AnalyzeError::RegistryStatus {
                        status: 429,
                        url,
                        message,
                        retry_after: None,
                    },
                    _ => AnalyzeError::RegistryStatus {
                        status: 400,
                        url,
                        message,
                        retry_after: None,
                    },
                }
            }
            OciDistributionError::UnauthorizedError { url } => AnalyzeError::Unauthorized {
                registry,
                message: format!("not authorized for {url}"),
            },
            OciDistributionError::AuthenticationFailure(message) => {
                AnalyzeError::Unauthorized { registry, message }
            }
            OciDistributionError::ImageManifestNotFoundError(message) => not_found(message),
            OciDistributionError::UnsupportedMediaTypeError(media_type) => {
                AnalyzeError::UnsupportedMediaType {
                    what: "manifest".into(),
                    media_type,
                }
            }
            OciDistributionError::DigestError(e) => AnalyzeError::DigestMismatch {
                what: match target {
                    Target::Manifest(r) => format!("manifest {r}"),
                    Target::Blob(what, d) => format!("{what} {d}"),
                },
                expected: String::new(),
                actual: e.to_string(),
            },
            other => AnalyzeError::invalid_image(format!("registry {registry}"), other),
        }
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
}

fn descriptor(digest: &str, size: u64, media_type: &str) -> OciDescriptor {
    OciDescriptor {
        media_type: media_type.to_string(),
        digest: digest.to_string(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

fn request_error(
    e: reqwest::Error,
    registry: &str,
    insecure: bool,
    not_found: impl FnOnce(String) -> AnalyzeError,
) -> AnalyzeError {
    if let Some(status) = e.status() {
        return match status.as_u16() {
            404 => not_found(e.to_string()),
            401 | 403 => AnalyzeError::Unauthorized {
                registry: registry.to_string(),
                message: e.to_string(),
            },
            code => AnalyzeError::RegistryStatus {
                status: code,
                url: e.url().map(|u| u.to_string()).unwrap_or_default(),
                message: e.to_string(),
                retry_after: None,
            },
        };
    }
    let mut message = error_chain(&e);
    if e.is_timeout() {
        return AnalyzeError::Timeout {
            registry: registry.to_string(),
            message,
        };
    }
    if !insecure {
        message.push_str(&format!(
            " (if {registry} serves plain HTTP, allow it with --insecure-registry {registry})"
        ));
    }
    AnalyzeError::Connect {
        registry: registry.to_string(),
        message,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Mid-stream failures: a digest mismatch detected by oci-client is permanent; anything else is the
/// network (retryable).
fn stream_error(e: std::io::Error, registry: &str, digest: &str) -> AnalyzeError {
    let text = error_chain(&e);
    let is_digest = e
        .get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>())
        || text.to_ascii_lowercase().contains("digest");
    if is_digest {
        AnalyzeError::DigestMismatch {
            what: format!("layer {digest}"),
            expected: digest.to_string(),
            actual: text,
        }
    } else {
        AnalyzeError::Connect {
            registry: registry.to_string(),
            message: format!("downloading layer {digest}: {text}"),
        }
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

/// The canonical form of a registry reference (`alpine` → `docker.io/library/alpine:latest`), so one
/// image submitted under two spellings is deduplicated as one. Errors say what does not parse.
pub fn canonical_reference(reference: &str) -> Result<String, String> {
    let parsed: Reference = reference.parse().map_err(|e| format!("{e}"))?;
    // The distribution spec allows only lowercase repository names; registries refuse the others later
    // with a less helpful message.
    if parsed.repository().bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "repository name {:?} must be lowercase",
            parsed.repository()
        ));
    }
    Ok(parsed.whole())
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
