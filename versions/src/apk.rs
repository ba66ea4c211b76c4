//! Alpine (apk-tools) version ordering: `digits{.digits}[letter]{_suffix[N]}[-rN]`, where `_alpha`,
//! `_beta`, `_pre`, `_rc` sort before the plain version and `_cvs`, `_svn`, `_git`, `_hg`, `_p` after it.
//! A port of the rules in apk-tools' `version.c` (token classes and their order), not of its code.

use std::cmp::Ordering;

/// Token classes in apk-tools' order; a version may only move forward through them (with the
/// exceptions in [`next_class`]), which is what makes `1.2_rc1` smaller than `1.2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Invalid,
    DigitOrZero,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    RevisionNo,
    End,
}

const PRE: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const POST: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];

struct Tokens<'a> {
    s: &'a [u8],
    class: Class,
}

impl Tokens<'_> {
    /// Classifies what follows the token just read, consuming its separator.
    fn next_class(&mut self) {
        let cur = self.class;
        let mut n = Class::Invalid;
        match self.s.first() {
            None | Some(0) => n = Class::End,
            Some(c)
                if matches!(cur, Class::Digit | Class::DigitOrZero) && c.is_ascii_lowercase() =>
            {
                n = Class::Letter
            }
            Some(c) if cur == Class::Letter && c.is_ascii_digit() => n = Class::Digit,
            Some(c) if cur == Class::Suffix && c.is_ascii_digit() => n = Class::SuffixNo,
            Some(c) => {
                match c {
                    b'.' => n = Class::DigitOrZero,
                    b'_' => n = Class::Suffix,
                    b'-' if self.s.get(1) == Some(&b'r') => {
                        n = Class::RevisionNo;
                        self.s = &self.s[1..];
                    }
                    _ => {}
                }
                self.s = &self.s[1..];
            }
        }
        let allowed_back = matches!(
            (n, cur),
            (Class::DigitOrZero, Class::Digit)
                | (Class::Suffix, Class::SuffixNo)
                | (Class::Digit, Class::Letter)
        );
        if n < cur && !allowed_back {
            n = Class::Invalid;
        }
        self.class = n;
    }

    /// Reads the value of the current token and moves on.
    fn value(&mut self) -> i64 {
        if self.s.is_empty() {
            self.class = Class::End;
            return 0;
        }
        let mut i = 0;
        let mut v: i64 = 0;
        let mut forced = None;
        let digits = |s: &[u8], i: &mut usize, v: &mut i64| {
            while *i < s.len() && s[*i].is_ascii_digit() {
                *v = v.saturating_mul(10).saturating_add(i64::from(s[*i] - b'0'));
                *i += 1;
            }
        };
        match self.class {
            // Leading zeros after a dot make a token of their own, worth minus their count: 1.01 < 1.1.
            Class::DigitOrZero if self.s[0] == b'0' => {
                while i < self.s.len() && self.s[i] == b'0' {
                    i += 1;
                }
                forced = Some(Class::Digit);
                v = -(i as i64);
            }
            Class::DigitOrZero | Class::Digit | Class::SuffixNo | Class::RevisionNo => {
                digits(self.s, &mut i, &mut v)
            }
            Class::Letter => {
                v = i64::from(self.s[0]);
                i = 1;
            }
            Class::Suffix => {
                if let Some((k, p)) = PRE
                    .iter()
                    .enumerate()
                    .find(|(_, p)| self.s.starts_with(p.as_bytes()))
                {
                    v = k as i64 - PRE.len() as i64;
                    i = p.len();
                } else if let Some((k, p)) = POST
                    .iter()
                    .enumerate()
                    .find(|(_, p)| self.s.starts_with(p.as_bytes()))
                {
                    v = k as i64;
                    i = p.len();
                } else {
                    self.class = Class::Invalid;
                    return -1;
                }
            }
            _ => {
                self.class = Class::Invalid;
                return -1;
            }
        }
        self.s = &self.s[i..];
        if self.s.is_empty() {
            self.class = Class::End;
        } else if let Some(c) = forced {
            self.class = c;
        } else {
            self.next_class();
        }
        v
    }
}

/// Whether apk-tools would accept this version.
pub fn is_valid(v: &str) -> bool {
    let mut t = Tokens {
        s: v.as_bytes(),
        class: Class::Digit,
    };
    while !matches!(t.class, Class::End | Class::Invalid) {
        t.value();
    }
    t.class == Class::End
}

/// Compares two Alpine versions; `None` when either is not valid.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    if !is_valid(a) || !is_valid(b) {
        return None;
    }
    let mut ta = Tokens {
        s: a.as_bytes(),
        class: Class::Digit,
    };
    let mut tb = Tokens {
        s: b.as_bytes(),
        class: Class::Digit,
    };
    let (mut va, mut vb) = (0, 0);
    while ta.class == tb.class && !matches!(ta.class, Class::End | Class::Invalid) && va == vb {
        va = ta.value();
        vb = tb.value();
    }
    if va != vb {
        return Some(va.cmp(&vb));
    }
    if ta.class == tb.class {
        return Some(Ordering::Equal);
    }
    // Equal so far and one goes on: the longer one is newer unless it goes on with a pre-release suffix.
    if ta.class == Class::Suffix && peek_suffix(&ta) < 0 {
        return Some(Ordering::Less);
    }
    if tb.class == Class::Suffix && peek_suffix(&tb) < 0 {
        return Some(Ordering::Greater);
    }
    Some(tb.class.cmp(&ta.class))
}

fn peek_suffix(t: &Tokens<'_>) -> i64 {
    Tokens {
        s: t.s,
        class: t.class,
    }
    .value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn table() {
        for (a, b, want) in [
            ("1.2.3", "1.2.3", Equal),
            ("1.2.3-r1", "1.2.3", Greater),
            ("1.2.3-r10", "1.2.3-r9", Greater),
            ("1.2_rc1", "1.2", Less),
            ("1.2_alpha", "1.2_beta", Less),
            ("1.2_beta2", "1.2_rc1", Less),
            ("1.2_p1", "1.2", Greater),
            ("1.2_p1", "1.2-r5", Greater),
            ("1.2a", "1.2", Greater),
            ("1.2a", "1.2b", Less),
            ("1.2.1", "1.2a", Greater),
            ("1.01", "1.1", Less),
            ("1.001", "1.01", Less),
            ("3.1.4-r5", "3.1.4-r6", Less),
            ("1.10", "1.9", Greater),
            ("2.38.1-r0", "2.38-r0", Greater),
        ] {
            assert_eq!(compare(a, b), Some(want), "{a} vs {b}");
            assert_eq!(compare(b, a), Some(want.reverse()), "{b} vs {a}");
        }
        assert!(!is_valid("1.2-foo"));
        assert!(!is_valid("1.2_bogus"));
        assert_eq!(compare("1.2_bogus", "1.2"), None);
    }
}
