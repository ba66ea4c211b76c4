//! OCI image layout directories (`index.json` + `blobs/sha256/...`).

use std::path::{Path, PathBuf};

use super::manifest::{self, check_digest, sha256_digest, ManifestDoc, Platform};
use super::{BlobReader, Fetcher, ImageInfo, LayerInfo, ResolvedImage};
use crate::error::{AnalyzeError, Result};

/// Annotation naming an image in a layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

fn blob_path(dir: &Path, digest: &str, what: &str) -> Result<PathBuf> {
    check_digest(digest, what)?;
    let hex = &digest["sha256:".len()..];
    Ok(dir.join("blobs").join("sha256").join(hex))
}

/// Opens a blob of the layout for streaming.
pub(super) fn open_blob(dir: &Path, digest: &str, what: &str) -> Result<BlobReader> {
    let path = blob_path(dir, digest, what)?;
    match std::fs::File::open(&path) {
        Ok(f) => Ok(Box::new(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AnalyzeError::BlobMissing {
            what: what.to_string(),
            digest: digest.to_string(),
        }),
        Err(e) => Err(AnalyzeError::io(path.display().to_string(), e)),
    }
}

/// Reads a small blob whole and checks its digest.
fn read_blob(dir: &Path, digest: &str, what: &str) -> Result<Vec<u8>> {
    let path = blob_path(dir, digest, what)?;
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AnalyzeError::BlobMissing {
                what: what.to_string(),
                digest: digest.to_string(),
            })
        }
        Err(e) => return Err(AnalyzeError::io(path.display().to_string(), e)),
    };
    let actual = sha256_digest(&bytes);
    if actual != digest {
        return Err(AnalyzeError::DigestMismatch {
            what: what.to_string(),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

/// Reads `index.json`, picks the image (by ref name, or the only one) and its platform manifest.
pub(super) fn resolve(
    dir: &Path,
    reference: Option<&str>,
    platform: &Platform,
    source_text: &str,
) -> Result<ResolvedImage> {
    let index_path = dir.join("index.json");
    let index_bytes = std::fs::read(&index_path)
        .map_err(|e| AnalyzeError::io(index_path.display().to_string(), e))?;
    let index = match manifest::parse_manifest(&index_bytes, "index.json")? {
        ManifestDoc::Index(index) => index,
        ManifestDoc::Image(_) => {
            return Err(AnalyzeError::invalid_image(
                "index.json",
                "is an image manifest, not an index",
            ))
        }
    };
    let names = || -> Vec<String> {
        index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME).cloned())
            .collect()
    };
    let top = match reference {
        Some(r) => index
            .manifests
            .iter()
            .find(|d| {
                d.annotations.get(REF_NAME).map(String::as_str) == Some(r)
                    || d.annotations
                        .get("io.containerd.image.name")
                        .map(String::as_str)
                        == Some(r)
            })
            .ok_or_else(|| AnalyzeError::ManifestUnknown {
                reference: r.to_string(),
                message: format!(
                    "not in {}; it has: {}",
                    index_path.display(),
                    names().join(", ")
                ),
            })?,
        None => match index.manifests.as_slice() {
            [only] => only,
            [] => {
                return Err(AnalyzeError::invalid_image(
                    "index.json",
                    "the layout holds no image",
                ))
            }
            _ => {
                return Err(AnalyzeError::InvalidSource {
                    source_text: source_text.to_string(),
                    message: format!(
                        "the layout holds several images; add :REF, one of: {}",
                        names().join(", ")
                    ),
                })
            }
        },
    };
    let reference_name = reference
        .map(str::to_string)
        .or_else(|| top.annotations.get(REF_NAME).cloned())
        .unwrap_or_default();
    let mut digest = top.digest.clone();
    let mut index_digest = None;
    let mut bytes = read_blob(dir, &digest, "manifest")?;
    // Nested indexes are legal in a layout; bound the depth so a cycle cannot loop forever.
    for _ in 0..4 {
        match manifest::parse_manifest(&bytes, &format!("manifest {digest}"))? {
            ManifestDoc::Index(idx) => {
                let chosen = manifest::select_platform(&idx, platform, &format!("index {digest}"))?;
                index_digest = Some(digest.clone());
                digest = chosen.digest.clone();
                bytes = read_blob(dir, &digest, "manifest")?;
            }
            ManifestDoc::Image(m) => {
                let config_bytes = read_blob(dir, &m.config.digest, "config")?;
                let config = manifest::parse_config(&config_bytes, "config")?;
                let layers = layer_infos(&m, &config);
                return Ok(ResolvedImage {
                    info: ImageInfo {
                        source: source_text.to_string(),
                        reference: reference_name,
                        manifest_digest: digest,
                        index_digest,
                        config_digest: m.config.digest.clone(),
                        platform: config.platform(),
                        config: super::facts::ConfigFacts::from_config(&config_bytes),
                        layers,
                    },
                    fetcher: Fetcher::OciDir(dir.to_path_buf()),
                });
            }
        }
    }
    Err(AnalyzeError::invalid_image(
        "index.json",
        "indexes nested too deeply",
    ))
}

/// Pairs manifest layers with the config's diff ids.
pub(super) fn layer_infos(
    m: &manifest::Manifest,
    config: &manifest::ImageConfig,
) -> Vec<LayerInfo> {
    m.layers
        .iter()
        .enumerate()
        .map(|(i, l)| LayerInfo {
            digest: l.digest.clone(),
            size: l.size,
            media_type: l.media_type.clone(),
            diff_id: config.rootfs.diff_ids.get(i).cloned(),
        })
        .collect()
}
