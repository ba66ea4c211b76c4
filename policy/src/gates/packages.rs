//! The `packages` gate: required packages, blacklisted packages, and package-database verification.

use std::cmp::Ordering;
use std::collections::HashMap;

use fathom_versions::Scheme;

use super::{BuildError, Ctx, Fire};
use crate::facts::{FileEntry, FileType, PackageFile};
use crate::params::Params;

/// A compiled check of the packages gate.
#[derive(Debug)]
pub(crate) enum Check {
    Required {
        name: String,
        version: Option<String>,
        minimum: bool,
    },
    Blacklist {
        name: String,
        version: Option<String>,
    },
    Verify {
        only_packages: Vec<String>,
        only_directories: Vec<String>,
        check: Option<&'static str>,
    },
}

impl Check {
    pub(crate) fn build(trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        let name = p.str("name").unwrap_or_default().to_string();
        let version = p.str("version").map(String::from);
        Ok(match trigger {
            "required_package" => Check::Required {
                name,
                version,
                minimum: p.str("version_match_type") == Some("minimum"),
            },
            "blacklist" => Check::Blacklist { name, version },
            _ => Check::Verify {
                only_packages: p.list("only_packages"),
                only_directories: p.list("only_directories"),
                check: match p.str("check") {
                    Some("changed") => Some("changed"),
                    Some("missing") => Some("missing"),
                    _ => None,
                },
            },
        })
    }

    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        let packages = &ctx.facts.packages;
        Ok(match self {
            Check::Required {
                name,
                version,
                minimum,
            } => {
                let Some(pkg) = packages.iter().find(|p| &p.name == name) else {
                    return Ok(vec![Fire::msg(match version {
                        Some(v) => format!(
                            "Required input package ({name},{v}) is not present in container image"
                        ),
                        None => format!(
                            "Required input package ({name}) is not present in container image"
                        ),
                    })]);
                };
                match version {
                    Some(want) if !minimum && &pkg.version != want => vec![Fire::msg(format!(
                        "Required input package ({}) is present ({}), but not at the version specified in policy ({name})",
                        pkg.name, pkg.version
                    ))],
                    Some(want) if *minimum => match older_than(&pkg.pkg_type, &pkg.version, want) {
                        Some(false) => Vec::new(),
                        Some(true) => vec![Fire::msg(format!(
                            "Required min-version input package ({}) is present ({}), but is lower version than what is specified in policy ({want})",
                            pkg.name, pkg.version
                        ))],
                        // Not proven new enough is not new enough: say why, so the rule can be fixed.
                        None => vec![Fire::msg(format!(
                            "Required min-version input package ({}) is present ({}), but its version cannot be compared with the one specified in policy ({want}) by {} version rules",
                            pkg.name, pkg.version, pkg.pkg_type
                        ))],
                    },
                    _ => Vec::new(),
                }
            }
            Check::Blacklist { name, version } => packages
                .iter()
                .filter(|p| &p.name == name && version.as_ref().is_none_or(|v| &p.version == v))
                .map(|p| match version {
                    Some(_) => {
                        Fire::msg(format!("Package is blacklisted: {}-{}", p.name, p.version))
                    }
                    None => Fire::msg(format!("Package is blacklisted: {}", p.name)),
                })
                .collect(),
            Check::Verify {
                only_packages,
                only_directories,
                check,
            } => {
                let inventory = ctx
                    .facts
                    .files
                    .as_ref()
                    .ok_or("file inventory unavailable for this image")?;
                let files: HashMap<&str, &FileEntry> =
                    inventory.iter().map(|f| (f.path.as_str(), f)).collect();
                let mut fires = Vec::new();
                for pkg in packages
                    .iter()
                    .filter(|p| only_packages.is_empty() || only_packages.contains(&p.name))
                {
                    for record in &pkg.files {
                        if !only_directories.is_empty()
                            && !only_directories
                                .iter()
                                .any(|d| record.path.starts_with(d.as_str()))
                        {
                            continue;
                        }
                        let Some(status) = verify(record, files.get(record.path.as_str()).copied())
                        else {
                            continue;
                        };
                        if check.is_none_or(|c| c == status) {
                            fires.push(Fire::msg(format!(
                                "VERIFY check against package db for package '{}' failed on entry '{}' with status: '{status}'",
                                pkg.name, record.path
                            )));
                        }
                    }
                }
                fires
            }
        })
    }
}

/// Whether `installed` sorts before `want` by the package type's own version rules (dpkg's for types with
/// none, as before per-type rules existed); `None` when either version is not valid under them.
fn older_than(pkg_type: &str, installed: &str, want: &str) -> Option<bool> {
    let scheme = Scheme::for_package_type(pkg_type).unwrap_or(Scheme::Dpkg);
    scheme
        .compare(installed, want)
        .map(|order| order == Ordering::Less)
}

/// anchore's package-db diff: missing from the filesystem, or changed digest, permission bits or size.
fn verify(record: &PackageFile, found: Option<&FileEntry>) -> Option<&'static str> {
    let Some(found) = found else {
        return Some("missing");
    };
    if record.config {
        return None;
    }
    let is_file = found.file_type == FileType::File;
    if is_file {
        if let (Some(want), Some(have)) = (&record.sha256, &found.sha256) {
            if !want.eq_ignore_ascii_case(have) {
                return Some("changed");
            }
        }
    }
    if is_file || found.file_type == FileType::Dir {
        if let Some(want) = record.mode {
            if want & 0o7777 != found.mode & 0o7777 {
                return Some("changed");
            }
        }
    }
    if is_file {
        if let Some(want) = record.size {
            if want != 0 && found.size != 0 && want != found.size {
                return Some("changed");
            }
        }
    }
    None
}
