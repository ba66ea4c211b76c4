//! What the engine knows about one image: plain data the caller maps its store into.
//!
//! An `Option` that is `None` means "this data does not exist for the image" (not scanned, no feed), which
//! the gates report as unavailable rather than reading it as "nothing found".

use std::collections::BTreeMap;

use fathom_reference::ImageRef;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Everything a policy evaluation reads about one image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageFacts {
    /// Identity, platform and configuration.
    pub image: ImageInfo,
    /// Installed packages of every type.
    pub packages: Vec<Package>,
    /// File inventory; `None` when the image's files were not catalogued.
    pub files: Option<Vec<FileEntry>>,
    /// Content-search regex matches (the `files` gate); `None` when content search did not run.
    pub content_matches: Option<Vec<ContentMatch>>,
    /// Secret-search findings; `None` when secret search did not run.
    pub secrets: Option<Vec<SecretFinding>>,
    /// Files whose contents the analyzer kept (`retrieved_files`, and `/etc/passwd` for `passwd_file`);
    /// empty when none was kept or retrieval did not run (anchore tells the two apart no more than this).
    pub retrieved_files: Vec<crate::stored::RetrievedFile>,
    /// The malware scan; `None` when no scan ran for the image (`malware.scan_not_run` fires).
    pub malware: Option<crate::stored::MalwareScan>,
    /// Vulnerability matches; `None` when there is no vulnerability data for this image.
    pub vulnerabilities: Option<Vec<VulnMatch>>,
    /// Freshness of the vulnerability feed this image was matched against.
    pub feed: FeedStatus,
}

impl ImageFacts {
    /// The retrieved file at `path`, if kept.
    pub fn retrieved(&self, path: &str) -> Option<&crate::stored::RetrievedFile> {
        self.retrieved_files.iter().find(|f| f.path == path)
    }

    /// The image's `/etc/passwd` entries from its retrieved copy (anchore's `passwd_entries`): `None`
    /// when it was not retrieved, an error when it does not decode.
    pub fn passwd_entries(&self) -> Option<Result<crate::stored::PasswdEntries, String>> {
        self.retrieved("/etc/passwd")
            .map(|f| crate::stored::parse_passwd(&f.content))
    }
}

/// Identity, platform and configuration of the image.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageInfo {
    /// Manifest digest, `sha256:...`.
    pub digest: String,
    /// Image (config) id.
    pub id: String,
    /// Registry host, e.g. `docker.io`.
    pub registry: String,
    /// Repository, e.g. `library/nginx`.
    pub repository: String,
    /// Tag being evaluated, if any.
    pub tag: Option<String>,
    /// Distro id, e.g. `debian`.
    pub distro: Option<String>,
    /// Distro version, e.g. `12`.
    pub distro_version: Option<String>,
    /// Distro family (os-release `ID_LIKE`).
    pub like_distro: Option<String>,
    /// CPU architecture, e.g. `amd64`.
    pub architecture: Option<String>,
    /// OS, e.g. `linux`.
    pub os_type: Option<String>,
    /// Image size in bytes.
    pub size: u64,
    /// Number of layers.
    pub layer_count: u64,
    /// Configuration and build history.
    pub config: ImageConfig,
}

impl ImageInfo {
    /// Sets registry, repository and tag from the reference being evaluated, as the workspace's one
    /// parser reads it (`docker.io`, `library/` and `latest` applied; `repo:tag@digest` keeps its tag
    /// and nothing of it in the repository). Mappings, `whitelisted_images` and `blacklisted_images`
    /// select on these fields, so every spelling of a reference selects alike.
    pub fn set_reference(&mut self, reference: &ImageRef) {
        self.registry.clone_from(&reference.registry);
        self.repository.clone_from(&reference.repository);
        self.tag.clone_from(&reference.tag);
    }

    /// `registry/repository:tag` as anchore prints it in the Repo_Tag column.
    pub fn repo_tag(&self) -> String {
        match &self.tag {
            Some(tag) => format!("{}/{}:{}", self.registry, self.repository, tag),
            None => format!("{}/{}@{}", self.registry, self.repository, self.digest),
        }
    }
}

/// Whether the Dockerfile lines are the real Dockerfile or inferred from layer history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerfileMode {
    /// Supplied by the user.
    Actual,
    /// Reconstructed from the image history (anchore's "Guessed").
    #[default]
    Guessed,
}

