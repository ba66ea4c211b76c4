//! Realistic sample images described in code: real-format package databases (dpkg `status`, Python
//! `METADATA`, npm `package.json`, an rpm `rpmdb.sqlite`, jars, gemspecs, ELF binaries with Go build info
//! and cargo-auditable data), with base layers shared between images.
//!
//! Tests, benches and `fathom demo` build images from these descriptions (tar → gzip/zstd → OCI layout or a
//! registry push); the repository carries no binary blobs.

/// What a sample layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SampleKind {
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Symlink(String),
    /// A hard link to this (absolute) path earlier in the same layer.
    HardLink(String),
}

/// One entry of a sample layer. Whiteouts are ordinary files named `.wh.NAME` / `.wh..wh..opq`, as in OCI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleEntry {
    /// Absolute path inside the image (`/var/lib/dpkg/status`).
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Contents.
    pub kind: SampleKind,
}

/// A sample image: named, with ordered layers (base first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleImage {
    /// Short name (`debian-python-npm`), also used as the repository name when pushed.
    pub name: String,
    /// Layers, base first.
    pub layers: Vec<Vec<SampleEntry>>,
}
