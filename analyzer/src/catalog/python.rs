//! Installed Python distributions: `*.dist-info/METADATA`, `*.egg-info/PKG-INFO` and single-file `*.egg-info`.

use super::util::{error, field, package, purl, stanzas, utf8};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::PackageType;

const NAME: &str = "python";

/// METADATA carries the long description (numpy's is ~60 KiB); 8 MiB is far beyond any real one.
const MAX_BYTES: u64 = 8 * 1024 * 1024;

/// A `License` value longer than this is a pasted license text, not a license name.
const MAX_LICENSE_NAME: usize = 100;

/// Reads installed-distribution metadata.
#[derive(Debug, Default, Clone, Copy)]
pub struct PythonCataloger;

/// Whether `path` is a metadata file of an installed distribution.
fn is_metadata(path: &str) -> bool {
    let (dir, file) = match path.rsplit_once('/') {
        Some(x) => x,
        None => return false,
    };
    let dir_lower_ends = |suffix: &str| {
        dir.len() >= suffix.len() && dir[dir.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    };
    match file {
        "METADATA" => dir_lower_ends("dist-info"),
        "PKG-INFO" => dir_lower_ends("egg-info"),
        _ => file.ends_with(".egg-info"),
    }
}

impl Cataloger for PythonCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        if is_metadata(entry.path) {
            Want::UpTo {
                max_bytes: MAX_BYTES,
            }
        } else {
            Want::No
        }
    }

    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let path = file.meta.path;
        let text = utf8(NAME, path, file.bytes)?;
        if text.trim().is_empty() {
            return Ok(Found::default());
        }
        // Only the header block: the body is the free-form long description.
        let headers = stanzas(text, true).map_err(|m| error(NAME, path, m))?;
        let Some(h) = headers.first() else {
            return Ok(Found::default());
        };
        let (Some(name), Some(version)) = (field(h, "Name"), field(h, "Version")) else {
            return Err(error(NAME, path, "no Name and Version headers"));
        };
        if name.is_empty() || version.is_empty() {
            return Err(error(NAME, path, "empty Name or Version"));
        }
        let licenses = licenses(h);
        let name = normalize(name);
        let p = package(
            NAME,
            PackageType::Python,
            &name,
            version,
            purl("pypi", None, &name, version, &[]),
            licenses,
            path,
        );
        Ok(Found {
            packages: vec![p],
            distro: None,
        })
    }
}

/// PEP 503 name normalization (`Pygments` → `pygments`, `zope.interface` → `zope-interface`), which is how
/// Syft names installed distributions.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_sep {
                out.push('-');
            }
            in_sep = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_sep = false;
        }
    }
    out
}

/// `License-Expression` (PEP 639), else a short `License`, else the `License ::` classifiers.
fn licenses(h: &super::util::Stanza<'_>) -> Vec<String> {
    if let Some(expr) = field(h, "License-Expression").filter(|v| !v.is_empty()) {
        return vec![expr.to_owned()];
    }
    if let Some(l) = field(h, "License")
        .filter(|v| !v.is_empty() && v.len() <= MAX_LICENSE_NAME && !v.contains('\n'))
    {
        if l != "UNKNOWN" {
            return vec![l.to_owned()];
        }
    }
    h.iter()
        .filter(|(k, _)| *k == "Classifier")
        .filter_map(|(_, v)| v.strip_prefix("License :: "))
        .filter_map(|v| v.rsplit(" :: ").next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, bytes: &[u8]) -> Result<Found, CatalogError> {
        crate::catalog::util::run_wanted(&PythonCataloger, path, bytes)
    }

    #[test]
    fn dist_info_metadata() {
        let path = "/usr/local/lib/python3.11/site-packages/pip-24.2.dist-info/METADATA";
        let found = run(path, include_bytes!("testdata/python/pip-METADATA")).unwrap();
        let p = &found.packages[0];
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.purl.as_str()),
            ("pip", "24.2", "pkg:pypi/pip@24.2")
        );
        assert_eq!(p.licenses, ["MIT"]);
        assert_eq!(p.locations[0].path, path);
    }

    #[test]
    fn egg_info_pkg_info_and_name_normalization_in_purl() {
        let path = "/usr/lib/python3/dist-packages/PyJWT-2.6.0.egg-info/PKG-INFO";
        let found = run(path, include_bytes!("testdata/python/PyJWT-PKG-INFO")).unwrap();
        let p = &found.packages[0];
        assert_eq!((p.name.as_str(), p.version.as_str()), ("pyjwt", "2.6.0"));
        assert_eq!(p.purl, "pkg:pypi/pyjwt@2.6.0");
        // a single-file egg-info has the same format
        let found = run(
            "/usr/lib/python3/dist-packages/six-1.16.0.egg-info",
            b"Metadata-Version: 1.1\nName: six\nVersion: 1.16.0\n",
        )
        .unwrap();
        assert_eq!(found.packages[0].name, "six");
        assert_eq!(normalize("zope.interface__x"), "zope-interface-x");
    }

    #[test]
    fn wants_only_metadata_files() {
        for path in [
            "/x/pip-24.2.dist-info/RECORD",
            "/x/METADATA",
            "/x/foo.egg-info/SOURCES.txt",
        ] {
            let meta = EntryMeta {
                path,
                mode: 0o644,
                size: 10,
            };
            assert_eq!(PythonCataloger.wants(&meta), Want::No, "{path}");
        }
    }

    #[test]
    fn garbage_metadata_is_an_error() {
        let path = "/x/pip-24.2.dist-info/METADATA";
        let e = run(path, b"\x89PNG\r\n\x1a\n\x00\x00binary").unwrap_err();
        assert!(e.to_string().contains(path), "{e}");
        assert!(run(path, b"Summary: no name here\n\nbody").is_err());
        assert!(run(path, b"<html><body>404 Not Found</body></html>\n").is_err());
    }
}
