//! Catalogers: one file per ecosystem behind the [`Cataloger`] trait.
//!
//! The layer pipeline walks each layer's tar once. For every regular file it asks each cataloger whether it
//! [`wants`](Cataloger::wants) the entry (by path, mode and size only: no IO). If any does, the pipeline
//! buffers the file's bytes once (under the smallest cap the interested catalogers declared) and hands the
//! same bytes to each interested cataloger's [`catalog`](Cataloger::catalog). A cataloger never sees other
//! files and never does IO, so it is trivially testable with real database files as fixtures.

mod apk;
mod binary;
mod distro;
mod dpkg;
mod gem;
mod golang;
mod java;
mod npm;
mod os;
mod python;
pub(crate) mod rpm;
mod rust;
mod util;

pub use apk::ApkCataloger;
pub use distro::{release_file_rank, DistroCataloger};
pub use dpkg::DpkgCataloger;
pub use gem::GemCataloger;
pub use golang::GoCataloger;
pub use java::JavaCataloger;
pub use npm::NpmCataloger;
pub use os::{apply_distro, META_ARCH, META_EPOCH, META_UPSTREAM};
pub use python::PythonCataloger;
pub use rpm::RpmCataloger;
pub use rust::RustCataloger;

#[cfg(any(test, feature = "fixtures"))]
pub use golang::buildinfo::encode_inline as encode_go_buildinfo;

use crate::model::{Distro, Package};

/// Every cataloger fathom runs, in a fixed order.
pub fn default_catalogers() -> Vec<Box<dyn Cataloger>> {
    vec![
        Box::new(DistroCataloger),
        Box::new(DpkgCataloger),
        Box::new(ApkCataloger),
        Box::new(RpmCataloger),
        Box::new(PythonCataloger),
        Box::new(NpmCataloger),
        Box::new(GemCataloger),
        Box::new(JavaCataloger),
        Box::new(GoCataloger),
        Box::new(RustCataloger),
    ]
}

/// What the pipeline knows about a tar entry before reading its bytes.
#[derive(Debug, Clone, Copy)]
pub struct EntryMeta<'a> {
    /// Path inside the image, normalized: absolute (leading `/`), no `.`/`..` components, no trailing `/`.
    pub path: &'a str,
    /// Unix permission bits (`0o755`), without the file-type bits.
    pub mode: u32,
    /// Size of the file's contents in bytes as the tar header declares it.
    pub size: u64,
}

/// A cataloger's interest in one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Not interested.
    No,
    /// Buffer the whole file if it is at most `max_bytes` long; larger files are skipped with a warning
    /// recorded in the layer result (never an error: a huge file must not fail an image).
    UpTo {
        /// Size cap in bytes for this file.
        max_bytes: u64,
    },
}

/// One file handed to a cataloger.
#[derive(Debug, Clone, Copy)]
pub struct FileInput<'a> {
    /// The entry's metadata.
    pub meta: EntryMeta<'a>,
    /// The whole file contents.
    pub bytes: &'a [u8],
}

/// What a cataloger found in one file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// Packages recorded by this file (locations carry the path; the pipeline fills in the layer digest).
    pub packages: Vec<Package>,
    /// Set by the distro cataloger only.
    pub distro: Option<Distro>,
}

/// A cataloger's failure on one file: malformed input. The pipeline records it (naming layer and file) and
/// keeps going with the other files; whether it fails the job is the pipeline's policy, not the cataloger's.
#[derive(Debug, thiserror::Error)]
#[error("{cataloger}: {path}: {message}")]
pub struct CatalogError {
    /// Name of the cataloger.
    pub cataloger: &'static str,
    /// Path of the file it could not read.
    pub path: String,
    /// What was wrong, for a person.
    pub message: String,
}

/// One ecosystem's package finder. Implementations are stateless and `Sync`: layers are cataloged in
/// parallel and share one registry of catalogers.
pub trait Cataloger: Send + Sync {
    /// Stable short name (`dpkg`, `python`, ...), used in `found_by`, errors and cache keys.
    fn name(&self) -> &'static str;
    /// Bumped whenever output for the same input changes, so cached layer results are invalidated.
    fn version(&self) -> u32;
    /// Whether to buffer this entry for [`Cataloger::catalog`]. Called for every regular file: keep it cheap.
    fn wants(&self, entry: &EntryMeta<'_>) -> Want;
    /// Parses one wanted file. An absent or empty database is `Ok(Found::default())`, not an error.
    /// Output is sorted (by name, then version) so results are reproducible.
    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError>;
}
