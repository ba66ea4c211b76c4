//! Builds images in memory: layer tars from [`SampleEntry`]s (or raw bytes, for hostile inputs),
//! compressed with gzip or zstd, plus config and manifest; written as OCI layouts or docker archives.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::samples::{SampleEntry, SampleImage, SampleKind};
use fathom_analyzer::source::manifest::{sha256_digest, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use fathom_analyzer::source::Platform;

/// Layer compression for built images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Plain tar.
    None,
    /// gzip (level 6, like `docker push`).
    Gzip,
    /// zstd (level 3).
    Zstd,
}

impl Compress {
    /// The OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compress::None => "application/vnd.oci.image.layer.v1.tar",
            Compress::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compress::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Compresses `data`.
    pub fn apply(self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        match self {
            Compress::None => Ok(data.to_vec()),
            Compress::Gzip => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
                enc.write_all(data)?;
                enc.finish()
            }
            Compress::Zstd => zstd::stream::encode_all(data, 3),
        }
    }
}

/// Serializes sample entries as a tar (GNU headers, long names supported), in the given order.
pub fn layer_tar(entries: &[SampleEntry]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let path = e.path.trim_start_matches('/');
        let mut header = tar::Header::new_gnu();
        header.set_mode(e.mode);
        header.set_mtime(1_700_000_000);
        match &e.kind {
            SampleKind::File(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, path, bytes.as_slice())?;
            }
            SampleKind::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty())?;
            }
            SampleKind::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
            SampleKind::HardLink(target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder.append_link(&mut header, path, target.trim_start_matches('/'))?;
            }
        }
    }
    builder.into_inner()
}

/// One built layer blob.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    /// Stored bytes.
    pub blob: Vec<u8>,
    /// Media type to put in the manifest.
    pub media_type: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
}

impl BuiltLayer {
    /// A layer from a tar.
    pub fn from_tar(tar: &[u8], compress: Compress) -> std::io::Result<Self> {
        Ok(BuiltLayer {
            blob: compress.apply(tar)?,
            media_type: compress.media_type().to_string(),
            diff_id: sha256_digest(tar),
        })
    }

    /// Digest of the stored blob.
    pub fn digest(&self) -> String {
        sha256_digest(&self.blob)
    }
}

/// An image held in memory: config, manifest and layer blobs.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// Name (repository name when pushed, ref name in a layout).
    pub name: String,
    /// Platform written in the config and index.
    pub platform: Platform,
    /// Config JSON.
    pub config: Vec<u8>,
    /// Manifest JSON.
    pub manifest: Vec<u8>,
    /// Layers, base first.
    pub layers: Vec<BuiltLayer>,
}

impl BuiltImage {
    /// Builds an image from a sample description.
    pub fn from_sample(sample: &SampleImage, compress: Compress) -> std::io::Result<Self> {
        let layers = sample
            .layers
            .iter()
            .map(|entries| BuiltLayer::from_tar(&layer_tar(entries)?, compress))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Self::from_layers(&sample.name, Platform::default(), layers))
    }

    /// Builds config and manifest around the given layers (which may be deliberately broken).
    pub fn from_layers(name: &str, platform: Platform, layers: Vec<BuiltLayer>) -> Self {
        let mut image = BuiltImage {
            name: name.to_string(),
            platform,
            config: Vec::new(),
            manifest: Vec::new(),
            layers,
        };
        image.rebuild();
        image
    }

    /// Recomputes config and manifest after `layers` (or their media types) were changed.
    pub fn rebuild(&mut self) {
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let mut config = json!({
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        });
        if let Some(v) = &self.platform.variant {
            config["variant"] = json!(v);
        }
        self.config = config.to_string().into_bytes();
        self.set_manifest(|_| {});
    }

    /// Rewrites the manifest, letting `edit` change it (e.g. to point at a missing blob).
    pub fn set_manifest(&mut self, edit: impl FnOnce(&mut serde_json::Value)) {
        let layers: Vec<serde_json::Value> = self
            .layers
            .iter()
            .map(|l| json!({"mediaType": l.media_type, "digest": l.digest(), "size": l.blob.len()}))
            .collect();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(&self.config),
                "size": self.config.len(),
            },
            "layers": layers,
        });
        edit(&mut manifest);
        self.manifest = manifest.to_string().into_bytes();
    }

    /// Digest of the manifest.
    pub fn manifest_digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// The manifest's media type (OCI unless edited).
    pub fn manifest_media_type(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.manifest)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| OCI_MANIFEST.to_string())
    }

    /// Switches to a Docker v2 schema 2 manifest with Docker layer media types (gzip layers only).
    pub fn as_docker_v2(&mut self) {
        for l in &mut self.layers {
            if l.media_type == Compress::Gzip.media_type() {
                l.media_type = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
            }
        }
        self.set_manifest(|m| {
            m["mediaType"] = json!(DOCKER_MANIFEST);
            m["config"]["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
        });
    }
}

