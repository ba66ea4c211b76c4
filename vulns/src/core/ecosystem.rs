//! From a fathom package (type, name, version, purl, metadata) and the image's distro to the OSV key it is
//! matched under: ecosystem, name and version. Distro advisories are keyed by the *source* package and
//! versioned in its version space, so OS packages map to their source.

use std::collections::BTreeMap;

use super::version::pep440::normalize_name;

/// The distro facts mapping needs (os-release `ID` and `VERSION_ID`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistroRef {
    /// `ID` (`debian`, `alpine`, `ubuntu`, `rhel`, `rocky`, `almalinux`).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.20.3`, `22.04`, `9.4`).
    pub version_id: String,
}

/// The package facts mapping needs, as the analyzer records them.
#[derive(Debug, Clone, Copy)]
pub struct PackageFacts<'a> {
    /// fathom package type (`deb`, `apk`, `rpm`, `python`, `npm`, `gem`, `java-archive`, `go-module`,
    /// `rust-crate`).
    pub package_type: &'a str,
    /// Name.
    pub name: &'a str,
    /// Version.
    pub version: &'a str,
    /// Package URL.
    pub purl: &'a str,
    /// Cataloger metadata (`source`, `upstream`, ...).
    pub metadata: &'a BTreeMap<String, String>,
}

/// What a package is matched under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MatchKey {
    /// OSV ecosystem, normalized by [`normalize_ecosystem`].
    pub ecosystem: String,
    /// Package name in that ecosystem (normalized the way the feed's names are).
    pub name: String,
    /// Version in that ecosystem's version space.
    pub version: String,
}

/// Whether a fathom package type is an OS package (for `type=os|non-os` filters).
pub fn is_os_type(package_type: &str) -> bool {
    matches!(package_type, "deb" | "apk" | "rpm")
}

fn major(version_id: &str) -> &str {
    version_id.split('.').next().unwrap_or(version_id)
}

/// The OSV ecosystem of a distro's OS packages (`Debian:12`, `Alpine:v3.20`, `Ubuntu:22.04:LTS`,
/// `Rocky Linux:9`, `AlmaLinux:9`, `Red Hat:9`).
pub fn distro_ecosystem(distro: &DistroRef) -> Option<String> {
    let v = distro.version_id.trim();
    if v.is_empty() {
        return None;
    }
    Some(match distro.id.as_str() {
        "debian" => format!("Debian:{}", major(v)),
        "alpine" => {
            let mut parts = v.split('.');
            format!("Alpine:v{}.{}", parts.next()?, parts.next()?)
        }
        "ubuntu" => {
            let (year, month) = v.split_once('.')?;
            let lts = month == "04" && year.parse::<u32>().is_ok_and(|y| y % 2 == 0);
            if lts {
                format!("Ubuntu:{v}:LTS")
            } else {
                format!("Ubuntu:{v}")
            }
        }
        "rocky" => format!("Rocky Linux:{}", major(v)),
        "almalinux" => format!("AlmaLinux:{}", major(v)),
        "rhel" => format!("Red Hat:{}", major(v)),
        _ => return None,
    })
}

/// Normalizes a feed's ecosystem name to what [`distro_ecosystem`] produces: Red Hat's
/// `Red Hat:enterprise_linux:9::appstream` style becomes `Red Hat:9`; minor releases of Rocky and Alma
/// fold into their major.
pub fn normalize_ecosystem(ecosystem: &str) -> String {
    let e = ecosystem.trim();
    let (base, rest) = e.split_once(':').unwrap_or((e, ""));
    match base {
        "Red Hat" | "Rocky Linux" | "AlmaLinux" => {
            let major = rest
                .split(':')
                .find_map(|p| {
                    let m = major(p);
                    (!m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())).then_some(m)
                })
                .unwrap_or(rest);
            if major.is_empty() {
                base.to_string()
            } else {
                format!("{base}:{major}")
            }
        }
        _ => e.to_string(),
    }
}

/// Normalizes a feed's package name for its ecosystem (PyPI names by PEP 503).
pub fn normalize_name_for(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        normalize_name(name)
    } else {
        name.trim().to_string()
    }
}

/// Debian `Source:` (`glibc` or `glibc (2.36-9)`) → (name, version when given).
fn deb_source(source: &str) -> Option<(&str, Option<&str>)> {
    let s = source.trim();
    let (name, rest) = s.split_once(' ').unwrap_or((s, ""));
    if name.is_empty() {
        return None;
    }
    let v = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .map(str::trim)
        .filter(|v| !v.is_empty());
    Some((name, v))
}

/// `pkg:maven/group/artifact@version` → `group:artifact`.
fn maven_name(purl: &str) -> Option<String> {
    let rest = purl.strip_prefix("pkg:maven/")?;
    let rest = rest.split(['@', '?', '#']).next()?;
    let (group, artifact) = rest.rsplit_once('/')?;
    if group.is_empty() || artifact.is_empty() {
        return None;
    }
    Some(format!("{}:{}", group.replace('/', "."), artifact))
}

