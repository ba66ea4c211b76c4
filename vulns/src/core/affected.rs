//! Whether a version falls in an OSV `affected` entry: SEMVER and ECOSYSTEM ranges (events `introduced`,
//! `fixed`, `last_affected`, `limit`) evaluated as the OSV schema describes, plus the explicit `versions`.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::osv::{Affected, Event, RangeKind};
use super::version::Scheme;

/// Whether a fix exists for an affected version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FixState {
    /// A fixed version exists above the installed one.
    Fixed,
    /// The record names no fix (yet).
    NotFixed,
    /// Affected by an explicit version list only: the record does not say.
    Unknown,
}

impl FixState {
    /// The stable name (`fixed`, `not-fixed`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            FixState::Fixed => "fixed",
            FixState::NotFixed => "not-fixed",
            FixState::Unknown => "unknown",
        }
    }
}

/// The outcome of evaluating one `affected` entry against one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not affected.
    Clear,
    /// Affected; `fixed` lists the fix versions above the installed one, lowest first.
    Affected {
        /// Fix state.
        state: FixState,
        /// Fixed versions.
        fixed: Vec<String>,
    },
    /// A version in the record (or the installed one) does not parse in this ordering.
    Undecidable,
}

/// Evaluates `version` against one entry, ordering versions by `ecosystem_scheme` for ECOSYSTEM ranges
/// (SEMVER ranges always use SemVer).
pub fn evaluate(entry: &Affected, ecosystem_scheme: Option<Scheme>, version: &str) -> Verdict {
    let mut undecidable = false;
    let mut hit = false;
    let mut fixed: Vec<String> = vec![];
    for range in &entry.ranges {
        let scheme = match range.kind {
            RangeKind::Semver => Scheme::Semver,
            RangeKind::Ecosystem => match ecosystem_scheme {
                Some(s) => s,
                None => {
                    undecidable = true;
                    continue;
                }
            },
            RangeKind::Git | RangeKind::Unknown => continue,
        };
        match in_range(scheme, &range.events, version) {
            Some((true, fixes)) => {
                hit = true;
                fixed.extend(fixes);
            }
            Some((false, _)) => {}
            None => undecidable = true,
        }
    }
    let listed = entry.versions.iter().any(|v| {
        v == version
            || ecosystem_scheme.and_then(|s| s.compare(v, version)) == Some(Ordering::Equal)
    });
    if hit {
        let scheme = ecosystem_scheme.unwrap_or(Scheme::Semver);
        fixed.sort_by(|a, b| scheme.compare(a, b).unwrap_or_else(|| a.cmp(b)));
        fixed.dedup();
        let state = if fixed.is_empty() {
            FixState::NotFixed
        } else {
            FixState::Fixed
        };
        return Verdict::Affected { state, fixed };
    }
    if listed {
        return Verdict::Affected {
            state: FixState::Unknown,
            fixed: vec![],
        };
    }
    if undecidable {
        Verdict::Undecidable
    } else {
        Verdict::Clear
    }
}

