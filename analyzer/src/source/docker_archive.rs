//! `docker save` tarballs: `manifest.json` + config + one tar per layer, read in place (layers are streamed
//! from their offset in the archive, never extracted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::manifest::{self, sha256_digest};
use super::{BlobReader, Fetcher, ImageInfo, LayerInfo, ResolvedImage};
use crate::error::{AnalyzeError, Result};

/// Metadata files (manifest.json, config) are small; refuse absurd ones instead of buffering them.
const MAX_METADATA_BYTES: u64 = 16 << 20;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An indexed archive: where each member lives inside the tarball.
pub(crate) struct Archive {
    path: PathBuf,
    members: HashMap<String, (u64, u64)>,
    /// Layer digest → member name.
    layers: HashMap<String, String>,
}

impl Archive {
    fn index(path: &Path) -> Result<Self> {
        let display = path.display().to_string();
        let file = File::open(path).map_err(|e| AnalyzeError::io(&display, e))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let entries = archive
            .entries_with_seek()
            .map_err(|e| AnalyzeError::io(&display, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| AnalyzeError::io(&display, e))?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let name = String::from_utf8_lossy(&entry.path_bytes())
                .trim_start_matches("./")
                .to_string();
            members.insert(name, (entry.raw_file_position(), entry.size()));
        }
        Ok(Archive {
            path: path.to_path_buf(),
            members,
            layers: HashMap::new(),
        })
    }

    fn member(&self, name: &str) -> Result<(u64, u64)> {
        let name = name.trim_start_matches("./");
        self.members.get(name).copied().ok_or_else(|| {
            AnalyzeError::invalid_image(
                format!("docker archive {}", self.path.display()),
                format!("member {name} is missing"),
            )
        })
    }

    fn open_member(&self, name: &str) -> Result<(std::io::Take<File>, u64)> {
        let (offset, size) = self.member(name)?;
        let display = self.path.display().to_string();
        let mut file = File::open(&self.path).map_err(|e| AnalyzeError::io(&display, e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| AnalyzeError::io(&display, e))?;
        Ok((file.take(size), size))
    }

    fn read_member(&self, name: &str) -> Result<Vec<u8>> {
        let (reader, size) = self.open_member(name)?;
        if size > MAX_METADATA_BYTES {
            return Err(AnalyzeError::invalid_image(
                name,
                format!("{size} bytes is too large for image metadata"),
            ));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        let display = self.path.display().to_string();
        let mut reader = reader;
        reader
            .read_to_end(&mut bytes)
            .map_err(|e| AnalyzeError::io(&display, e))?;
        Ok(bytes)
    }

    pub(crate) fn open_layer(&self, layer: &LayerInfo) -> Result<BlobReader> {
        let name = self
            .layers
            .get(&layer.digest)
            .ok_or_else(|| AnalyzeError::BlobMissing {
                what: "layer".into(),
                digest: layer.digest.clone(),
            })?;
        let (reader, _) = self.open_member(name)?;
        Ok(Box::new(reader))
    }
}

/// Reads `manifest.json` and the config; names each layer by the digest of its member's bytes.
pub(super) fn resolve(path: &Path, source_text: &str) -> Result<ResolvedImage> {
    let mut archive = Archive::index(path)?;
    let manifest_bytes = archive.read_member("manifest.json")?;
    let manifests: Vec<ArchiveManifest> = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| AnalyzeError::invalid_image("manifest.json", e))?;
    let m = match manifests.as_slice() {
        [one] => one,
        [] => return Err(AnalyzeError::invalid_image("manifest.json", "no image")),
        _ => {
            return Err(AnalyzeError::InvalidSource {
                source_text: source_text.to_string(),
                message: "archives with several images are not supported".into(),
            })
        }
    };
    let config_bytes = archive.read_member(&m.config)?;
    let config = manifest::parse_config(&config_bytes, "config")?;
    let mut layers = Vec::with_capacity(m.layers.len());
    for (i, member) in m.layers.iter().enumerate() {
        let (_, size) = archive.member(member)?;
        let digest = member_digest(&archive, member)?;
        archive.layers.insert(digest.clone(), member.clone());
        layers.push(LayerInfo {
            digest,
            size,
            media_type: String::new(),
            diff_id: config.rootfs.diff_ids.get(i).cloned(),
        });
    }
    // The archive has no manifest blob; its identity is the config (what `docker images` calls the ID).
    let config_digest = sha256_digest(&config_bytes);
    Ok(ResolvedImage {
        info: ImageInfo {
            source: source_text.to_string(),
            reference: m
                .repo_tags
                .as_ref()
                .and_then(|t| t.first().cloned())
                .unwrap_or_default(),
            manifest_digest: config_digest.clone(),
            index_digest: None,
            config_digest,
            platform: config.platform(),
            config: super::facts::ConfigFacts::from_config(&config_bytes),
            layers,
        },
        fetcher: Fetcher::DockerArchive(std::sync::Arc::new(archive)),
    })
}

/// Newer archives name layers `blobs/sha256/<hex>`; older ones `<id>/layer.tar`, whose digest we compute
/// (hashing a member is far cheaper than decompressing it, and it is what the pipeline verifies).
fn member_digest(archive: &Archive, member: &str) -> Result<String> {
    if let Some(hex) = member
        .trim_start_matches("./")
        .strip_prefix("blobs/sha256/")
    {
        let digest = format!("sha256:{hex}");
        if manifest::check_digest(&digest, "layer").is_ok() {
            return Ok(digest);
        }
    }
    use sha2::Digest;
    let (mut reader, _) = archive.open_member(member)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| AnalyzeError::io(archive.path.display().to_string(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}
