//! Walks one layer's tar once: records entries and whiteouts, buffers only the files a cataloger wants
//! (each under its cap), catalogs them on the spot, and turns every failure into a classified error that
//! names the layer and the entry.

use std::io::{self, BufRead, BufReader, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::decode::{Compression, InflateGuard, RawReader};
use super::path::{join, normalize, split};
use super::{DistroRecord, FileEntry, FileKind, LayerResult, Limits};
use crate::catalog::{Cataloger, EntryMeta, FileInput, Want};
use crate::content::clamd::{self, LayerMalwareScan, ScanError, Verdict};
use crate::content::{ContentPass, ContentWant};
use crate::error::{AnalyzeError, Result};
use crate::source::{BlobReader, LayerInfo};

/// Bytes read from the stored blob per system call; large enough to keep the inflater busy.
const READ_BUFFER: usize = 256 * 1024;

/// Largest file buffer kept between files (the content pass reads files up to 1 MiB by default).
const KEEP_BUFFER: usize = 4 << 20;

/// What one layer's analysis needs besides the blob.
pub struct LayerContext<'a> {
    /// The layer.
    pub layer: &'a LayerInfo,
    /// Catalogers to offer files to.
    pub catalogers: &'a [Box<dyn Cataloger>],
    /// The content pass (file digests, secrets, content search, copyright licenses).
    pub content: &'a ContentPass,
    /// Per-layer limits.
    pub limits: &'a Limits,
    /// Bytes inflated so far by every layer of the image (shared with the other layers).
    pub image_inflated: &'a AtomicU64,
    /// Cap on `image_inflated`.
    pub image_cap: u64,
    /// Set when another layer failed: stop early.
    pub cancel: &'a AtomicBool,
}

/// Why the walk stopped early.
enum Stop {
    Io(io::Error, Option<String>),
    Hostile(String, Option<String>),
    Corrupt(String, Option<String>),
    /// The malware scanner failed (not the layer): the message names clamd and the file.
    Scanner(String, String),
    Cancelled,
}

