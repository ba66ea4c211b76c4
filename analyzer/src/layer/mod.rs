//! The streaming layer pipeline: blob bytes → sha256 verified while streaming → gzip/zstd/plain → tar
//! entries → file records, whiteouts and the packages catalogers find. One layer, one thread, no disk.

mod decode;
pub mod path;
mod walk;

use serde::{Deserialize, Serialize};

use crate::content::clamd::LayerMalwareScan;
use crate::content::{ContentMatch, CopyrightRecord, RetrievedFile, SecretFinding};
use crate::model::{Distro, Package};
pub use decode::{Compression, NotALayer};
pub use walk::{analyze_blob, LayerContext};

/// Bumped whenever [`LayerResult`] for the same layer bytes would change (part of the cache key).
pub const PIPELINE_VERSION: u32 = 2;

/// What a tar entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Hard link to an earlier entry.
    HardLink,
    /// Device, FIFO or other special file.
    Other,
}

/// One tar entry as recorded in a layer result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Normalized absolute path.
    pub path: String,
    /// Entry type.
    pub kind: FileKind,
    /// Permission bits including setuid/setgid/sticky (`0o4755`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u64,
    /// Owner gid.
    pub gid: u64,
    /// Content size in bytes (0 for non-files).
    pub size: u64,
    /// Symlink target as written, or the normalized hard-link target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Hex sha256 of a regular file's contents, when the content pass hashed it (files up to
    /// `file_digest_max_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl FileEntry {
    /// Setuid bit on a regular file.
    pub fn setuid(&self) -> bool {
        self.kind == FileKind::File && self.mode & 0o4000 != 0
    }
    /// Setgid bit on a regular file.
    pub fn setgid(&self) -> bool {
        self.kind == FileKind::File && self.mode & 0o2000 != 0
    }
    /// Writable by others (symlinks excluded: their mode means nothing).
    pub fn world_writable(&self) -> bool {
        self.kind != FileKind::Symlink && self.mode & 0o002 != 0
    }
}

/// A distro record found in a layer, with the file it came from (the merge picks the visible one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistroRecord {
    /// The os-release file.
    pub path: String,
    /// What it says.
    pub distro: Distro,
}

/// Everything learned from one layer, independent of the layers around it: what the cache stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerResult {
    /// Layer digest.
    pub digest: String,
    /// Compression actually found.
    pub compression: Compression,
    /// Stored (compressed) bytes read.
    pub compressed_bytes: u64,
    /// Uncompressed tar bytes read.
    pub inflated_bytes: u64,
    /// Tar entries seen, whiteouts included.
    pub entries: u64,
    /// Recorded entries (all of them unless `files_truncated`).
    pub files: Vec<FileEntry>,
    /// True when the layer had more entries than the record cap; paths a cataloger wanted are always kept.
    pub files_truncated: bool,
    /// Paths deleted from lower layers by `.wh.NAME` entries.
    pub whiteouts: Vec<String>,
    /// Directories whose lower-layer contents are hidden by `.wh..wh..opq`.
    pub opaque_dirs: Vec<String>,
    /// Packages found, locations carrying this layer's digest.
    pub packages: Vec<Package>,
    /// os-release records found.
    pub distros: Vec<DistroRecord>,
    /// Secrets the content pass found (file, line, rule: never the value).
    #[serde(default)]
    pub secrets: Vec<SecretFinding>,
    /// Content search matches (file, line, rule; the text only for `store_match` rules). Absent from
    /// results stored before content search existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content_matches: Vec<ContentMatch>,
    /// Licenses named by Debian `copyright` files in this layer.
    #[serde(default)]
    pub copyrights: Vec<CopyrightRecord>,
    /// Contents of the configured retrieved files this layer writes (`retrieve_files`). Absent from
    /// results stored before files were retrieved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retrieved: Vec<RetrievedFile>,
    /// The layer's malware scan; `None` when scanning was off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malware: Option<LayerMalwareScan>,
    /// Non-fatal problems (malformed package databases, files over a cataloger's cap), naming the file.
    pub warnings: Vec<String>,
}

/// Limits that keep a hostile layer from exhausting memory or time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Uncompressed bytes one layer may inflate to.
    pub max_layer_inflated: u64,
    /// Uncompressed/compressed ratio above which a layer is treated as a bomb...
    pub max_ratio: u64,
    /// ...once it has inflated past this many bytes (small layers of zeros are legitimately extreme).
    pub ratio_grace_bytes: u64,
    /// File entries recorded per layer; past it entries are counted, not kept.
    pub max_recorded_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_layer_inflated: 16 << 30,
            max_ratio: 500,
            ratio_grace_bytes: 64 << 20,
            max_recorded_files: 250_000,
        }
    }
}
