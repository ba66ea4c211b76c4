//! PEP 440 ordering (PyPI), by the `pep440_rs` crate (the parser uv uses), checked against Python's
//! `packaging.version` in the differential tests.

use std::cmp::Ordering;
use std::str::FromStr;

use pep440_rs::Version;

/// Compares two PEP 440 versions; `None` when either does not parse.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let a = Version::from_str(a.trim()).ok()?;
    let b = Version::from_str(b.trim()).ok()?;
    Some(a.cmp(&b))
}

/// PyPI's normalized project name (PEP 503): lower case, runs of `-`, `_`, `.` become one `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table() {
        for (a, b, want) in [
            ("1.0", "1.0.0", Equal),
            ("1.0a1", "1.0", Less),
            ("1.0.dev1", "1.0a1", Less),
            ("1.0.post1", "1.0", Greater),
            ("1!0.1", "2.0", Greater),
            ("1.0+local", "1.0", Greater),
            ("1.0rc1", "1.0c1", Equal),
            ("v1.0", "1.0", Equal),
        ] {
            assert_eq!(compare(a, b), Some(want), "{a} vs {b}");
        }
        assert_eq!(compare("not a version", "1.0"), None);
    }

    #[test]
    fn names() {
        assert_eq!(
            normalize_name("Django_REST.framework"),
            "django-rest-framework"
        );
        assert_eq!(normalize_name("a--b"), "a-b");
    }
}