/// Analyzes one layer blob. Blocking and CPU-bound: run it on a rayon thread.
pub fn analyze_blob(reader: BlobReader, ctx: &LayerContext<'_>) -> Result<LayerResult> {
    let layer = ctx.layer;
    let declared = Compression::from_media_type(&layer.media_type).map_err(|_| {
        AnalyzeError::UnsupportedMediaType {
            what: format!("layer {}", layer.digest),
            media_type: layer.media_type.clone(),
        }
    })?;
    let mut raw = RawReader::new(reader, (layer.size > 0).then_some(layer.size));
    let mut result = LayerResult {
        digest: layer.digest.clone(),
        compression: Compression::None,
        compressed_bytes: 0,
        inflated_bytes: 0,
        entries: 0,
        files: Vec::new(),
        files_truncated: false,
        whiteouts: Vec::new(),
        opaque_dirs: Vec::new(),
        packages: Vec::new(),
        distros: Vec::new(),
        secrets: Vec::new(),
        content_matches: Vec::new(),
        copyrights: Vec::new(),
        retrieved: Vec::new(),
        malware: ctx.content.clamd().map(|_| LayerMalwareScan {
            scanner: clamd::SCANNER.into(),
            ..Default::default()
        }),
        warnings: Vec::new(),
    };
    let compressed = raw.read.clone();
    let mut tripped = None;
    let walked = (|| -> std::result::Result<(), Stop> {
        let mut buffered = BufReader::with_capacity(READ_BUFFER, &mut raw);
        let head = buffered.fill_buf().map_err(|e| Stop::Io(e, None))?;
        let sniffed = Compression::sniff(head);
        result.compression = match (declared, sniffed) {
            (None, s) | (Some(Compression::None), s) => s,
            (Some(d), Compression::None) if !head.is_empty() => {
                return Err(Stop::Corrupt(
                    format!(
                        "media type says {d:?} but the blob does not start with its magic bytes"
                    ),
                    None,
                ))
            }
            (Some(_), s) => s,
        };
        let decoder: Box<dyn Read + '_> = match result.compression {
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(buffered)
                    .map_err(|e| Stop::Io(e, None))?,
            ),
            Compression::None => Box::new(buffered),
        };
        let guard = InflateGuard::new(
            decoder,
            compressed,
            ctx.limits,
            ctx.image_inflated,
            ctx.image_cap,
        );
        tripped = Some(guard.tripped.clone());
        let mut counted = Counted { inner: guard, n: 0 };
        let walk = walk_tar(&mut counted, ctx, &mut result);
        result.inflated_bytes = counted.n;
        walk
    })();
    result.compressed_bytes = raw.read.get();
    let tripped = tripped.and_then(|t| t.get());
    let digest_error = |raw: &mut RawReader| -> Option<AnalyzeError> {
        if let Some(e) = raw.source_error.take() {
            return Some(e);
        }
        if raw.oversize {
            return Some(AnalyzeError::DigestMismatch {
                what: format!("layer {}", layer.digest),
                expected: format!("{} ({} bytes)", layer.digest, layer.size),
                actual: "a longer blob".into(),
            });
        }
        let actual = raw.digest();
        (actual != layer.digest).then(|| AnalyzeError::DigestMismatch {
            what: format!("layer {}", layer.digest),
            expected: layer.digest.clone(),
            actual,
        })
    };
    match walked {
        Ok(()) => {
            if let Err(e) = raw.drain() {
                return Err(
                    digest_error(&mut raw).unwrap_or_else(|| AnalyzeError::CorruptLayer {
                        layer: layer.digest.clone(),
                        file: None,
                        message: format!("reading past the tar end: {e}"),
                    }),
                );
            }
            result.compressed_bytes = raw.read.get();
            match digest_error(&mut raw) {
                Some(e) => Err(e),
                None => Ok(result),
            }
        }
        Err(Stop::Cancelled) => Err(AnalyzeError::Internal("layer analysis cancelled".into())),
        Err(Stop::Scanner(message, file)) => Err(AnalyzeError::MalwareScanner {
            layer: layer.digest.clone(),
            file,
            message,
        }),
        Err(Stop::Hostile(message, file)) => Err(AnalyzeError::HostileInput {
            layer: layer.digest.clone(),
            file,
            message,
        }),
        Err(Stop::Io(e, file)) => Err(failure(&mut raw, tripped, layer, error_chain(&e), file)),
        Err(Stop::Corrupt(message, file)) => Err(failure(&mut raw, tripped, layer, message, file)),
    }
}

