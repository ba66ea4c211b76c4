//! The distro: `/etc/os-release`, `/usr/lib/os-release`, then older release files as fallbacks.
//!
//! Each file yields its own [`Distro`]; which file wins is the merge's decision, made with
//! [`release_file_rank`] (lower wins) over the files visible in the final image.

use super::util::{error, utf8};
use super::{CatalogError, Cataloger, EntryMeta, FileInput, Found, Want};
use crate::model::Distro;

const NAME: &str = "distro";

/// Release files in precedence order: the first one present in the final image wins.
const RELEASE_FILES: &[&str] = &[
    "/etc/os-release",
    "/usr/lib/os-release",
    "/etc/lsb-release",
    "/etc/centos-release",
    "/etc/redhat-release",
    "/etc/system-release",
    "/etc/alpine-release",
    "/etc/debian_version",
];

/// Release files are tiny; anything bigger is not one.
const MAX_BYTES: u64 = 64 * 1024;

/// Precedence of a release file (0 = `/etc/os-release`, highest); `None` for other paths. The merge keeps the
/// distro of the visible release file with the lowest rank.
pub fn release_file_rank(path: &str) -> Option<usize> {
    RELEASE_FILES.iter().position(|p| *p == path)
}

/// Reads the os-release chain and older release files.
#[derive(Debug, Default, Clone, Copy)]
pub struct DistroCataloger;

impl Cataloger for DistroCataloger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn wants(&self, entry: &EntryMeta<'_>) -> Want {
        if (entry.path.starts_with("/etc/") || entry.path.starts_with("/usr/lib/"))
            && release_file_rank(entry.path).is_some()
        {
            return Want::UpTo {
                max_bytes: MAX_BYTES,
            };
        }
        Want::No
    }

    fn catalog(&self, file: &FileInput<'_>) -> Result<Found, CatalogError> {
        let path = file.meta.path;
        let text = utf8(NAME, path, file.bytes)?;
        if text.trim().is_empty() {
            return Ok(Found::default());
        }
        let distro = match path.rsplit('/').next().unwrap_or_default() {
            "os-release" | "lsb-release" => parse_key_values(text, path)?,
            "alpine-release" => version_file("alpine", "Alpine Linux", text),
            "debian_version" => debian_version(text),
            _ => redhat_style(text)
                .ok_or_else(|| error(NAME, path, "no `NAME release VERSION` line"))?,
        };
        Ok(Found {
            packages: vec![],
            distro: Some(distro),
        })
    }
}

/// `KEY=value` files (os-release, lsb-release), values optionally quoted with shell-style escapes.
fn parse_key_values(text: &str, path: &str) -> Result<Distro, CatalogError> {
    let mut d = Distro::default();
    let mut lsb_id = String::new();
    let mut seen = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            return Err(error(
                NAME,
                path,
                format!("line {}: expected KEY=value", i + 1),
            ));
        };
        let value = unquote(raw.trim());
        seen = true;
        match key.trim() {
            "ID" => d.id = value.to_lowercase(),
            "VERSION_ID" | "DISTRIB_RELEASE" => d.version_id = value,
            "PRETTY_NAME" | "DISTRIB_DESCRIPTION" => d.pretty_name = value,
            "ID_LIKE" => d.id_like = value.split_whitespace().map(str::to_owned).collect(),
            "DISTRIB_ID" => lsb_id = value.to_lowercase(),
            _ => {}
        }
    }
    if d.id.is_empty() {
        d.id = lsb_id;
    }
    if !seen || d.id.is_empty() {
        return Err(error(NAME, path, "no ID field"));
    }
    Ok(d)
}

