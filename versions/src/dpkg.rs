//! Debian version ordering (deb-version(7)): `[epoch:]upstream[-revision]`, `~` sorting before everything.

use std::cmp::Ordering;

/// A parsed Debian version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebVersion<'a> {
    /// Epoch (0 when absent).
    pub epoch: u64,
    /// Upstream version.
    pub upstream: &'a str,
    /// Debian revision (empty when absent; compares equal to `0`).
    pub revision: &'a str,
}

/// Splits a version into epoch, upstream and revision; `None` when the epoch is not a number or the
/// upstream part is empty or does not start with a digit.
pub fn parse(v: &str) -> Option<DebVersion<'_>> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) => (e.parse::<u64>().ok()?, rest),
        None => (0, v),
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(DebVersion {
        epoch,
        upstream,
        revision,
    })
}

/// Compares two Debian versions.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(
        a.epoch
            .cmp(&b.epoch)
            .then_with(|| compare_part(a.upstream, b.upstream))
            .then_with(|| compare_part(a.revision, b.revision)),
    )
}

/// Weight of a character in the non-digit runs: `~` lowest, then the end of the string, letters,
/// everything else after letters.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`: alternate non-digit runs (by weight) and digit runs (numerically).
fn compare_part(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0-1", "1.0", Greater),
            ("1.0", "1.0-0", Equal),
            ("1:1.0", "2.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~~", "1.0~", Less),
            ("1.0a", "1.0", Greater),
            ("1.0+b1", "1.0", Greater),
            ("1.0.", "1.0+", Greater),
            ("2.38.1-5+deb12u3", "2.38.1-5+deb12u2", Greater),
            ("3.0.11-1~deb12u2", "3.0.11-1", Less),
            ("1.010", "1.9", Greater),
            ("1.01", "1.1", Equal),
        ] {
            assert_eq!(compare(a, b), Some(want), "{a} vs {b}");
        }
        assert_eq!(compare("x:1", "1"), None);
        assert_eq!(compare("abc", "1"), None);
    }
}