/// An index over several built images (one per platform).
pub fn index_json(images: &[&BuiltImage]) -> Vec<u8> {
    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|i| {
            let mut platform =
                json!({"os": i.platform.os, "architecture": i.platform.architecture});
            if let Some(v) = &i.platform.variant {
                platform["variant"] = json!(v);
            }
            json!({
                "mediaType": i.manifest_media_type(),
                "digest": i.manifest_digest(),
                "size": i.manifest.len(),
                "platform": platform,
            })
        })
        .collect();
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
        .to_string()
        .into_bytes()
}

fn write_blob(dir: &Path, bytes: &[u8]) -> std::io::Result<String> {
    let digest = sha256_digest(bytes);
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs)?;
    std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes)?;
    Ok(digest)
}

/// What an OCI layout's `index.json` lists under one ref name.
pub enum LayoutEntry<'a> {
    /// A single-platform image.
    Image(&'a BuiltImage),
    /// A multi-platform index of these images.
    Index(Vec<&'a BuiltImage>),
}

/// Writes an OCI image layout holding the given entries, each tagged with its ref name.
pub fn write_oci_layout(dir: &Path, entries: &[(&str, LayoutEntry<'_>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let mut manifests = Vec::new();
    let write_image = |image: &BuiltImage| -> std::io::Result<()> {
        for l in &image.layers {
            write_blob(dir, &l.blob)?;
        }
        write_blob(dir, &image.config)?;
        write_blob(dir, &image.manifest)?;
        Ok(())
    };
    for (name, entry) in entries {
        let (digest, size, media_type) = match entry {
            LayoutEntry::Image(image) => {
                write_image(image)?;
                (
                    image.manifest_digest(),
                    image.manifest.len(),
                    image.manifest_media_type(),
                )
            }
            LayoutEntry::Index(images) => {
                for image in images {
                    write_image(image)?;
                }
                let index = index_json(images);
                let digest = write_blob(dir, &index)?;
                (digest, index.len(), OCI_INDEX.to_string())
            }
        };
        manifests.push(json!({
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": name},
        }));
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    std::fs::write(dir.join("index.json"), index.to_string())
}

/// Writes a `docker save` style tarball (`manifest.json`, `<hex>.json` config, `<n>/layer.tar`).
pub fn write_docker_archive(path: &Path, image: &BuiltImage, tag: &str) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    let mut add = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, bytes)
    };
    let config_name = format!("{}.json", &sha256_digest(&image.config)["sha256:".len()..]);
    add(&config_name, &image.config)?;
    let mut layer_names = Vec::new();
    for (i, layer) in image.layers.iter().enumerate() {
        let name = format!("{i}/layer.tar");
        add(&name, &layer.blob)?;
        layer_names.push(name);
    }
    let manifest = json!([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}]);
    add("manifest.json", manifest.to_string().as_bytes())?;
    builder.into_inner()?.flush()
}
