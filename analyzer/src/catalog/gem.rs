//! Installed Ruby gems: the generated `specifications/*.gemspec` files RubyGems writes on install.
//!
//! Those files are Ruby, but generated in one fixed shape (`s.name = "rake".freeze`), so reading the
//! `x.field = value` assignments line by line is what Syft does too; evaluating Ruby is out of the question.

use super::util::{error, package, purl, utf8};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::PackageType;

const NAME: &str = "gem";

/// Generated gemspecs are a few KiB (the file list is not in them).
const MAX_BYTES: u64 = 1024 * 1024;

/// Reads installed gemspecs.
#[derive(Debug, Default, Clone, Copy)]
pub struct GemCataloger;

impl Cataloger for GemCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        if entry.path.ends_with(".gemspec") && entry.path.contains("/specifications/") {
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
        let (mut name, mut version, mut licenses) = (None, None, Vec::new());
        for line in text.lines() {
            let Some((field, value)) = assignment(line) else {
                continue;
            };
            match field {
                "name" if name.is_none() => name = first_string(value),
                "version" if version.is_none() => version = first_string(value),
                "licenses" | "license" if licenses.is_empty() => licenses = all_strings(value),
                _ => {}
            }
        }
        let (Some(name), Some(version)) = (name, version) else {
            return Err(error(
                NAME,
                path,
                "no `.name = \"...\"` and `.version = \"...\"` assignments",
            ));
        };
        let purl = purl("gem", None, &name, &version, &[]);
        let p = package(
            NAME,
            PackageType::Gem,
            &name,
            &version,
            purl,
            licenses,
            path,
        );
        Ok(Found {
            packages: vec![p],
            distro: None,
        })
    }
}

/// `  s.name = "rake".freeze` → `("name", "\"rake\".freeze")`: a single `receiver.field = value` statement.
fn assignment(line: &str) -> Option<(&str, &str)> {
    let (lhs, rhs) = line.trim().split_once('=')?;
    if rhs.starts_with('=') || rhs.starts_with('~') {
        return None; // `==`, `=~`
    }
    let (receiver, field) = lhs.trim_end().split_once('.')?;
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (ident(receiver) && ident(field)).then_some((field, rhs.trim()))
}

/// The quoted strings of a Ruby expression, in order (`["MIT".freeze, 'Ruby']` → `MIT`, `Ruby`).
fn all_strings(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find(['"', '\'']) {
        let quote = rest.as_bytes()[start] as char;
        let body = &rest[start + 1..];
        let Some(end) = body.find(quote) else { break };
        out.push(body[..end].to_owned());
        rest = &body[end + 1..];
    }
    out
}

/// The first quoted string, if the value is a string literal (not `Gem::Version.new(...)` etc.).
fn first_string(value: &str) -> Option<String> {
    if !value.starts_with(['"', '\'']) {
        return None;
    }
    all_strings(value)
        .into_iter()
        .next()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, bytes: &[u8]) -> Result<Found, CatalogError> {
        crate::catalog::util::run_wanted(&GemCataloger, path, bytes)
    }

    #[test]
    fn real_generated_gemspec() {
        let path = "/usr/share/rubygems-integration/all/specifications/rake-13.0.6.gemspec";
        let found = run(path, include_bytes!("testdata/gem/rake-13.0.6.gemspec")).unwrap();
        let p = &found.packages[0];
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.purl.as_str()),
            ("rake", "13.0.6", "pkg:gem/rake@13.0.6")
        );
        assert_eq!(p.licenses, ["MIT"]);
    }

    #[test]
    fn other_receivers_and_single_license() {
        let src = b"Gem::Specification.new do |spec|\n  spec.name = 'json'\n  spec.version = '2.7.1'\n  spec.license = 'Ruby'\nend\n";
        let p = &run("/usr/local/bundle/specifications/json-2.7.1.gemspec", src)
            .unwrap()
            .packages[0];
        assert_eq!((p.name.as_str(), p.version.as_str()), ("json", "2.7.1"));
        assert_eq!(p.licenses, ["Ruby"]);
    }

    #[test]
    fn broken_gemspec_is_an_error() {
        let path = "/var/lib/gems/3.1.0/specifications/broken-1.0.gemspec";
        let e = run(
            path,
            b"Gem::Specification.new do |s|\n  s.summary = \"cut off here",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("gem: /var/lib/gems/3.1.0/specifications/broken-1.0.gemspec"),
            "{e}"
        );
        assert!(run(path, b"\x00\x01\x02\xff binary").is_err());
        assert!(run(path, b"s.name = \"only-a-name\"\n").is_err());
    }

    #[test]
    fn wants_only_specifications() {
        let meta = EntryMeta {
            path: "/src/app/app.gemspec",
            mode: 0o644,
            size: 100,
        };
        assert_eq!(GemCataloger.wants(&meta), Want::No);
    }
}
