//! RubyGems' Gem::Version ordering: segments of digits or letters, `-` meaning `.pre.`, a letter segment
//! making a pre-release, trailing zeros ignored on each side of the first letter segment.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Num(u128),
    Str(String),
}

/// Canonical segments, or `None` when the string is not a valid gem version.
fn segments(v: &str) -> Option<Vec<Seg>> {
    let v = v.trim();
    let ok = !v.is_empty()
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !ok {
        return None;
    }
    let v = v.replace('-', ".pre.");
    let mut segs = vec![];
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        if b[i].is_ascii_digit() {
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            segs.push(Seg::Num(v[start..i].parse().ok()?));
        } else if b[i].is_ascii_alphabetic() {
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            segs.push(Seg::Str(v[start..i].to_string()));
        } else {
            i += 1;
        }
    }
    // Drop trailing zeros of the release part and of the pre-release part separately.
    let split = segs
        .iter()
        .position(|s| matches!(s, Seg::Str(_)))
        .unwrap_or(segs.len());
    let mut pre = segs.split_off(split);
    let trim = |v: &mut Vec<Seg>| {
        while v.last() == Some(&Seg::Num(0)) {
            v.pop();
        }
    };
    trim(&mut segs);
    trim(&mut pre);
    segs.extend(pre);
    Some(segs)
}

/// Compares two gem versions; `None` when either is invalid.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (segments(a)?, segments(b)?);
    let zero = Seg::Num(0);
    for k in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(k).unwrap_or(&zero), b.get(k).unwrap_or(&zero));
        let o = match (x, y) {
            (Seg::Num(x), Seg::Num(y)) => x.cmp(y),
            (Seg::Str(x), Seg::Str(y)) => x.cmp(y),
            (Seg::Str(_), Seg::Num(_)) => Ordering::Less,
            (Seg::Num(_), Seg::Str(_)) => Ordering::Greater,
        };
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table() {
        for (a, b, want) in [
            ("1.0", "1.0.0", Equal),
            ("1.0.a", "1.0", Less),
            ("1.0.0.pre.1", "1.0.0", Less),
            ("1.0.0-1", "1.0.0.pre.1", Equal),
            ("1.0.b1", "1.0.a2", Greater),
            ("1.9.3", "1.10", Less),
            ("5.2.4.3", "5.2.4.10", Less),
            ("1.0.rc1", "1.0.beta", Greater),
            ("1.0a", "1.0.a", Equal),
        ] {
            assert_eq!(compare(a, b), Some(want), "{a} vs {b}");
        }
        assert_eq!(compare("junk!", "1"), None);
    }
}
