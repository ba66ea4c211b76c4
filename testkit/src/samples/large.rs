//! A large image for the benchmark: tens of thousands of files, ~150 MB uncompressed, deterministic
//! pseudo-random contents that compress about like real binaries and text (gzip ratio ~2.5–3×).

use super::debian::debian_base_layer;
use super::{dir, file, SampleEntry, SampleImage};

pub use fathom_analyzer::fixtures::bytes::code_like_bytes;
use fathom_analyzer::fixtures::bytes::Rng;

/// Text-like bytes (words from a small vocabulary), for docs and sources in the large image.
fn text_like_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "package",
        "function",
        "return",
        "value",
        "error",
        "config",
        "server",
        "request",
        "data",
        "file",
        "path",
        "version",
        "license",
        "copyright",
        "module",
        "import",
        "string",
        "int",
        "struct",
    ];
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng.next_u64();
        out.extend_from_slice(WORDS[r as usize % WORDS.len()].as_bytes());
        out.push(if r.is_multiple_of(13) { b'\n' } else { b' ' });
        if r.is_multiple_of(97) {
            out.extend_from_slice(format!("{:x}", rng.next_u64()).as_bytes());
        }
    }
    out.truncate(len);
    out
}

/// The large image: the Debian base, then two layers of ~70 MB each spread over ~15,000 files per layer
/// (sizes skewed small, a few multi-MiB "binaries"), the second overwriting part of the first.
pub fn large_image() -> SampleImage {
    let mut layers = vec![debian_base_layer()];
    for (layer_no, files) in [(1u64, 15_000usize), (2, 15_000)] {
        let mut rng = Rng(0x1a2b_3c4d ^ layer_no);
        let mut entries: Vec<SampleEntry> = Vec::with_capacity(files + 400);
        let mut total = 0usize;
        for i in 0..files {
            let d = format!("/opt/big{layer_no}/pkg{:03}", i % 300);
            if i < 300 {
                entries.push(dir(&d));
            }
            let r = rng.next_u64();
            // Mostly small files; every 1000th is a multi-MiB executable.
            let size = if i.is_multiple_of(1000) {
                1_500_000 + (r as usize % 1_000_000)
            } else {
                256 + (r as usize % 6_000)
            };
            total += size;
            // The multi-MiB ones are executable: the binary catalogers buffer and reject them (not ELF).
            let (name, mode, bytes) = if i.is_multiple_of(1000) {
                (format!("{d}/bin{i}"), 0o755, code_like_bytes(size, r))
            } else if r.is_multiple_of(3) {
                (format!("{d}/lib{i}.so"), 0o644, code_like_bytes(size, r))
            } else {
                (format!("{d}/doc{i}.txt"), 0o644, text_like_bytes(size, r))
            };
            let mut e = file(&name, &bytes);
            e.mode = mode;
            entries.push(e);
        }
        debug_assert!(total > 50_000_000);
        layers.push(entries);
    }
    SampleImage {
        name: "large".into(),
        layers,
    }
}
