//! The internal package and file model shared by catalogers, the layer pipeline, the merge and the writers.
//!
//! Wire formats (our JSON, CycloneDX, SPDX) convert from these types; nothing here knows about them.

use serde::{Deserialize, Serialize};

/// Package ecosystems fathom catalogs; the string form matches Syft's package `type` where one exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackageType {
    /// Debian packages from the dpkg database.
    Deb,
    /// Alpine packages from the apk database.
    Apk,
    /// RPM packages from the rpm database.
    Rpm,
    /// Python distributions (`*.dist-info`, `*.egg-info`).
    Python,
    /// npm packages (`node_modules/**/package.json`).
    Npm,
    /// Ruby gems (`specifications/*.gemspec`).
    Gem,
    /// Java archives and the Maven artifacts inside them.
    JavaArchive,
    /// Go modules from a Go binary's build info.
    GoModule,
    /// Rust crates from cargo-auditable data.
    RustCrate,
}

impl PackageType {
    /// The stable lower-case name used in our JSON, in tables and as a query filter.
    pub fn as_str(self) -> &'static str {
        match self {
            PackageType::Deb => "deb",
            PackageType::Apk => "apk",
            PackageType::Rpm => "rpm",
            PackageType::Python => "python",
            PackageType::Npm => "npm",
            PackageType::Gem => "gem",
            PackageType::JavaArchive => "java-archive",
            PackageType::GoModule => "go-module",
            PackageType::RustCrate => "rust-crate",
        }
    }
}

/// Where a package record was found: a path inside the image and the layer that held that file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    /// Absolute path inside the image filesystem (leading `/`).
    pub path: String,
    /// Digest (`sha256:...`) of the layer whose tar held the file; empty until the pipeline fills it in.
    pub layer_digest: String,
}

/// One package as a cataloger reports it from one file of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    /// Package name as its ecosystem spells it.
    pub name: String,
    /// Version as its ecosystem spells it (dpkg includes the epoch, rpm `[epoch:]version-release`).
    pub version: String,
    /// Ecosystem.
    pub package_type: PackageType,
    /// Package URL (`pkg:deb/debian/bash@5.2.15-2?arch=amd64&distro=debian-12`).
    pub purl: String,
    /// Declared licenses, as written by the package (SPDX expressions where the ecosystem uses them).
    pub licenses: Vec<String>,
    /// Where this record was found.
    pub locations: Vec<Location>,
    /// Name of the cataloger that found it (`dpkg`, `python`, ...).
    pub found_by: String,
    /// Ecosystem-specific fields worth keeping (architecture, source package, group id, main module, ...).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The distribution an image is built from, read from the os-release chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distro {
    /// `ID` (`debian`, `alpine`, `rhel`, ...).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`), empty when absent (e.g. Debian sid).
    pub version_id: String,
    /// `PRETTY_NAME`, for humans.
    pub pretty_name: String,
    /// `ID_LIKE` entries.
    #[serde(default)]
    pub id_like: Vec<String>,
}
