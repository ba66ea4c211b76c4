//! Single-layer OCI directories whose (plain tar) layer is streamed to disk while hashed, so a test can
//! build layers far larger than it would want to hold in memory.

use std::io::Write;
use std::path::Path;

use fathom_analyzer::source::manifest::sha256_digest;
use fathom_analyzer::ImageSource;
use sha2::Digest;

/// A layer file being written and hashed.
pub struct HashingFile {
    file: std::io::BufWriter<std::fs::File>,
    hasher: sha2::Sha256,
    len: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Writes an OCI image layout in `dir` with one uncompressed layer whose bytes `write_layer` produces.
pub fn single_layer_oci_dir(
    dir: &Path,
    write_layer: impl FnOnce(HashingFile) -> HashingFile,
) -> ImageSource {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let tmp = blobs.join("layer.tmp");
    let out = HashingFile {
        file: std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap()),
        hasher: sha2::Sha256::new(),
        len: 0,
    };
    let mut out = write_layer(out);
    out.flush().unwrap();
    let digest = format!("sha256:{}", hex::encode(out.hasher.clone().finalize()));
    let size = out.len;
    drop(out);
    std::fs::rename(&tmp, blobs.join(&digest[7..])).unwrap();
    let config = serde_json::json!({"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": [digest]}})
        .to_string();
    let config_digest = sha256_digest(config.as_bytes());
    std::fs::write(blobs.join(&config_digest[7..]), &config).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}],
    })
    .to_string();
    let manifest_digest = sha256_digest(manifest.as_bytes());
    std::fs::write(blobs.join(&manifest_digest[7..]), &manifest).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len()}]}).to_string(),
    )
    .unwrap();
    ImageSource::OciDir {
        path: dir.to_path_buf(),
        reference: None,
    }
}

/// The process's peak resident set so far, in MiB.
pub fn peak_rss_mib() -> u64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as u64 / 1024
}
