//! Go modules from a Go binary's build info: its dependencies, the main module and the `stdlib` it was
//! compiled with, as Syft reports them.

pub(crate) mod buildinfo;
mod main_version;

use self::buildinfo::BuildInfo;
use super::binary::{open_elf, wants_binary};
use super::util::{error, package, sort};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::{Package, PackageType};

const NAME: &str = "go";
const DEVEL: &str = "(devel)";

/// Reads Go build info from ELF executables.
#[derive(Debug, Default, Clone, Copy)]
pub struct GoCataloger;

impl Cataloger for GoCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        // 2: a `(devel)` main module's version is also looked for in the binary's contents.
        2
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
        let Some(info) = buildinfo::read(&elf).map_err(|m| error(NAME, path, m))? else {
            return Ok(Found::default());
        };
        let mut packages = packages(&info, path, file.bytes);
        sort(&mut packages);
        Ok(Found {
            packages,
            distro: None,
        })
    }
}

/// Syft's packages for one binary: deps, the main module (from `mod`, else from `path` as `(devel)`, then
/// a better version guessed as Syft does: [`main_version::guess`]), and `stdlib` at the Go version when
/// any module was found.
fn packages(info: &BuildInfo, path: &str, binary: &[u8]) -> Vec<Package> {
    let mut out: Vec<Package> = info
        .deps
        .iter()
        .filter(|m| !m.path.is_empty())
        .map(|m| module_package(&m.path, &m.version, info, path))
        .collect();
    let main = match &info.main {
        Some(m) if !m.path.is_empty() => Some((m.path.clone(), m.version.clone())),
        _ if !info.path.is_empty() => Some((info.path.clone(), DEVEL.to_owned())),
        _ => None,
    };
    if let Some((main_path, mut version)) = main {
        if version == DEVEL || version.is_empty() {
            if let Some(v) = main_version::guess(info, &main_path, binary) {
                version = v;
            }
        }
        let mut p = module_package(&main_path, &version, info, path);
        p.metadata.insert("main_module".into(), "true".into());
        out.push(p);
    }
    if !out.is_empty() && is_release_version(&info.go_version) {
        let v = &info.go_version;
        let purl = super::util::purl("golang", None, "stdlib", v.trim_start_matches("go"), &[]);
        out.push(package(
            NAME,
            PackageType::GoModule,
            "stdlib",
            v,
            purl,
            vec!["BSD-3-Clause".into()],
            path,
        ));
    }
    out
}

fn module_package(module: &str, version: &str, info: &BuildInfo, path: &str) -> Package {
    let mut p = package(
        NAME,
        PackageType::GoModule,
        module,
        version,
        go_purl(module, version),
        vec![],
        path,
    );
    p.metadata
        .insert("go_version".into(), info.go_version.clone());
    if let Some(arch) = info.setting("GOARCH") {
        p.metadata.insert("arch".into(), arch.to_owned());
    }
    p
}

/// Syft's golang purl: the first two path elements are the namespace, the third the name, the rest a subpath.
fn go_purl(module: &str, version: &str) -> String {
    let fields: Vec<&str> = module.split('/').collect();
    let (ns, name, sub) = match fields.len() {
        1 => (None, fields[0].to_owned(), String::new()),
        2 => (
            Some(fields[0].to_owned()),
            fields[1].to_owned(),
            String::new(),
        ),
        _ => (
            Some(fields[..2].join("/")),
            fields[2].to_owned(),
            fields[3..].join("/"),
        ),
    };
    let mut purl = super::util::purl("golang", ns.as_deref(), &name, version, &[]);
    if !sub.is_empty() && !purl.is_empty() {
        purl.push('#');
        purl.push_str(&sub);
    }
    purl
}

/// `go1.21.5`, `go1.22rc1`: versions Syft makes a stdlib package for (not `devel go1.23-abc`).
fn is_release_version(v: &str) -> bool {
    v.strip_prefix("go")
        .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests;
