//! Facts from the analyzer's content pass beyond the inventory: retrieved files (anchore's
//! `retrieve_files`), the `/etc/passwd` entries read from the retrieved copy, and the malware scan.

use serde::{Deserialize, Serialize};

/// A file whose contents the analyzer kept (`services.analyzer.retrieve_files`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetrievedFile {
    /// File path.
    pub path: String,
    /// The file's bytes.
    pub content: Vec<u8>,
}

/// The image's malware scan.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MalwareScan {
    /// The scanner's name (`clamav`).
    pub scanner: String,
    /// What it flagged in the image's visible files.
    pub findings: Vec<MalwareFinding>,
}

/// A file a malware scanner flagged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MalwareFinding {
    /// File path.
    pub path: String,
    /// The signature that matched.
    pub signature: String,
}

/// `/etc/passwd` as anchore's `passwd_file` gate reads it: per user name (in the order first seen; a
/// name seen again keeps its place and takes the later line's fields), the fields after the name.
pub type PasswdEntries = Vec<(String, Vec<String>)>;

/// Parses `/etc/passwd` as anchore does: the bytes decoded as UTF-8 (an error otherwise), split into lines
/// as Python's `str.splitlines` does, each line stripped and split on `:`.
pub fn parse_passwd(bytes: &[u8]) -> Result<PasswdEntries, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        format!(
            "'utf-8' codec can't decode /etc/passwd: invalid byte at position {}",
            e.valid_up_to()
        )
    })?;
    let mut entries: PasswdEntries = Vec::new();
    for line in py_splitlines(text) {
        let mut fields = line.trim().split(':').map(String::from);
        let user = fields.next().unwrap_or_default();
        let rest: Vec<String> = fields.collect();
        match entries.iter_mut().find(|(u, _)| *u == user) {
            Some(slot) => slot.1 = rest,
            None => entries.push((user, rest)),
        }
    }
    Ok(entries)
}

/// Python's `str.splitlines()`: every Unicode line boundary it knows (`\r\n` as one), no trailing empty
/// line.
fn py_splitlines(text: &str) -> Vec<&str> {
    let boundary = |c: char| {
        matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        )
    };
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if boundary(c) {
            lines.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = chars.peek() {
                    chars.next();
                    end = j + 1;
                }
            }
            start = end;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitlines_is_pythons() {
        assert_eq!(py_splitlines("a\nb\r\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(py_splitlines("a\n"), ["a"]);
        assert_eq!(py_splitlines("a\n\nb"), ["a", "", "b"]);
        assert!(py_splitlines("").is_empty());
        assert_eq!(py_splitlines("a\u{2028}b"), ["a", "b"]);
    }

    #[test]
    fn passwd_parses_as_anchore_does() {
        let e = parse_passwd(b"root:x:0:0:root:/root:/bin/sh\n  bin:x:1:1::/bin:/bin/false  \nroot:x:0:1::/:/bin/bash\n")
            .unwrap();
        assert_eq!(e.len(), 2);
        // A repeated name keeps its place with the later line's fields.
        assert_eq!(e[0].0, "root");
        assert_eq!(e[0].1[2], "1");
        assert_eq!(e[1].1.last().unwrap(), "/bin/false");
        assert!(parse_passwd(b"root:\xff\n").is_err());
        assert!(parse_passwd(b"").unwrap().is_empty());
    }
}
