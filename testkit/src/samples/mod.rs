//! Realistic sample images described in code: real-format package databases (dpkg `status`, Python
//! `METADATA`, npm `package.json`, an rpm `rpmdb.sqlite`, jars, gemspecs, ELF binaries with Go build info
//! and cargo-auditable data), with base layers shared between images.
//!
//! Tests, benches and `fathom demo` build images from these descriptions (tar → gzip/zstd → OCI layout or a
//! registry push); the repository carries no binary blobs.
//!
//! [`sample_images`] gives the small realistic images (each with [`expected_packages`]), [`large_image`] the
//! benchmark's big one.

mod debian;
pub use fathom_analyzer::fixtures::elf;
mod images;
pub use fathom_analyzer::fixtures::jar;
mod large;
mod other_images;
mod planted;

pub use planted::{
    expected_secrets, PLANTED_AWS_KEY, PLANTED_PEM_BODY, PLANTED_SETGID, PLANTED_SETUID,
};

pub use large::{code_like_bytes, large_image};

use fathom_analyzer::model::PackageType;

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

impl SampleEntry {
    /// A regular file with these contents, mode 0644 (tests build their layers from these).
    pub fn file(path: &str, bytes: &[u8]) -> SampleEntry {
        SampleEntry {
            path: path.into(),
            mode: 0o644,
            kind: SampleKind::File(bytes.to_vec()),
        }
    }

    /// A directory, mode 0755.
    pub fn dir(path: &str) -> SampleEntry {
        SampleEntry {
            path: path.into(),
            mode: 0o755,
            kind: SampleKind::Dir,
        }
    }

    /// The same entry with other permission bits.
    pub fn with_mode(self, mode: u32) -> SampleEntry {
        SampleEntry { mode, ..self }
    }
}

/// A sample image: named, with ordered layers (base first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleImage {
    /// Short name (`debian-python-npm`), also used as the repository name when pushed.
    pub name: String,
    /// Layers, base first.
    pub layers: Vec<Vec<SampleEntry>>,
}

/// A package a sample image is known to contain (what a correct scan of its final filesystem reports).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedPackage {
    /// Ecosystem.
    pub package_type: PackageType,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// The small realistic images, with base layers shared between them:
/// `debian-python-npm` (Debian base, Python wheels, an npm app, a layer of deletions),
/// `debian-java-go` (same base, jars with nested jars, a gemspec, Go and Rust binaries),
/// `rocky-rpm` (an rpmdb.sqlite) and `alpine-apk` (an apk database).
pub fn sample_images() -> Vec<SampleImage> {
    vec![
        images::debian_python_npm(),
        images::debian_java_go(),
        other_images::rocky_rpm(),
        other_images::alpine_apk(),
    ]
}

/// The packages a correct scan of the named sample image finds, sorted; empty for unknown names.
pub fn expected_packages(image: &str) -> Vec<ExpectedPackage> {
    let mut v: Vec<ExpectedPackage> = match image {
        "debian-python-npm" => images::expected_python_npm(),
        "debian-java-go" => images::expected_java_go(),
        "rocky-rpm" => other_images::expected_rpm(),
        "alpine-apk" => other_images::expected_apk(),
        _ => vec![],
    }
    .into_iter()
    .map(|(package_type, name, version)| ExpectedPackage {
        package_type,
        name,
        version,
    })
    .collect();
    v.sort();
    v
}

/// A regular file, mode 0644.
pub(crate) fn file(path: &str, bytes: &[u8]) -> SampleEntry {
    SampleEntry {
        path: path.to_owned(),
        mode: 0o644,
        kind: SampleKind::File(bytes.to_vec()),
    }
}

/// An executable file, mode 0755.
pub(crate) fn exec(path: &str, bytes: &[u8]) -> SampleEntry {
    SampleEntry {
        path: path.to_owned(),
        mode: 0o755,
        kind: SampleKind::File(bytes.to_vec()),
    }
}

/// A directory, mode 0755.
pub(crate) fn dir(path: &str) -> SampleEntry {
    SampleEntry {
        path: path.to_owned(),
        mode: 0o755,
        kind: SampleKind::Dir,
    }
}

/// A symbolic link.
pub(crate) fn symlink(path: &str, target: &str) -> SampleEntry {
    SampleEntry {
        path: path.to_owned(),
        mode: 0o777,
        kind: SampleKind::Symlink(target.to_owned()),
    }
}

/// A whiteout deleting `path` from lower layers (`/a/b` → `/a/.wh.b`).
pub(crate) fn whiteout(path: &str) -> SampleEntry {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    file(&format!("{parent}/.wh.{name}"), b"")
}

/// An opaque-directory marker: `dir`'s contents from lower layers are hidden.
pub(crate) fn opaque(dir: &str) -> SampleEntry {
    file(&format!("{dir}/.wh..wh..opq"), b"")
}

#[cfg(test)]
mod tests;
