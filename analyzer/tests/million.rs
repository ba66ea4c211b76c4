//! A layer of a million tiny entries: the analysis finishes with bounded memory (the file list is capped,
//! every entry is still counted). Its own test binary so the process's peak RSS is this test's alone.

mod support;

use std::io::Write;

use fathom_analyzer::layer::Limits;
use fathom_analyzer::source::manifest::sha256_digest;
use fathom_analyzer::{AnalyzerOptions, ImageSource, NoCache};
use sha2::Digest;
use support::*;

/// Streams a plain tar to disk while hashing it, so the test itself never holds the layer in memory.
struct HashingFile {
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

fn peak_rss_mib() -> u64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as u64 / 1024
}

#[test]
fn a_million_tiny_entries_in_bounded_memory() {
    const ENTRIES: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let tmp = blobs.join("layer.tmp");
    let mut out = HashingFile {
        file: std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap()),
        hasher: sha2::Sha256::new(),
        len: 0,
    };
    let started = std::time::Instant::now();
    // Headers are stamped from a template (the tar crate's builder costs far more per entry in debug builds).
    let mut template = tar::Header::new_ustar();
    template.set_size(0);
    template.set_mode(0o644);
    template.set_mtime(0);
    template.set_entry_type(tar::EntryType::Regular);
    for i in 0..ENTRIES {
        let mut header = template.clone();
        let name = format!("d{}/f{i}", i % 1000);
        header.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        out.write_all(header.as_bytes()).unwrap();
    }
    let mut builder = tar::Builder::new(out);
    let mut marker = tar::Header::new_gnu();
    marker.set_size(7);
    marker.set_mode(0o644);
    builder
        .append_data(&mut marker, "last.pkglist", &b"last 1\n"[..])
        .unwrap();
    let mut out = builder.into_inner().unwrap();
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
        dir.path().join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest.len()}]}).to_string(),
    )
    .unwrap();
    eprintln!("built in {:?}", started.elapsed());
    let before = peak_rss_mib();
    let options = AnalyzerOptions {
        limits: Limits {
            max_recorded_files: 100_000,
            ..Limits::default()
        },
        ..Default::default()
    };
    let source = ImageSource::OciDir {
        path: dir.path().to_path_buf(),
        reference: None,
    };
    let analysis = runtime()
        .block_on(list_analyzer(options).analyze(&source, &NoCache))
        .unwrap();
    let after = peak_rss_mib();
    eprintln!(
        "analyzed in {:?}; peak RSS {before} -> {after} MiB",
        started.elapsed()
    );
    assert_eq!(analysis.layers[0].entries, ENTRIES + 1);
    assert_eq!(dated(&analysis), vec![("last".into(), "1".into(), 0, 0)]);
    assert!(analysis.files.truncated);
    assert!(
        analysis
            .warnings
            .iter()
            .any(|w| w.contains("1000001 entries, only 100001 recorded")),
        "{:?}",
        analysis.warnings
    );
    // 100k recorded entries cost ~10 MiB; recording all million would cost over 100 MiB.
    assert!(
        after < before + 96,
        "peak RSS grew from {before} MiB to {after} MiB"
    );
}