/// The image configuration, with the build history as Dockerfile-style lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    /// Where `instructions` come from.
    pub dockerfile_mode: DockerfileMode,
    /// Dockerfile lines, e.g. `USER nginx`, `EXPOSE 80/tcp`, `HEALTHCHECK CMD curl -f localhost`.
    pub instructions: Vec<String>,
    /// Exposed ports from the config, e.g. `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// Configured user.
    pub user: Option<String>,
    /// Health check command, when one is configured.
    pub healthcheck: Option<String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// One installed package.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Package {
    /// Package type, e.g. `dpkg`, `apk`, `rpm`, `python`, `npm`, `java`.
    #[serde(rename = "type")]
    pub pkg_type: String,
    /// Package name.
    pub name: String,
    /// Full version.
    pub version: String,
    /// Where the package was found (its metadata file or archive).
    pub paths: Vec<String>,
    /// Declared licenses.
    pub licenses: Vec<String>,
    /// The package database's record of its files (for `packages.verify`).
    pub files: Vec<PackageFile>,
}

/// A file as the package database recorded it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageFile {
    /// Absolute path.
    pub path: String,
    /// Recorded SHA-256, hex.
    pub sha256: Option<String>,
    /// Recorded permission bits.
    pub mode: Option<u32>,
    /// Recorded size.
    pub size: Option<u64>,
    /// Config files are expected to change and are not verified.
    pub config: bool,
}

/// Type of a filesystem entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileType {
    /// Regular file.
    #[default]
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Anything else (device, fifo, socket, hard link).
    Other,
}

/// One entry of the squashed filesystem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileEntry {
    /// Absolute path.
    pub path: String,
    /// Entry type.
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// Mode bits including suid/sgid/sticky (`0o4755`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Set-user-id bit.
    pub suid: bool,
    /// Set-group-id bit.
    pub sgid: bool,
    /// Content digest, hex (regular files only).
    pub sha256: Option<String>,
}

/// A content-search regex that matched in a file (one per matching line or per file: the gate fires once
/// per file and regex either way).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContentMatch {
    /// File path.
    pub path: String,
    /// Name of the configured regex, if it has one.
    pub regex_name: Option<String>,
    /// The regex itself.
    pub regex: String,
}

/// A secret-search regex that matched a line of a file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretFinding {
    /// File path.
    pub path: String,
    /// 1-based line number.
    pub line: u64,
    /// Name of the regex, e.g. `AWS_ACCESS_KEY`.
    pub regex_name: String,
}

/// CVSS v3 scores of a vulnerability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// Base score.
    pub base: f64,
    /// Exploitability sub-score.
    pub exploitability: f64,
    /// Impact sub-score.
    pub impact: f64,
}

/// Vulnerability severity, lowest first.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not rated.
    #[default]
    Unknown,
    /// Negligible.
    Negligible,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Upper-case name as anchore prints it.
    pub fn upper(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Negligible => "NEGLIGIBLE",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One vulnerability matched against one package.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VulnMatch {
    /// Vulnerability id, e.g. `CVE-2023-1234` or `GHSA-...`.
    pub id: String,
    /// Other ids of the same vulnerability.
    pub aliases: Vec<String>,
    /// Affected package name.
    pub package_name: String,
    /// Affected package type (`dpkg`, `apk`, `rpm` are OS packages; the rest are not).
    pub package_type: String,
    /// Installed version.
    pub package_version: String,
    /// Where the package was found.
    pub package_path: Option<String>,
    /// Severity.
    pub severity: Severity,
    /// CVSS v3 scores from NVD.
    pub cvss_v3: Option<Cvss>,
    /// CVSS v3 scores from the vendor.
    pub vendor_cvss_v3: Option<Cvss>,
    /// First fixed version, if a fix exists.
    pub fix_version: Option<String>,
    /// When the fix was first seen in the feed.
    pub fix_first_seen: Option<Timestamp>,
    /// When the vulnerability record was created.
    pub created_at: Option<Timestamp>,
    /// The vendor marked it will-not-fix.
    pub will_not_fix: bool,
    /// Advisory URL.
    pub link: Option<String>,
}

impl VulnMatch {
    /// OS packages are those of the distro's package manager.
    pub fn is_os(&self) -> bool {
        is_os_type(&self.package_type)
    }
}

/// Whether a package type is the distro's (anchore's os vs non-os split).
pub fn is_os_type(pkg_type: &str) -> bool {
    matches!(
        pkg_type,
        "dpkg" | "deb" | "apk" | "rpm" | "alpm" | "portage"
    )
}

/// Freshness of the vulnerability data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeedStatus {
    /// When the feed was last synchronized; `None` if never.
    pub last_sync: Option<Timestamp>,
    /// Whether the feed has data for this image's distro.
    pub distro_data: bool,
}
