//! Small helpers shared by the catalogers: errors, locations, purls, sorting and RFC 822-style fields.

use std::collections::BTreeMap;

use packageurl::PackageUrl;

use super::CatalogError;
use crate::model::{Location, Package, PackageType};

/// Builds a [`CatalogError`] for `path`.
pub(crate) fn error(
    cataloger: &'static str,
    path: &str,
    message: impl Into<String>,
) -> CatalogError {
    CatalogError {
        cataloger,
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The file's bytes as UTF-8, or an error naming the byte offset where decoding failed.
pub(crate) fn utf8<'a>(
    cataloger: &'static str,
    path: &str,
    bytes: &'a [u8],
) -> Result<&'a str, CatalogError> {
    std::str::from_utf8(bytes).map_err(|e| {
        error(
            cataloger,
            path,
            format!("not UTF-8 text (at byte {})", e.valid_up_to()),
        )
    })
}

/// A single location with the layer digest left for the pipeline.
pub(crate) fn location(path: &str) -> Vec<Location> {
    vec![Location {
        path: path.to_owned(),
        layer_digest: String::new(),
    }]
}

/// The last path component.
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A purl string. Names and versions come from untrusted files, so building can fail (an empty name, a
/// qualifier key the spec forbids); the caller gets `None` and the package an empty purl rather than an error,
/// because a package with an odd name is still a package.
pub(crate) fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let build = || -> Result<String, packageurl::Error> {
        let mut p = PackageUrl::new(ty, name)?;
        if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
            p.with_namespace(ns)?;
        }
        if !version.is_empty() {
            p.with_version(version)?;
        }
        for (k, v) in qualifiers.iter().filter(|(_, v)| !v.is_empty()) {
            p.add_qualifier(*k, *v)?;
        }
        Ok(p.to_string())
    };
    build().unwrap_or_default()
}

/// A package with the common fields filled in.
pub(crate) fn package(
    cataloger: &'static str,
    package_type: PackageType,
    name: &str,
    version: &str,
    purl: String,
    licenses: Vec<String>,
    path: &str,
) -> Package {
    Package {
        name: name.to_owned(),
        version: version.to_owned(),
        package_type,
        purl,
        licenses,
        locations: location(path),
        found_by: cataloger.to_owned(),
        metadata: BTreeMap::new(),
    }
}

/// Sorts by name, then version, then purl: the order every cataloger promises.
pub(crate) fn sort(packages: &mut [Package]) {
    packages.sort_by(|a, b| (&a.name, &a.version, &a.purl).cmp(&(&b.name, &b.version, &b.purl)));
}

/// One `Key: value` stanza of an RFC 822-style file (dpkg `status`, Python `METADATA`): keys in file order,
/// continuation lines joined with `\n`.
pub(crate) type Stanza<'a> = Vec<(&'a str, String)>;

/// Looks up a field of a stanza (case-sensitive, first occurrence).
pub(crate) fn field<'s>(stanza: &'s Stanza<'_>, key: &str) -> Option<&'s str> {
    stanza
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

/// Splits RFC 822-style text into stanzas separated by blank lines. `stop_at_first_blank` reads only the
/// header block (Python `METADATA` puts the long description after it). A line that is neither a field, a
/// continuation nor blank is an error with its line number: that is how truncated or garbage files show up.
pub(crate) fn stanzas(text: &str, stop_at_first_blank: bool) -> Result<Vec<Stanza<'_>>, String> {
    let mut out = Vec::new();
    let mut cur: Stanza<'_> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
                if stop_at_first_blank {
                    return Ok(out);
                }
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            match cur.last_mut() {
                Some((_, v)) => {
                    v.push('\n');
                    v.push_str(line.trim());
                }
                None => return Err(format!("line {}: continuation line without a field", i + 1)),
            }
            continue;
        }
        match line.split_once(':') {
            Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                cur.push((k, v.trim().to_owned()))
            }
            _ => {
                let shown: String = line.chars().take(40).collect();
                return Err(format!(
                    "line {}: expected `Field: value`, found {shown:?}",
                    i + 1
                ));
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Test helper shared by the catalogers' tests: asserts the cataloger wants `path` (as a 0644 file of
/// `bytes.len()` bytes) and catalogs `bytes`.
#[cfg(test)]
pub(crate) fn run_wanted(
    cataloger: &dyn super::Cataloger,
    path: &str,
    bytes: &[u8],
) -> Result<super::Found, super::CatalogError> {
    let meta = super::EntryMeta {
        path,
        mode: 0o644,
        size: bytes.len() as u64,
    };
    assert_ne!(cataloger.wants(&meta), super::Want::No, "{path}");
    cataloger.catalog(&super::FileInput { meta, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stanzas_split_on_blank_lines_and_join_continuations() {
        let s = stanzas("A: 1\nB: two\n words\n\n\nA: 3\n", false).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(field(&s[0], "B"), Some("two\nwords"));
        assert_eq!(field(&s[1], "A"), Some("3"));
    }

    #[test]
    fn stanzas_reject_garbage_lines() {
        let e = stanzas("A: 1\nthis is not a field\n", false).unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        assert!(stanzas(" leading continuation\n", false).is_err());
    }

    #[test]
    fn purl_skips_empty_parts_and_survives_bad_names() {
        assert_eq!(
            purl("npm", Some("@types"), "node", "20.1.0", &[]),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "bash",
                "5.2",
                &[("arch", "amd64"), ("distro", "")]
            ),
            "pkg:deb/debian/bash@5.2?arch=amd64"
        );
        assert_eq!(purl("npm", None, "", "1", &[]), "");
    }

    #[test]
    fn path_helpers() {
        assert_eq!(basename("/a/b/c.jar"), "c.jar");
    }
}
