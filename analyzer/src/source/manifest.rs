//! OCI and Docker v2 manifests, indexes and image configs: just the fields the analyzer reads, plus
//! platform selection in a multi-arch index.

use serde::{Deserialize, Serialize};

use crate::error::{AnalyzeError, Result};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker v2 schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type we accept, for registry `Accept` headers.
pub const ACCEPTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

/// An operating system / architecture pair (`linux/amd64`, `linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `os` (`linux`).
    pub os: String,
    /// `architecture` (`amd64`, `arm64`).
    pub architecture: String,
    /// `variant` (`v8`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = AnalyzeError;

    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || AnalyzeError::InvalidSource {
            source_text: s.to_string(),
            message: "platform must be OS/ARCH[/VARIANT], e.g. linux/arm64".into(),
        };
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(bad()),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor as manifests and indexes write it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:...`.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
    /// Platform of an index entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (`org.opencontainers.image.ref.name` in an OCI layout's index).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An image manifest (OCI or Docker v2 schema 2: the same shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    /// One entry per platform (and attestation manifests, which have platform `unknown/unknown`).
    pub manifests: Vec<Descriptor>,
}

impl Index {
    /// The platforms the index lists (`linux/amd64`, ...), in its order, without attestation entries.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(Platform::to_string)
            .collect()
    }
}

/// The image config fields the analyzer reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfig {
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Variant, if any.
    #[serde(default)]
    pub variant: Option<String>,
    /// Uncompressed layer digests.
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// Digests of the uncompressed layer tars, base first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone().filter(|v| !v.is_empty()),
        }
    }
}

/// A manifest document: either one image or an index of them.
#[derive(Debug, Clone)]
pub enum ManifestDoc {
    /// A single-platform image manifest.
    Image(Manifest),
    /// A multi-platform index.
    Index(Index),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or index, telling them apart by `mediaType` (or by shape when it is absent).
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ManifestDoc> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| AnalyzeError::invalid_image(what, e))?;
    if probe.schema_version == Some(1) {
        return Err(AnalyzeError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: "application/vnd.docker.distribution.manifest.v1+json".into(),
        });
    }
    let is_index = match probe.media_type.as_deref() {
        Some(OCI_INDEX) | Some(DOCKER_LIST) => true,
        Some(OCI_MANIFEST) | Some(DOCKER_MANIFEST) => false,
        None => probe.manifests.is_some(),
        Some(other) => {
            return Err(AnalyzeError::UnsupportedMediaType {
                what: what.to_string(),
                media_type: other.to_string(),
            })
        }
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(ManifestDoc::Index)
            .map_err(|e| AnalyzeError::invalid_image(what, e))
    } else {
        serde_json::from_slice(bytes)
            .map(ManifestDoc::Image)
            .map_err(|e| AnalyzeError::invalid_image(what, e))
    }
}

/// Parses an image config blob.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfig> {
    serde_json::from_slice(bytes).map_err(|e| AnalyzeError::invalid_image(what, e))
}

/// Picks the index entry for `want`. A missing variant matches the default variant of the architecture
/// (`arm64` means `arm64/v8`), as containerd's platform matcher does.
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    if let Some(d) = find_platform(index, want) {
        return Ok(d);
    }
    let available = index.platforms();
    Err(AnalyzeError::invalid_image(
        what,
        format!(
            "no manifest for platform {want}; available: {}",
            available.join(", ")
        ),
    ))
}

/// The index entry for `want` ([`select_platform`]'s choice), or none when the index lacks it.
pub fn find_platform<'a>(index: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    let default_variant = |arch: &str| match arch {
        "arm64" => Some("v8"),
        _ => None,
    };
    let norm = |p: &Platform| {
        p.variant
            .clone()
            .or_else(|| default_variant(&p.architecture).map(str::to_string))
    };
    let matching: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == want.os
                    && p.architecture == want.architecture
                    && (want.variant.is_none() || norm(p) == norm(want))
            })
        })
        .collect();
    matching
        .iter()
        .find(|d| d.platform.as_ref().map(norm) == Some(norm(want)))
        .or_else(|| matching.first())
        .copied()
}

/// Checks that `digest` is a well-formed sha256 digest, so it can safely name a file or URL path.
pub fn check_digest(digest: &str, what: &str) -> Result<()> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(AnalyzeError::invalid_image(
            what,
            format!("unsupported or malformed digest {digest:?} (only sha256 is supported)"),
        ))
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
            annotations: Default::default(),
        }
    }

    #[test]
    fn selects_platform_with_default_variant() {
        let index = Index {
            manifests: vec![
                entry("unknown", "unknown", None, "att"),
                entry("linux", "arm", Some("v7"), "armv7"),
                entry("linux", "arm64", Some("v8"), "arm64"),
                entry("linux", "amd64", None, "amd64"),
            ],
        };
        let pick = |s: &str| {
            select_platform(&index, &s.parse().unwrap(), "index")
                .map(|d| d.digest.clone())
                .map_err(|e| e.to_string())
        };
        assert_eq!(pick("linux/amd64").unwrap(), "amd64");
        assert_eq!(pick("linux/arm64").unwrap(), "arm64");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "arm64");
        assert_eq!(pick("linux/arm/v7").unwrap(), "armv7");
        let err = pick("linux/s390x").unwrap_err();
        assert!(err.contains("linux/amd64"), "{err}");
    }

    #[test]
    fn digest_must_be_sha256_hex() {
        assert!(check_digest(&sha256_digest(b"x"), "blob").is_ok());
        assert!(check_digest("sha256:../../etc/passwd", "blob").is_err());
        assert!(check_digest("md5:abc", "blob").is_err());
    }
}
