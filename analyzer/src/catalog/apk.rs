//! Alpine packages: `/lib/apk/db/installed`, stanzas of single-letter `X:value` lines.

use super::os::{os_purl, META_ARCH, META_UPSTREAM};
use super::util::{error, package, sort, utf8};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::{Package, PackageType};

const NAME: &str = "apk";

/// An Alpine `installed` with a thousand packages and their file lists is a few MiB.
const MAX_BYTES: u64 = 128 * 1024 * 1024;

/// Reads the apk database.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApkCataloger;

impl Cataloger for ApkCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        if entry.path == "/lib/apk/db/installed" {
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
        let mut packages = Vec::new();
        let mut cur = Record::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                cur.finish(path, &mut packages)?;
                continue;
            }
            let b = line.as_bytes();
            if b.len() < 2 || b[1] != b':' {
                return Err(error(
                    NAME,
                    path,
                    format!("line {}: expected `X:value`", i + 1),
                ));
            }
            let value = &line[2..];
            match b[0] {
                b'P' => cur.name = value,
                b'V' => cur.version = value,
                b'A' => cur.arch = value,
                b'L' => cur.license = value,
                b'o' => cur.origin = value,
                _ => {}
            }
            cur.started = true;
        }
        cur.finish(path, &mut packages)?;
        sort(&mut packages);
        Ok(Found {
            packages,
            distro: None,
        })
    }
}

/// The fields of one stanza being read.
#[derive(Default)]
struct Record<'a> {
    started: bool,
    name: &'a str,
    version: &'a str,
    arch: &'a str,
    license: &'a str,
    origin: &'a str,
}

impl Record<'_> {
    fn finish(&mut self, path: &str, out: &mut Vec<Package>) -> Result<(), CatalogError> {
        if !self.started {
            return Ok(());
        }
        if self.name.is_empty() || self.version.is_empty() {
            return Err(error(
                NAME,
                path,
                format!("stanza without P: or V: (package {:?})", self.name),
            ));
        }
        let licenses = if self.license.is_empty() {
            vec![]
        } else {
            vec![self.license.to_owned()]
        };
        let mut p = package(
            NAME,
            PackageType::Apk,
            self.name,
            self.version,
            String::new(),
            licenses,
            path,
        );
        if !self.arch.is_empty() {
            p.metadata.insert(META_ARCH.into(), self.arch.to_owned());
        }
        if !self.origin.is_empty() {
            p.metadata
                .insert(META_UPSTREAM.into(), self.origin.to_owned());
        }
        p.purl = os_purl(&p, None).unwrap_or_default();
        out.push(p);
        *self = Record::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Found, CatalogError> {
        let meta = EntryMeta {
            path: "/lib/apk/db/installed",
            mode: 0o644,
            size: bytes.len() as u64,
        };
        assert_ne!(ApkCataloger.wants(&meta), Want::No);
        ApkCataloger.catalog(&FileInput { meta, bytes })
    }

    #[test]
    fn real_installed_db() {
        let found = run(include_bytes!("testdata/apk-installed")).unwrap();
        let got: Vec<_> = found
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("alpine-baselayout-data", "3.4.3-r2"),
                ("busybox", "1.36.1-r15"),
                ("libcrypto3", "3.1.4-r5"),
                ("musl", "1.2.4_git20230717-r4")
            ]
        );
        assert_eq!(
            found.packages[2].purl,
            "pkg:apk/alpine/libcrypto3@3.1.4-r5?arch=x86_64&upstream=openssl"
        );
        assert_eq!(found.packages[2].licenses, ["Apache-2.0"]);
    }

    #[test]
    fn malformed_db_is_an_error() {
        assert!(run(b"P:musl\nthis line is wrong\n").is_err());
        let e = run(b"P:musl\nA:x86_64\n").unwrap_err();
        assert!(e.to_string().contains("/lib/apk/db/installed"), "{e}");
        assert_eq!(run(b"\n\n").unwrap(), Found::default());
    }
}
