//! Debian packages: `/var/lib/dpkg/status` and, in distroless images, one file per package in
//! `/var/lib/dpkg/status.d/`.

use super::os::{os_purl, META_ARCH, META_UPSTREAM};
use super::util::{error, field, package, sort, stanzas, utf8};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::PackageType;

const NAME: &str = "dpkg";

/// A Debian `status` of a few thousand packages is a few MiB; 256 MiB leaves room for absurd ones while
/// bounding memory.
const MAX_STATUS: u64 = 256 * 1024 * 1024;
/// One distroless `status.d` file describes one package.
const MAX_STATUS_D: u64 = 16 * 1024 * 1024;

/// Reads the dpkg database.
#[derive(Debug, Default, Clone, Copy)]
pub struct DpkgCataloger;

impl Cataloger for DpkgCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        let p = entry.path;
        if p == "/var/lib/dpkg/status" {
            return Want::UpTo {
                max_bytes: MAX_STATUS,
            };
        }
        // distroless keeps `<pkg>` and `<pkg>.md5sums` side by side; only the former is a status stanza.
        if let Some(file) = p.strip_prefix("/var/lib/dpkg/status.d/") {
            if !file.contains('/') && !file.ends_with(".md5sums") && !file.starts_with('.') {
                return Want::UpTo {
                    max_bytes: MAX_STATUS_D,
                };
            }
        }
        Want::No
    }

    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let path = file.meta.path;
        let text = utf8(NAME, path, file.bytes)?;
        let stanzas = stanzas(text, false).map_err(|m| error(NAME, path, m))?;
        let mut packages = Vec::with_capacity(stanzas.len());
        for st in &stanzas {
            let Some(name) = field(st, "Package").filter(|n| !n.is_empty()) else {
                return Err(error(NAME, path, "stanza without a Package field"));
            };
            // Removed-but-not-purged packages ("rc" in `dpkg -l`) are not installed; Syft skips them too.
            if field(st, "Status").is_some_and(|s| s.contains("deinstall")) {
                continue;
            }
            let Some(version) = field(st, "Version").filter(|v| !v.is_empty()) else {
                return Err(error(
                    NAME,
                    path,
                    format!("package {name:?} has no Version (truncated file?)"),
                ));
            };
            let mut p = package(
                NAME,
                PackageType::Deb,
                name,
                version,
                String::new(),
                vec![],
                path,
            );
            if let Some(arch) = field(st, "Architecture") {
                p.metadata.insert(META_ARCH.into(), arch.to_owned());
            }
            if let Some(upstream) = field(st, "Source").and_then(upstream) {
                p.metadata.insert(META_UPSTREAM.into(), upstream);
            }
            if let Some(src) = field(st, "Source") {
                p.metadata.insert("source".into(), src.to_owned());
            }
            p.purl = os_purl(&p, None).unwrap_or_default();
            packages.push(p);
        }
        sort(&mut packages);
        Ok(Found {
            packages,
            distro: None,
        })
    }
}

/// Syft's `upstream` qualifier: `glibc` for `Source: glibc`, `bash@5.2.15-2` for `Source: bash (5.2.15-2)`.
fn upstream(source: &str) -> Option<String> {
    let source = source.trim();
    let (name, rest) = source.split_once(' ').unwrap_or((source, ""));
    if name.is_empty() {
        return None;
    }
    let version = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or("")
        .trim();
    Some(if version.is_empty() {
        name.to_owned()
    } else {
        format!("{name}@{version}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, bytes: &[u8]) -> Result<Found, CatalogError> {
        crate::catalog::util::run_wanted(&DpkgCataloger, path, bytes)
    }

    #[test]
    fn real_status_file() {
        let found = run(
            "/var/lib/dpkg/status",
            include_bytes!("testdata/dpkg-status"),
        )
        .unwrap();
        let names: Vec<_> = found.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "base-files",
                "bash",
                "coreutils",
                "debianutils",
                "gcc-12-base",
                "libc6",
                "libgcc-s1",
                "libssl3",
                "perl-base",
                "sensible-utils",
                "tzdata",
                "zlib1g"
            ]
        );
        let bash = &found.packages[1];
        assert_eq!(bash.version, "5.2.15-2+b8");
        assert_eq!(
            bash.purl,
            "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&upstream=bash%405.2.15-2"
        );
        assert_eq!(bash.locations[0].path, "/var/lib/dpkg/status");
        let libc = found.packages.iter().find(|p| p.name == "libc6").unwrap();
        assert_eq!(
            libc.metadata.get("upstream").map(String::as_str),
            Some("glibc")
        );
        let z = found.packages.last().unwrap();
        assert!(
            z.version.starts_with("1:"),
            "epoch kept in the version: {}",
            z.version
        );
    }

    #[test]
    fn distroless_status_d() {
        let found = run(
            "/var/lib/dpkg/status.d/libssl3",
            include_bytes!("testdata/distroless/libssl3"),
        )
        .unwrap();
        assert_eq!(found.packages.len(), 1);
        assert_eq!(found.packages[0].version, "3.0.11-1~deb12u2");
        let md5 = EntryMeta {
            path: "/var/lib/dpkg/status.d/libssl3.md5sums",
            mode: 0o644,
            size: 10,
        };
        assert_eq!(DpkgCataloger.wants(&md5), Want::No);
    }

    #[test]
    fn truncated_status_is_an_error_naming_the_file() {
        let full = include_bytes!("testdata/dpkg-status");
        let cut = &full[..full.len() / 2];
        // Cut mid-line: whatever the cut, the last stanza either has a broken line or lacks fields.
        let cut_at_version = b"Package: foo\nStatus: install ok installed\nVersi";
        for bytes in [
            cut_at_version.as_slice(),
            b"Package: foo\nStatus: install ok installed\n",
        ] {
            let e = run("/var/lib/dpkg/status", bytes).unwrap_err();
            assert!(
                e.to_string().starts_with("dpkg: /var/lib/dpkg/status: "),
                "{e}"
            );
        }
        // A cut at an arbitrary byte must never panic.
        let _ = run("/var/lib/dpkg/status", cut);
        assert!(run("/var/lib/dpkg/status", b"\xff\xfe garbage").is_err());
    }

    #[test]
    fn empty_database_is_not_an_error() {
        assert_eq!(run("/var/lib/dpkg/status", b"").unwrap(), Found::default());
    }
}
