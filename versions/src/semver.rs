//! SemVer 2.0 precedence (npm, crates.io, Go, and every OSV `SEMVER` range): build metadata ignored,
//! pre-releases before releases, identifiers compared numerically or in ASCII order. A leading `v` (Go)
//! is accepted, and a missing minor or patch counts as 0 so loose feed values still compare.

use std::cmp::Ordering;

/// A parsed version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SemVer<'a> {
    /// major, minor, patch.
    pub core: [u64; 3],
    /// Pre-release identifiers (empty for a release).
    pub pre: Vec<&'a str>,
}

/// Parses a version; `None` when the core is not numeric or an identifier is empty.
pub fn parse(v: &str) -> Option<SemVer<'_>> {
    let v = v.trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let v = v.split_once('+').map_or(v, |(head, _)| head);
    let (core, pre) = match v.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (v, None),
    };
    let mut nums = [0u64; 3];
    let mut parts = core.split('.');
    for (k, slot) in nums.iter_mut().enumerate() {
        match parts.next() {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                *slot = p.parse().ok()?
            }
            None if k > 0 => break,
            _ => return None,
        }
    }
    if parts.next().is_some() {
        return None;
    }
    let pre: Vec<&str> = match pre {
        Some(p) => p.split('.').collect(),
        None => vec![],
    };
    if pre.iter().any(|i| i.is_empty()) {
        return None;
    }
    Some(SemVer { core: nums, pre })
}

fn compare_identifier(a: &str, b: &str) -> Ordering {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    match (num(a), num(b)) {
        (true, true) => {
            let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.cmp(b),
    }
}

/// Compares two versions by SemVer precedence.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(
        a.core
            .cmp(&b.core)
            .then_with(|| match (a.pre.is_empty(), b.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (x, y) in a.pre.iter().zip(&b.pre) {
                        match compare_identifier(x, y) {
                            Ordering::Equal => {}
                            o => return o,
                        }
                    }
                    a.pre.len().cmp(&b.pre.len())
                }
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table() {
        for (a, b, want) in [
            ("1.0.0-alpha", "1.0.0-alpha.1", Less),
            ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
            ("1.0.0-beta.2", "1.0.0-beta.11", Less),
            ("1.0.0-rc.1", "1.0.0", Less),
            ("1.0.0+build", "1.0.0", Equal),
            ("v1.2.3", "1.2.3", Equal),
            ("v0.0.0-20210101000000-abcdef123456", "v0.0.1", Less),
            ("2.0.0+incompatible", "1.9.9", Greater),
            ("1.2", "1.2.0", Equal),
            ("10.0.0", "9.0.0", Greater),
        ] {
            assert_eq!(compare(a, b), Some(want), "{a} vs {b}");
        }
        assert_eq!(compare("x.y.z", "1.0.0"), None);
        assert_eq!(compare("1.0.0-", "1.0.0"), None);
    }
}
