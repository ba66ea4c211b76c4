//! Rust crates from cargo-auditable data: the zlib-compressed JSON dependency list `cargo auditable build`
//! embeds in an ELF section named `.dep-v0`.

use std::io::Read;

use flate2::read::ZlibDecoder;
use serde::Deserialize;

use super::binary::{open_elf, wants_binary};
use super::util::{error, package, purl, sort};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::PackageType;

const NAME: &str = "rust";

/// The JSON of a binary with a thousand dependencies is ~100 KiB; more is a decompression bomb.
const MAX_JSON: u64 = 8 * 1024 * 1024;

/// Reads cargo-auditable data from ELF executables.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustCataloger;

/// The cargo-auditable format (`auditable-serde`): only the fields we use.
#[derive(Deserialize)]
struct VersionInfo {
    packages: Vec<AuditPackage>,
}

#[derive(Deserialize)]
struct AuditPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    kind: Option<String>,
}

impl Cataloger for RustCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        wants_binary(entry)
    }

    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let path = file.meta.path;
        let Some(elf) = open_elf(file.bytes) else {
            return Ok(Found::default());
        };
        let elf = elf.map_err(|m| error(NAME, path, m))?;
        let Some(section) = elf.section(".dep-v0").map_err(|m| error(NAME, path, m))? else {
            return Ok(Found::default());
        };
        let mut json = Vec::new();
        ZlibDecoder::new(section)
            .take(MAX_JSON + 1)
            .read_to_end(&mut json)
            .map_err(|e| error(NAME, path, format!(".dep-v0 is not zlib data: {e}")))?;
        if json.len() as u64 > MAX_JSON {
            return Err(error(
                NAME,
                path,
                format!(".dep-v0 inflates past {MAX_JSON} bytes"),
            ));
        }
        let info: VersionInfo = serde_json::from_slice(&json).map_err(|e| {
            error(
                NAME,
                path,
                format!(".dep-v0 is not cargo-auditable JSON: {e}"),
            )
        })?;
        let mut packages = Vec::with_capacity(info.packages.len());
        for a in info.packages {
            let mut p = package(
                NAME,
                PackageType::RustCrate,
                &a.name,
                &a.version,
                String::new(),
                vec![],
                path,
            );
            p.purl = purl("cargo", None, &a.name, &a.version, &[]);
            if let Some(s) = a.source {
                p.metadata.insert("source".into(), s);
            }
            if let Some(k) = a.kind {
                p.metadata.insert("kind".into(), k);
            }
            packages.push(p);
        }
        sort(&mut packages);
        Ok(Found {
            packages,
            distro: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::elf::rust_binary;

    fn run(bytes: &[u8]) -> Result<Found, CatalogError> {
        let meta = EntryMeta {
            path: "/usr/local/bin/ripgrep",
            mode: 0o755,
            size: bytes.len() as u64,
        };
        RustCataloger.catalog(&FileInput { meta, bytes })
    }

    const JSON: &str = r#"{"packages":[
        {"name":"ripgrep","version":"14.1.0","source":"local","dependencies":[1,2],"root":true},
        {"name":"regex","version":"1.10.3","source":"crates.io","dependencies":[2]},
        {"name":"memchr","version":"2.7.1","source":"crates.io","kind":"runtime"}]}"#;

    #[test]
    fn reads_dep_v0() {
        let found = run(&rust_binary(JSON, 8192)).unwrap();
        let got: Vec<_> = found
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str(), p.purl.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("memchr", "2.7.1", "pkg:cargo/memchr@2.7.1"),
                ("regex", "1.10.3", "pkg:cargo/regex@1.10.3"),
                ("ripgrep", "14.1.0", "pkg:cargo/ripgrep@14.1.0")
            ]
        );
    }

    #[test]
    fn binaries_without_audit_data_and_non_elf_are_empty() {
        assert_eq!(
            run(&crate::fixtures::elf::go_binary("go1.22.1", "", 8192)).unwrap(),
            Found::default()
        );
        assert_eq!(run(b"#!/bin/sh\necho hello\n").unwrap(), Found::default());
    }

    #[test]
    fn truncated_elf_and_bad_section_are_errors() {
        let bin = rust_binary(JSON, 8192);
        let e = run(&bin[..100]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("rust: /usr/local/bin/ripgrep: corrupt ELF"),
            "{e}"
        );
        assert!(run(&rust_binary("{\"not\":\"packages\"}", 8192)).is_err());
    }
}