/// Classifies a walk that stopped on bad bytes: the source's own error first (network), then a tripped
/// inflation cap, then a digest mismatch (corruption usually means the bytes are not the ones the manifest
/// names), and only then a corrupt layer.
fn failure(
    raw: &mut RawReader,
    tripped: Option<&'static str>,
    layer: &LayerInfo,
    message: String,
    file: Option<String>,
) -> AnalyzeError {
    if let Some(e) = raw.source_error.take() {
        return e;
    }
    if let Some(why) = tripped {
        return AnalyzeError::HostileInput {
            layer: layer.digest.clone(),
            file,
            message: why.to_string(),
        };
    }
    if raw.oversize || raw.drain().is_ok() {
        if let Some(e) = raw.source_error.take() {
            return e;
        }
        let actual = raw.digest();
        if raw.oversize || actual != layer.digest {
            return AnalyzeError::DigestMismatch {
                what: format!("layer {}", layer.digest),
                expected: layer.digest.clone(),
                actual: if raw.oversize {
                    "a longer blob".into()
                } else {
                    actual
                },
            };
        }
    }
    AnalyzeError::CorruptLayer {
        layer: layer.digest.clone(),
        file,
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

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn walk_tar<R: Read>(
    reader: &mut R,
    ctx: &LayerContext<'_>,
    result: &mut LayerResult,
) -> std::result::Result<(), Stop> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| Stop::Io(e, None))?;
    let mut last: Option<String> = None;
    let mut interested: Vec<(usize, u64)> = Vec::with_capacity(ctx.catalogers.len());
    // Reused for every buffered file: small files are the common case and each would otherwise allocate.
    let mut buffer: Vec<u8> = Vec::new();
    // The malware scan's transfer buffer for files streamed from the tar (allocated on first use).
    let mut chunk: Vec<u8> = Vec::new();
    for entry in entries {
        if ctx.cancel.load(Ordering::Relaxed) {
            return Err(Stop::Cancelled);
        }
        let after = |last: &Option<String>| last.as_ref().map(|p| format!("entry after {p}"));
        let mut entry = entry.map_err(|e| Stop::Io(e, after(&last)))?;
        let raw_name = entry.path_bytes();
        let path = normalize(&raw_name)
            .map_err(|m| Stop::Hostile(m, Some(String::from_utf8_lossy(&raw_name).into_owned())))?;
        drop(raw_name);
        let header = entry.header();
        let size = entry.size();
        if size > ctx.limits.max_layer_inflated {
            return Err(Stop::Hostile(
                format!("tar header declares {size} bytes, more than a layer may inflate to"),
                Some(path),
            ));
        }
        let entry_type = header.entry_type();
        if matches!(
            entry_type,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        result.entries += 1;
        let (parent, name) = split(&path);
        if let Some(target) = name.strip_prefix(".wh.") {
            if target == ".wh..opq" {
                result.opaque_dirs.push(parent.to_string());
            } else if !target.is_empty() {
                result.whiteouts.push(join(parent, target));
            }
            last = Some(path);
            continue;
        }
        if path == "/" {
            continue;
        }
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let (kind, link) = match entry_type {
            tar::EntryType::Regular | tar::EntryType::Continuous => (FileKind::File, None),
            tar::EntryType::Directory => (FileKind::Dir, None),
            tar::EntryType::Symlink => (
                FileKind::Symlink,
                entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
            ),
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target = normalize(&target).map_err(|m| {
                    Stop::Hostile(format!("hard link target: {m}"), Some(path.clone()))
                })?;
                (FileKind::HardLink, Some(target))
            }
            _ => (FileKind::Other, None),
        };
        let mut wanted = false;
        let mut sha256 = None;
        if kind == FileKind::File {
            let meta = EntryMeta {
                path: &path,
                mode,
                size,
            };
            interested.clear();
            for (i, c) in ctx.catalogers.iter().enumerate() {
                if let Want::UpTo { max_bytes } = c.wants(&meta) {
                    interested.push((i, max_bytes));
                }
            }
            let content = ctx.content.wants(&path, size);
            wanted = !interested.is_empty();
            let largest_cap = interested.iter().map(|&(_, cap)| cap).max().unwrap_or(0);
            // `catalog_file` reads the whole file into `buffer` when the content pass wants its bytes or
            // a cataloger's cap admits it; otherwise the entry is still unread.
            let buffered = content.any() || (wanted && size <= largest_cap);
            if wanted || content.any() {
                sha256 = catalog_file(
                    &mut entry,
                    &meta,
                    &interested,
                    content,
                    &mut buffer,
                    ctx,
                    result,
                )?;
            }
            if let (true, Some(clamd)) = (content.malware, ctx.content.clamd()) {
                if chunk.is_empty() {
                    chunk = vec![0; clamd::CHUNK];
                }
                let verdict = if buffered {
                    clamd.scan(&mut &buffer[..size as usize], size, &mut chunk)
                } else {
                    clamd.scan(&mut entry, size, &mut chunk)
                };
                let verdict = verdict.map_err(|e| match e {
                    ScanError::Source(e) => Stop::Io(e, Some(path.clone())),
                    ScanError::Scanner(m) => Stop::Scanner(m, path.clone()),
                })?;
                if let Some(scan) = result.malware.as_mut() {
                    scan.scanned += 1;
                    if let Verdict::Found(signature) = verdict {
                        scan.findings.push(clamd::MalwareFinding {
                            path: path.clone(),
                            signature,
                        });
                    }
                }
            } else if let (Some(scan), Some(clamd)) = (result.malware.as_mut(), ctx.content.clamd())
            {
                if size > clamd.options().max_file_size {
                    scan.skipped_large += 1;
                }
            }
            // A package database can be hundreds of MiB: do not hold that much for the rest of the layer.
            if buffer.len() > KEEP_BUFFER {
                buffer = Vec::new();
            }
        }
        let file_size = if kind == FileKind::File { size } else { 0 };
        if wanted || result.files.len() < ctx.limits.max_recorded_files {
            result.files.push(FileEntry {
                path: path.clone(),
                kind,
                mode,
                uid,
                gid,
                size: file_size,
                link,
                sha256,
            });
        } else {
            result.files_truncated = true;
        }
        last = Some(path);
    }
    Ok(())
}

