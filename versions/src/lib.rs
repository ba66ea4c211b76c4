//! Version comparison per ecosystem: one small module per ordering, chosen by OSV ecosystem or by the
//! type of a cataloged package.
//!
//! Its own crate because two consumers need the same orderings: the vulnerability matcher (ranges in
//! feeds) and the policy engine (`required_package` minimum versions), and the policy engine must stay
//! free of the vulnerability store's IO dependencies.

#![deny(missing_docs)]

use std::cmp::Ordering;

pub mod apk;
pub mod dpkg;
pub mod gem;
pub mod maven;
pub mod pep440;
pub mod rpm;
pub mod semver;

/// A version ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// dpkg (Debian, Ubuntu).
    Dpkg,
    /// rpm EVR (Red Hat, Rocky Linux, AlmaLinux, SUSE).
    Rpm,
    /// apk-tools (Alpine).
    Apk,
    /// PEP 440 (PyPI).
    Pep440,
    /// SemVer 2.0 (npm, crates.io, Go with its `v` prefix, and every SEMVER range).
    Semver,
    /// Maven's ComparableVersion.
    Maven,
    /// RubyGems' Gem::Version.
    Gem,
}

impl Scheme {
    /// The ordering of an OSV ecosystem (`Debian:12` → dpkg). `None` for ecosystems without one here.
    pub fn for_ecosystem(ecosystem: &str) -> Option<Scheme> {
        let base = ecosystem.split(':').next().unwrap_or(ecosystem);
        Some(match base {
            "Debian" | "Ubuntu" => Scheme::Dpkg,
            "Alpine" => Scheme::Apk,
            "Red Hat" | "Rocky Linux" | "AlmaLinux" | "openSUSE" | "SUSE" | "Mageia" => Scheme::Rpm,
            "PyPI" => Scheme::Pep440,
            "npm" | "crates.io" | "Go" => Scheme::Semver,
            "Maven" => Scheme::Maven,
            "RubyGems" => Scheme::Gem,
            _ => return None,
        })
    }

    /// The ordering of a cataloged package type (`dpkg`, `rpm`, `apk`, `python`, `npm`, ...), as anchore
    /// compares a package's version by its distro flavor. `None` for types with no ordering here.
    pub fn for_package_type(pkg_type: &str) -> Option<Scheme> {
        Some(match pkg_type {
            "deb" | "dpkg" => Scheme::Dpkg,
            "rpm" => Scheme::Rpm,
            "apk" => Scheme::Apk,
            "python" => Scheme::Pep440,
            "npm" | "go-module" | "rust-crate" => Scheme::Semver,
            "java-archive" | "java" => Scheme::Maven,
            "gem" => Scheme::Gem,
            _ => return None,
        })
    }

    /// Compares two versions; `None` when either is not a valid version of this scheme (the caller then
    /// cannot decide and must not claim a match or a non-match from it).
    pub fn compare(self, a: &str, b: &str) -> Option<Ordering> {
        match self {
            Scheme::Dpkg => dpkg::compare(a, b),
            Scheme::Rpm => Some(rpm::compare_evr(a, b)),
            Scheme::Apk => apk::compare(a, b),
            Scheme::Pep440 => pep440::compare(a, b),
            Scheme::Semver => semver::compare(a, b),
            Scheme::Maven => Some(maven::compare(a, b)),
            Scheme::Gem => gem::compare(a, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecosystems_pick_their_scheme() {
        assert_eq!(Scheme::for_ecosystem("Debian:12"), Some(Scheme::Dpkg));
        assert_eq!(
            Scheme::for_ecosystem("Ubuntu:22.04:LTS"),
            Some(Scheme::Dpkg)
        );
        assert_eq!(Scheme::for_ecosystem("Alpine:v3.20"), Some(Scheme::Apk));
        assert_eq!(Scheme::for_ecosystem("Rocky Linux:9"), Some(Scheme::Rpm));
        assert_eq!(Scheme::for_ecosystem("PyPI"), Some(Scheme::Pep440));
        assert_eq!(Scheme::for_ecosystem("Go"), Some(Scheme::Semver));
        assert_eq!(Scheme::for_ecosystem("Hex"), None);
    }

    #[test]
    fn package_types_pick_their_scheme() {
        assert_eq!(Scheme::for_package_type("deb"), Some(Scheme::Dpkg));
        assert_eq!(Scheme::for_package_type("python"), Some(Scheme::Pep440));
        assert_eq!(
            Scheme::for_package_type("java-archive"),
            Some(Scheme::Maven)
        );
        assert_eq!(Scheme::for_package_type("rust-crate"), Some(Scheme::Semver));
        assert_eq!(Scheme::for_package_type("binary"), None);
    }
}