/// Removes one level of shell quoting (`"Debian GNU/Linux 12 (bookworm)"`, `'x'`, backslash escapes).
fn unquote(v: &str) -> String {
    let inner = match (v.chars().next(), v.chars().last()) {
        (Some(q @ ('"' | '\'')), Some(l)) if q == l && v.len() >= 2 => &v[1..v.len() - 1],
        _ => v,
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Files holding just a version (`/etc/alpine-release`: `3.19.1`).
fn version_file(id: &str, name: &str, text: &str) -> Distro {
    let v = text.lines().next().unwrap_or_default().trim().to_owned();
    Distro {
        id: id.into(),
        pretty_name: format!("{name} v{v}"),
        version_id: v,
        id_like: vec![],
    }
}

/// `/etc/debian_version`: `12.5` on releases, `trixie/sid` on testing (no version then).
fn debian_version(text: &str) -> Distro {
    let v = text.trim();
    let major = if v.starts_with(|c: char| c.is_ascii_digit()) {
        v.split('.').next().unwrap_or(v)
    } else {
        ""
    };
    Distro {
        id: "debian".into(),
        version_id: major.into(),
        pretty_name: format!("Debian GNU/Linux {v}"),
        id_like: vec![],
    }
}

/// `CentOS Linux release 7.9.2009 (Core)`, `Red Hat Enterprise Linux release 9.3 (Plow)`.
fn redhat_style(text: &str) -> Option<Distro> {
    let line = text.lines().next()?.trim();
    let (name, rest) = line.split_once(" release ")?;
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if version.is_empty() {
        return None;
    }
    let lower = name.to_lowercase();
    let id = if lower.starts_with("red hat") {
        "rhel".to_owned()
    } else {
        lower.split_whitespace().next()?.to_owned()
    };
    Some(Distro {
        id,
        version_id: version,
        pretty_name: line.to_owned(),
        id_like: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str, text: &[u8]) -> Result<Found, CatalogError> {
        let meta = EntryMeta {
            path,
            mode: 0o644,
            size: text.len() as u64,
        };
        assert_ne!(DistroCataloger.wants(&meta), Want::No, "{path}");
        DistroCataloger.catalog(&FileInput { meta, bytes: text })
    }

    #[test]
    fn debian_os_release() {
        let d = run(
            "/usr/lib/os-release",
            include_bytes!("testdata/os-release-debian"),
        )
        .unwrap()
        .distro
        .unwrap();
        assert_eq!((d.id.as_str(), d.version_id.as_str()), ("debian", "12"));
        assert_eq!(d.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn ubuntu_id_like_and_fallback_files() {
        let d = run(
            "/etc/os-release",
            b"ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n",
        )
        .unwrap()
        .distro
        .unwrap();
        assert_eq!(d.id_like, vec!["debian"]);
        let d = run(
            "/etc/redhat-release",
            b"CentOS Linux release 7.9.2009 (Core)\n",
        )
        .unwrap()
        .distro
        .unwrap();
        assert_eq!(
            (d.id.as_str(), d.version_id.as_str()),
            ("centos", "7.9.2009")
        );
        let d = run("/etc/alpine-release", b"3.19.1\n")
            .unwrap()
            .distro
            .unwrap();
        assert_eq!((d.id.as_str(), d.version_id.as_str()), ("alpine", "3.19.1"));
        let d = run("/etc/debian_version", b"trixie/sid\n")
            .unwrap()
            .distro
            .unwrap();
        assert_eq!((d.id.as_str(), d.version_id.as_str()), ("debian", ""));
        let d = run(
            "/etc/lsb-release",
            b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=20.04\n",
        )
        .unwrap()
        .distro
        .unwrap();
        assert_eq!((d.id.as_str(), d.version_id.as_str()), ("ubuntu", "20.04"));
    }

    #[test]
    fn ranks_and_wants() {
        assert!(release_file_rank("/etc/os-release") < release_file_rank("/usr/lib/os-release"));
        let meta = EntryMeta {
            path: "/etc/os-release.bak",
            mode: 0o644,
            size: 10,
        };
        assert_eq!(DistroCataloger.wants(&meta), Want::No);
    }

    #[test]
    fn malformed_release_files_are_errors() {
        let e = run("/etc/os-release", b"this is not os-release\n").unwrap_err();
        assert!(e.to_string().contains("/etc/os-release"), "{e}");
        assert!(run("/etc/os-release", b"NAME=x\n").is_err());
        assert!(run("/etc/os-release", &[0xff, 0xfe, 0x00]).is_err());
        assert!(run("/etc/redhat-release", b"garbage\n").is_err());
        assert_eq!(run("/etc/os-release", b"").unwrap(), Found::default());
    }
}