/// One range: `Some((affected, fixes above the version))`, `None` when a version does not parse.
fn in_range(scheme: Scheme, events: &[Event], version: &str) -> Option<(bool, Vec<String>)> {
    // "0" sorts below everything; the rest by the scheme. Sorting first is what the schema's evaluation
    // algorithm asks for (records need not list events in order).
    let key = |e: &Event| -> (bool, String) {
        match e {
            Event::Introduced(v) => (v == "0", v.clone()),
            Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => (false, v.clone()),
        }
    };
    let mut sorted: Vec<&Event> = events.iter().collect();
    for e in &sorted {
        let (zero, v) = key(e);
        if !zero && scheme.compare(&v, &v).is_none() {
            return None;
        }
    }
    scheme.compare(version, version)?;
    sorted.sort_by(|a, b| {
        let ((za, va), (zb, vb)) = (key(a), key(b));
        zb.cmp(&za)
            .then_with(|| scheme.compare(&va, &vb).unwrap_or(Ordering::Equal))
    });
    let ge = |bound: &str| {
        scheme
            .compare(version, bound)
            .is_some_and(|o| o != Ordering::Less)
    };
    let mut affected = false;
    let mut fixes = vec![];
    for e in sorted {
        match e {
            Event::Introduced(v) => {
                if v == "0" || ge(v) {
                    affected = true;
                }
            }
            Event::Fixed(v) => {
                if ge(v) {
                    affected = false;
                } else {
                    fixes.push(v.clone());
                }
            }
            Event::LastAffected(v) => {
                if scheme.compare(version, v) == Some(Ordering::Greater) {
                    affected = false;
                }
            }
            Event::Limit(v) => {
                if ge(v) {
                    affected = false;
                }
            }
        }
    }
    // Only the first fix above the version belongs to the range the version is in.
    fixes.truncate(1);
    Some((affected, if affected { fixes } else { vec![] }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::osv::{PackageRef, Range};

    fn entry(kind: RangeKind, events: Vec<Event>, versions: &[&str]) -> Affected {
        Affected {
            package: Some(PackageRef {
                ecosystem: "Debian:12".into(),
                name: "openssl".into(),
                purl: None,
            }),
            severity: vec![],
            ranges: vec![Range { kind, events }],
            versions: versions.iter().map(|s| s.to_string()).collect(),
            ecosystem_specific: None,
            database_specific: None,
        }
    }

    use Event::*;

    #[test]
    fn introduced_fixed() {
        let e = entry(
            RangeKind::Ecosystem,
            vec![Introduced("0".into()), Fixed("3.0.11-1~deb12u2".into())],
            &[],
        );
        let s = Some(Scheme::Dpkg);
        assert_eq!(
            evaluate(&e, s, "3.0.11-1~deb12u1"),
            Verdict::Affected {
                state: FixState::Fixed,
                fixed: vec!["3.0.11-1~deb12u2".into()]
            }
        );
        assert_eq!(evaluate(&e, s, "3.0.11-1~deb12u2"), Verdict::Clear);
        assert_eq!(evaluate(&e, s, "3.0.13-1"), Verdict::Clear);
    }

    #[test]
    fn several_intervals_unsorted_and_last_affected() {
        let e = entry(
            RangeKind::Semver,
            vec![
                Introduced("2.0.0".into()),
                Fixed("2.3.1".into()),
                Introduced("1.0.0".into()),
                Fixed("1.4.2".into()),
            ],
            &[],
        );
        assert_eq!(evaluate(&e, None, "0.9.0"), Verdict::Clear);
        assert!(
            matches!(evaluate(&e, None, "1.4.1"), Verdict::Affected { ref fixed, .. } if fixed == &["1.4.2"])
        );
        assert_eq!(evaluate(&e, None, "1.5.0"), Verdict::Clear);
        assert!(
            matches!(evaluate(&e, None, "2.3.0"), Verdict::Affected { ref fixed, .. } if fixed == &["2.3.1"])
        );
        let e = entry(
            RangeKind::Semver,
            vec![Introduced("0".into()), LastAffected("1.2.0".into())],
            &[],
        );
        assert_eq!(
            evaluate(&e, None, "1.2.0"),
            Verdict::Affected {
                state: FixState::NotFixed,
                fixed: vec![]
            }
        );
        assert_eq!(evaluate(&e, None, "1.2.1"), Verdict::Clear);
        let e = entry(
            RangeKind::Semver,
            vec![Introduced("1.0.0".into()), Limit("1.5.0".into())],
            &[],
        );
        assert!(matches!(
            evaluate(&e, None, "1.4.0"),
            Verdict::Affected { .. }
        ));
        assert_eq!(evaluate(&e, None, "1.5.0"), Verdict::Clear);
    }

    #[test]
    fn explicit_versions_and_undecidable() {
        let e = entry(
            RangeKind::Git,
            vec![Introduced("abc".into())],
            &["1.0.0", "1.0.1"],
        );
        assert_eq!(
            evaluate(&e, Some(Scheme::Semver), "1.0.1"),
            Verdict::Affected {
                state: FixState::Unknown,
                fixed: vec![]
            }
        );
        assert_eq!(evaluate(&e, Some(Scheme::Semver), "1.0.2"), Verdict::Clear);
        let e = entry(
            RangeKind::Ecosystem,
            vec![Introduced("0".into()), Fixed("1.0".into())],
            &[],
        );
        assert_eq!(
            evaluate(&e, Some(Scheme::Dpkg), "garbage"),
            Verdict::Undecidable
        );
        assert_eq!(evaluate(&e, None, "0.5"), Verdict::Undecidable);
    }
}
