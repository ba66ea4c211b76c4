//! Reader adapters of the layer pipeline: digest verification and size accounting of the stored bytes,
//! compression detection, and the inflation guard that stops decompression bombs.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Limits;
use crate::error::AnalyzeError;
use crate::source::BlobReader;

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// A media type that is not a layer media type we can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a supported layer media type")]
pub struct NotALayer;

impl Compression {
    /// What a layer media type promises: `Ok(None)` when it says nothing (docker-archive members), `Err` for
    /// a media type that is not a layer we can read.
    pub fn from_media_type(media_type: &str) -> Result<Option<Compression>, NotALayer> {
        let base = media_type
            .strip_prefix("application/vnd.oci.image.layer.nondistributable.v1.")
            .or_else(|| media_type.strip_prefix("application/vnd.oci.image.layer.v1."));
        if let Some(rest) = base {
            return match rest {
                "tar" => Ok(Some(Compression::None)),
                "tar+gzip" => Ok(Some(Compression::Gzip)),
                "tar+zstd" => Ok(Some(Compression::Zstd)),
                _ => Err(NotALayer),
            };
        }
        match media_type {
            "" => Ok(None),
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Ok(Some(Compression::Gzip))
            }
            "application/vnd.docker.image.rootfs.diff.tar" => Ok(Some(Compression::None)),
            _ => Err(NotALayer),
        }
    }

    /// What the first bytes say.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Hashes and counts the stored bytes; refuses more bytes than the manifest declared.
pub(super) struct RawReader {
    inner: BlobReader,
    hasher: Sha256,
    pub(super) read: Rc<Cell<u64>>,
    declared: Option<u64>,
    /// The source's own classified failure (network error, registry-side digest error), kept intact.
    pub(super) source_error: Option<AnalyzeError>,
    pub(super) oversize: bool,
}

impl RawReader {
    pub(super) fn new(inner: BlobReader, declared: Option<u64>) -> Self {
        RawReader {
            inner,
            hasher: Sha256::new(),
            read: Rc::new(Cell::new(0)),
            declared,
            source_error: None,
            oversize: false,
        }
    }

    /// Reads whatever the decompressor left (tar padding, trailers) so the digest covers every byte.
    pub(super) fn drain(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }

    pub(super) fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl Read for RawReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                let total = self.read.get() + n as u64;
                self.read.set(total);
                if self.declared.is_some_and(|d| total > d) {
                    self.oversize = true;
                    return Err(io::Error::other("blob is larger than its manifest says"));
                }
                Ok(n)
            }
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<AnalyzeError>()) => {
                let message = e.to_string();
                if let Some(Ok(inner)) = e.into_inner().map(|b| b.downcast::<AnalyzeError>()) {
                    self.source_error = Some(*inner);
                }
                Err(io::Error::other(message))
            }
            Err(e) => Err(e),
        }
    }
}

/// Counts inflated bytes and stops a layer that inflates past the caps.
pub(super) struct InflateGuard<'a, R> {
    inner: R,
    inflated: u64,
    compressed: Rc<Cell<u64>>,
    limits: &'a Limits,
    image_total: &'a AtomicU64,
    image_cap: u64,
    pub(super) tripped: Rc<Cell<Option<&'static str>>>,
}

impl<'a, R: Read> InflateGuard<'a, R> {
    pub(super) fn new(
        inner: R,
        compressed: Rc<Cell<u64>>,
        limits: &'a Limits,
        image_total: &'a AtomicU64,
        image_cap: u64,
    ) -> Self {
        InflateGuard {
            inner,
            inflated: 0,
            compressed,
            limits,
            image_total,
            image_cap,
            tripped: Rc::new(Cell::new(None)),
        }
    }
}

impl<R: Read> Read for InflateGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let image_total = self.image_total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let compressed = self.compressed.get().max(1);
        let tripped = if self.inflated > self.limits.max_layer_inflated {
            Some("layer inflates past the per-layer cap")
        } else if image_total > self.image_cap {
            Some("image inflates past the per-image cap")
        } else if self.inflated > self.limits.ratio_grace_bytes
            && self.inflated / compressed > self.limits.max_ratio
        {
            Some("compression ratio exceeds the cap (decompression bomb)")
        } else {
            None
        };
        if let Some(why) = tripped {
            self.tripped.set(Some(why));
            return Err(io::Error::other(why));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let m = Compression::from_media_type;
        assert_eq!(
            m("application/vnd.oci.image.layer.v1.tar+zstd"),
            Ok(Some(Compression::Zstd))
        );
        assert_eq!(
            m("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Ok(Some(Compression::Gzip))
        );
        assert_eq!(
            m("application/vnd.oci.image.layer.v1.tar"),
            Ok(Some(Compression::None))
        );
        assert_eq!(m(""), Ok(None));
        assert!(m("application/vnd.oci.image.layer.v1.tar+bzip2").is_err());
        assert!(m("application/vnd.cncf.helm.chart.content.v1.tar+gzip").is_err());
    }

    #[test]
    fn sniffs_magic() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
    }
}
