//! npm packages: the `package.json` of each installed package under `node_modules`.

use serde_json::Value;

use super::util::{error, package, purl};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::PackageType;

const NAME: &str = "npm";

/// Real package.json files are a few KiB; some generated ones list thousands of files.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads `package.json` files.
#[derive(Debug, Default, Clone, Copy)]
pub struct NpmCataloger;

impl Cataloger for NpmCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        // Like Syft, every package.json with a name and a version is a package (the app's own root included);
        // see DIFFERENCES.md.
        if entry.path.ends_with("/package.json") {
            Want::UpTo {
                max_bytes: MAX_BYTES,
            }
        } else {
            Want::No
        }
    }

    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let path = file.meta.path;
        let json: Value = serde_json::from_slice(file.bytes)
            .map_err(|e| error(NAME, path, format!("invalid package.json: {e}")))?;
        let Value::Object(m) = json else {
            return Err(error(NAME, path, "invalid package.json: not a JSON object"));
        };
        // Packages without name or version are folders of a package (`{"type": "module"}`), not packages.
        let (Some(Value::String(name)), Some(Value::String(version))) =
            (m.get("name"), m.get("version"))
        else {
            return Ok(Found::default());
        };
        if name.is_empty() || version.is_empty() {
            return Ok(Found::default());
        }
        let (namespace, short) = match name.split_once('/') {
            Some((scope, n)) if scope.starts_with('@') => (Some(scope), n),
            _ => (None, name.as_str()),
        };
        let purl = purl("npm", namespace, short, version, &[]);
        let licenses = licenses(m.get("license"), m.get("licenses"));
        let p = package(NAME, PackageType::Npm, name, version, purl, licenses, path);
        Ok(Found {
            packages: vec![p],
            distro: None,
        })
    }
}

/// `"license": "MIT"`, `"license": {"type": "MIT"}`, or the legacy `"licenses": [{"type": "MIT"}, "ISC"]`.
fn licenses(license: Option<&Value>, legacy: Option<&Value>) -> Vec<String> {
    fn one(v: &Value) -> Option<String> {
        match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Object(o) => o
                .get("type")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            _ => None,
        }
    }
    if let Some(l) = license.and_then(one) {
        return vec![l];
    }
    match legacy {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, bytes: &[u8]) -> Result<Found, CatalogError> {
        crate::catalog::util::run_wanted(&NpmCataloger, path, bytes)
    }

    #[test]
    fn installed_package_json() {
        let found = run(
            "/app/node_modules/axios/package.json",
            include_bytes!("testdata/npm/axios-package.json"),
        )
        .unwrap();
        let p = &found.packages[0];
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.purl.as_str()),
            ("axios", "1.7.7", "pkg:npm/axios@1.7.7")
        );
        assert_eq!(p.licenses, ["MIT"]);
    }

    #[test]
    fn scoped_and_legacy_licenses() {
        let json = br#"{"name":"@types/node","version":"20.11.5","licenses":[{"type":"MIT"},{"type":"Apache-2.0"}]}"#;
        let p = &run("/app/node_modules/@types/node/package.json", json)
            .unwrap()
            .packages[0];
        assert_eq!(p.purl, "pkg:npm/%40types/node@20.11.5");
        assert_eq!(p.licenses, ["MIT", "Apache-2.0"]);
    }

    #[test]
    fn folders_without_name_or_version_are_not_packages() {
        let found = run(
            "/app/node_modules/axios/lib/package.json",
            br#"{"type":"module"}"#,
        )
        .unwrap();
        assert!(found.packages.is_empty());
        let found = run(
            "/app/node_modules/x/package.json",
            br#"{"name":"x","version":{"weird":1}}"#,
        )
        .unwrap();
        assert!(found.packages.is_empty());
    }

    #[test]
    fn invalid_package_json_is_an_error() {
        let path = "/app/node_modules/broken/package.json";
        let e = run(path, br#"{"name": "broken", "version": "1.0.0""#).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("npm: /app/node_modules/broken/package.json: invalid package.json"),
            "{e}"
        );
        assert!(run(path, b"[1, 2, 3]").is_err());
        assert!(run(path, b"").is_err());
    }
}
