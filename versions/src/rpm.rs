//! rpm version ordering: `rpmvercmp` on version and release (with `~` sorting before and `^` after the
//! end of a string), an epoch first (absent = 0), like `rpm.labelCompare`.

use std::cmp::Ordering;

/// Epoch, version, release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evr<'a> {
    /// Epoch (0 when absent or not a number).
    pub epoch: u64,
    /// Version.
    pub version: &'a str,
    /// Release (empty when absent).
    pub release: &'a str,
}

/// Splits `[epoch:]version[-release]`.
pub fn parse(v: &str) -> Evr<'_> {
    let v = v.trim();
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if e.bytes().all(|b| b.is_ascii_digit()) => (e.parse().unwrap_or(0), rest),
        _ => (0, v),
    };
    let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
    Evr {
        epoch,
        version,
        release,
    }
}

/// Compares two `[epoch:]version[-release]` strings. A release is compared only when both sides have
/// one: OSV and rpm both treat a bare version as matching any release of it.
pub fn compare_evr(a: &str, b: &str) -> Ordering {
    let (a, b) = (parse(a), parse(b));
    let ord = a
        .epoch
        .cmp(&b.epoch)
        .then_with(|| rpmvercmp(a.version, b.version));
    if a.release.is_empty() || b.release.is_empty() {
        return ord;
    }
    ord.then_with(|| rpmvercmp(a.release, b.release))
}

fn is_sep(c: u8) -> bool {
    !c.is_ascii_alphanumeric() && c != b'~' && c != b'^'
}

/// rpm's segment comparison: alphanumeric segments split at separators and at digit/letter changes;
/// numbers compare numerically and beat letters; `~` sorts before anything, `^` after the end.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    loop {
        while i < a.len() && is_sep(a[i]) {
            i += 1;
        }
        while j < b.len() && is_sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let take = |s: &[u8], start: usize| {
            let mut end = start;
            while end < s.len()
                && (if numeric {
                    s[end].is_ascii_digit()
                } else {
                    s[end].is_ascii_alphabetic()
                })
            {
                end += 1;
            }
            end
        };
        let (ei, ej) = (take(a, i), take(b, j));
        if ej == j {
            // Segments of different kinds: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let (mut sa, mut sb) = (&a[i..ei], &b[j..ej]);
        if numeric {
            while sa.first() == Some(&b'0') {
                sa = &sa[1..];
            }
            while sb.first() == Some(&b'0') {
                sb = &sb[1..];
            }
            match sa.len().cmp(&sb.len()) {
                Ordering::Equal => {}
                other => return other,
            }
        }
        match sa.cmp(sb) {
            Ordering::Equal => {}
            other => return other,
        }
        i = ei;
        j = ej;
    }
    match (i >= a.len(), j >= b.len()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rpmvercmp_table() {
        for (a, b, want) in [
            ("1.0", "1.0", Equal),
            ("1.0", "2.0", Less),
            ("2.0.1", "2.0", Greater),
            ("5.5p1", "5.5p2", Less),
            ("5.5p10", "5.5p1", Greater),
            ("10xyz", "10.1xyz", Less),
            ("xyz10", "xyz10.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0^", "1.0", Greater),
            ("1.0^git1", "1.0.1", Less),
            ("1.0^git1~pre", "1.0^git1", Less),
            ("1a", "1", Greater),
            ("a", "1", Less),
            ("1.0010", "1.9", Greater),
            ("1_0", "1.0", Equal),
        ] {
            assert_eq!(rpmvercmp(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn evr_table() {
        assert_eq!(compare_evr("1:1.0-1", "2.0-1"), Greater);
        assert_eq!(compare_evr("0:1.0-1.el9", "1.0-1.el9"), Equal);
        assert_eq!(compare_evr("3.0.7-27.el9", "3.0.7-24.el9_3"), Greater);
        assert_eq!(compare_evr("1.0", "1.0-5"), Equal);
    }
}