/// Buffers one file (once) for the catalogers that want it and the content pass; returns its sha256 when
/// the content pass hashed it.
#[allow(clippy::too_many_arguments)]
fn catalog_file<R: Read>(
    entry: &mut R,
    meta: &EntryMeta<'_>,
    interested: &[(usize, u64)],
    content: ContentWant,
    bytes: &mut Vec<u8>,
    ctx: &LayerContext<'_>,
    result: &mut LayerResult,
) -> std::result::Result<Option<String>, Stop> {
    let digest = &ctx.layer.digest;
    let largest_cap = interested.iter().map(|&(_, cap)| cap).max().unwrap_or(0);
    let skip_warning = |name: &str, cap: u64| {
        format!(
            "layer {digest}: {name}: {} skipped: {} bytes is over its {cap}-byte cap",
            meta.path, meta.size
        )
    };
    if meta.size > largest_cap {
        for &(i, cap) in interested {
            result
                .warnings
                .push(skip_warning(ctx.catalogers[i].name(), cap));
        }
        if !content.any() {
            return Ok(None);
        }
    }
    // The size is under a cataloger's or the content pass's cap (`wants` checked it), so this allocation
    // is bounded by the caps, not by the tar header. The buffer only grows (zeroed once): `read_to_end`
    // into a cleared one would zero every file's worth of it again before reading.
    let size = meta.size as usize;
    if bytes.len() < size {
        bytes.resize(size, 0);
    }
    let mut filled = 0;
    while filled < size {
        match entry.read(&mut bytes[filled..size]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Stop::Io(e, Some(meta.path.to_string()))),
        }
    }
    if filled != size {
        return Err(Stop::Corrupt(
            format!("file ends after {filled} of {} bytes", meta.size),
            Some(meta.path.to_string()),
        ));
    }
    let bytes = &bytes[..size];
    let found = ctx.content.examine(meta.path, content, bytes);
    result.secrets.extend(found.secrets);
    result.content_matches.extend(found.matches);
    result.copyrights.extend(found.copyright);
    result.retrieved.extend(found.retrieved);
    if let Some(why) = found.withheld {
        result.warnings.push(format!("layer {digest}: {why}"));
    }
    if meta.size > largest_cap {
        return Ok(found.sha256);
    }
    let input = FileInput { meta: *meta, bytes };
    for &(i, cap) in interested {
        let cataloger = &ctx.catalogers[i];
        if meta.size > cap {
            result.warnings.push(skip_warning(cataloger.name(), cap));
            continue;
        }
        // A cataloger bug must cost one file, not the worker process.
        match catch_unwind(AssertUnwindSafe(|| cataloger.catalog(&input))) {
            Ok(Ok(found)) => {
                for mut package in found.packages {
                    for location in &mut package.locations {
                        if location.layer_digest.is_empty() {
                            location.layer_digest = digest.clone();
                        }
                    }
                    result.packages.push(package);
                }
                if let Some(distro) = found.distro {
                    result.distros.push(DistroRecord {
                        path: meta.path.to_string(),
                        distro,
                    });
                }
            }
            Ok(Err(e)) => result.warnings.push(format!("layer {digest}: {e}")),
            Err(_) => result.warnings.push(format!(
                "layer {digest}: {}: {}: cataloger panicked",
                cataloger.name(),
                meta.path
            )),
        }
    }
    Ok(found.sha256)
}