/// The key a package is matched under, or `None` when it has no OSV ecosystem (an OS package of an
/// unknown distro, a jar without Maven coordinates).
pub fn match_key(p: PackageFacts<'_>, distro: Option<&DistroRef>) -> Option<MatchKey> {
    let key = |ecosystem: String, name: &str, version: &str| MatchKey {
        name: normalize_name_for(&ecosystem, name),
        ecosystem,
        version: version.trim().to_string(),
    };
    Some(match p.package_type {
        "deb" => {
            let eco = distro_ecosystem(distro?)?;
            let source = p.metadata.get("source").and_then(|s| deb_source(s));
            let (name, version) = match source {
                Some((n, v)) => (n, v.unwrap_or(p.version)),
                None => (p.name, p.version),
            };
            // The binary's epoch is not the source's when the source named its own version; otherwise
            // the binary version is the source version.
            key(eco, name, version)
        }
        "apk" => {
            let eco = distro_ecosystem(distro?)?;
            let origin = p
                .metadata
                .get("upstream")
                .map(String::as_str)
                .unwrap_or(p.name);
            key(eco, origin, p.version)
        }
        "rpm" => key(distro_ecosystem(distro?)?, p.name, p.version),
        "python" => key("PyPI".into(), p.name, p.version),
        "npm" => key("npm".into(), p.name, p.version),
        "gem" => key("RubyGems".into(), p.name, p.version),
        "java-archive" => key("Maven".into(), &maven_name(p.purl)?, p.version),
        "go-module" => {
            // OSV spells Go versions without the `v`, and the toolchain as `stdlib` without `go`.
            let v = p.version.trim_start_matches('v');
            let v = if p.name == "stdlib" {
                v.trim_start_matches("go")
            } else {
                v
            };
            key("Go".into(), p.name, v)
        }
        "rust-crate" => key("crates.io".into(), p.name, p.version),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, v: &str) -> DistroRef {
        DistroRef {
            id: id.into(),
            version_id: v.into(),
        }
    }

    fn facts<'a>(
        t: &'a str,
        n: &'a str,
        v: &'a str,
        purl: &'a str,
        m: &'a BTreeMap<String, String>,
    ) -> PackageFacts<'a> {
        PackageFacts {
            package_type: t,
            name: n,
            version: v,
            purl,
            metadata: m,
        }
    }

    #[test]
    fn distros() {
        assert_eq!(
            distro_ecosystem(&d("debian", "12")).as_deref(),
            Some("Debian:12")
        );
        assert_eq!(
            distro_ecosystem(&d("alpine", "3.20.3")).as_deref(),
            Some("Alpine:v3.20")
        );
        assert_eq!(
            distro_ecosystem(&d("ubuntu", "22.04")).as_deref(),
            Some("Ubuntu:22.04:LTS")
        );
        assert_eq!(
            distro_ecosystem(&d("ubuntu", "23.10")).as_deref(),
            Some("Ubuntu:23.10")
        );
        assert_eq!(
            distro_ecosystem(&d("rocky", "9.4")).as_deref(),
            Some("Rocky Linux:9")
        );
        assert_eq!(
            distro_ecosystem(&d("rhel", "9.4")).as_deref(),
            Some("Red Hat:9")
        );
        assert_eq!(distro_ecosystem(&d("debian", "")), None);
        assert_eq!(
            normalize_ecosystem("Red Hat:enterprise_linux:9::appstream"),
            "Red Hat:9"
        );
        assert_eq!(normalize_ecosystem("AlmaLinux:8"), "AlmaLinux:8");
        assert_eq!(normalize_ecosystem("Debian:12"), "Debian:12");
    }

    #[test]
    fn os_packages_map_to_their_source() {
        let deb12 = d("debian", "12");
        let mut m = BTreeMap::new();
        m.insert(
            "source".to_string(),
            "util-linux (2.38.1-5+deb12u3)".to_string(),
        );
        let k = match_key(
            facts("deb", "bsdutils", "1:2.38.1-5+deb12u3", "", &m),
            Some(&deb12),
        )
        .unwrap();
        assert_eq!(
            (k.ecosystem.as_str(), k.name.as_str(), k.version.as_str()),
            ("Debian:12", "util-linux", "2.38.1-5+deb12u3")
        );
        m.insert("source".to_string(), "glibc".to_string());
        let k = match_key(
            facts("deb", "libc6", "2.36-9+deb12u4", "", &m),
            Some(&deb12),
        )
        .unwrap();
        assert_eq!(
            (k.name.as_str(), k.version.as_str()),
            ("glibc", "2.36-9+deb12u4")
        );
        let none = BTreeMap::new();
        let k = match_key(facts("deb", "bash", "5.2.15-2+b2", "", &none), Some(&deb12)).unwrap();
        assert_eq!(k.name, "bash");
        let mut m = BTreeMap::new();
        m.insert("upstream".to_string(), "openssl".to_string());
        let k = match_key(
            facts("apk", "libcrypto3", "3.1.4-r5", "", &m),
            Some(&d("alpine", "3.19.1")),
        )
        .unwrap();
        assert_eq!(
            (k.ecosystem.as_str(), k.name.as_str()),
            ("Alpine:v3.19", "openssl")
        );
        assert_eq!(match_key(facts("deb", "bash", "5", "", &none), None), None);
    }

    #[test]
    fn language_packages() {
        let none = BTreeMap::new();
        let k = match_key(facts("python", "Django_Rest", "3.0", "", &none), None).unwrap();
        assert_eq!(
            (k.ecosystem.as_str(), k.name.as_str()),
            ("PyPI", "django-rest")
        );
        let k = match_key(
            facts(
                "java-archive",
                "log4j-core",
                "2.14.1",
                "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
                &none,
            ),
            None,
        )
        .unwrap();
        assert_eq!(k.name, "org.apache.logging.log4j:log4j-core");
        assert_eq!(
            match_key(facts("java-archive", "x", "1", "", &none), None),
            None
        );
        let k = match_key(facts("go-module", "stdlib", "go1.21.3", "", &none), None).unwrap();
        assert_eq!(k.version, "1.21.3");
        let k = match_key(
            facts("go-module", "golang.org/x/net", "v0.17.0", "", &none),
            None,
        )
        .unwrap();
        assert_eq!((k.ecosystem.as_str(), k.version.as_str()), ("Go", "0.17.0"));
    }
}
