//! Content search: operator-named regexes over a file's bytes (anchore's `content_search` analyzer),
//! reporting file, line and rule, and the matched text only for rules that ask for it (`store_match`).
//!
//! Unlike secret search there are no built-in rules: with none configured nothing is searched, and the
//! image records that content search did not run (the `files.content_regex_match` gate then says its
//! results are unavailable rather than "no match").

use regex::bytes::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

/// Matches kept per file: a log of a million matching lines must not make a million rows.
pub const MAX_MATCHES_PER_FILE: usize = 64;

/// Bytes of matched text kept for a `store_match` rule (cut at a character boundary): enough to see what
/// matched, not a way to copy files out of images.
pub const MAX_MATCH_TEXT: usize = 256;

/// Bounds a hostile pattern's compiled size, as for secret rules.
const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// A named content search pattern (`services.analyzer.content_search[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentRule {
    /// Name reported with each match, and what a policy's `regex_name` selects on.
    pub name: String,
    /// Rust `regex` syntax over the file's bytes; `^` and `$` match at line starts and ends.
    pub pattern: String,
    /// Keep the matched text (first [`MAX_MATCH_TEXT`] bytes) with each match; off: file and line only.
    #[serde(default)]
    pub store_match: bool,
}

/// One match of a content search rule in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ContentMatch {
    /// File path.
    pub path: String,
    /// 1-based line of the match start.
    pub line: u64,
    /// Name of the rule that matched.
    pub rule: String,
    /// The matched text, only when the rule says `store_match`; capped at [`MAX_MATCH_TEXT`] bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A rule that cannot be used: its position in the list and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Index of the rule in the list given.
    pub index: usize,
    /// What is wrong, naming the rule.
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "content search rule {}: {}", self.index, self.message)
    }
}

/// Compiled content search rules, built once per analyzer and shared by the layer threads.
#[derive(Debug)]
pub struct ContentSearcher {
    rules: Vec<ContentRule>,
    set: RegexSet,
    compiled: Vec<Regex>,
}

fn builder_error(name: &str, e: regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => {
            format!("rule {name}: pattern compiles to more than {limit} bytes; simplify it")
        }
        e => format!("rule {name}: invalid pattern: {e}"),
    }
}

impl ContentSearcher {
    /// Compiles the rules (each once, with a size limit); an empty or repeated name or an invalid pattern
    /// is an error naming the rule and its position.
    pub fn new(rules: &[ContentRule]) -> Result<Self, RuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, r) in rules.iter().enumerate() {
            let fail = |message: String| RuleError { index, message };
            if r.name.trim().is_empty() {
                return Err(fail("name is empty".into()));
            }
            if rules[..index].iter().any(|o| o.name == r.name) {
                return Err(fail(format!(
                    "rule {}: name used by an earlier rule (policies select rules by name)",
                    r.name
                )));
            }
            if r.pattern.is_empty() {
                return Err(fail(format!("rule {}: pattern is empty", r.name)));
            }
            let re = regex::bytes::RegexBuilder::new(&r.pattern)
                .multi_line(true)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|e| fail(builder_error(&r.name, e)))?;
            compiled.push(re);
        }
        let set = regex::bytes::RegexSetBuilder::new(rules.iter().map(|r| &r.pattern))
            .multi_line(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| RuleError {
                index: 0,
                message: format!("the rules together: {e}"),
            })?;
        Ok(ContentSearcher {
            rules: rules.to_vec(),
            set,
            compiled,
        })
    }

    /// Whether there is anything to search for.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Matches in a text file, sorted by line then rule; at most one per (line, rule) and
    /// [`MAX_MATCHES_PER_FILE`] in all.
    pub fn search(&self, path: &str, bytes: &[u8]) -> Vec<ContentMatch> {
        // One pass of the set rejects a file no rule matches; only the rules that match run again to
        // place their matches.
        let matched = self.set.matches(bytes);
        let mut found: Vec<ContentMatch> = Vec::new();
        for i in matched.iter() {
            let rule = &self.rules[i];
            let mut last_line = 0u64;
            for (line, m) in super::matches_with_lines(&self.compiled[i], bytes) {
                if found.len() >= MAX_MATCHES_PER_FILE {
                    break;
                }
                if line == last_line {
                    continue;
                }
                last_line = line;
                found.push(ContentMatch {
                    path: path.to_string(),
                    line,
                    rule: rule.name.clone(),
                    text: rule.store_match.then(|| capped_text(m.as_bytes())),
                });
            }
        }
        found.sort();
        found
    }
}

/// The first [`MAX_MATCH_TEXT`] bytes of a match as text, cut back to a UTF-8 character boundary (bytes
/// that are not UTF-8 become U+FFFD).
fn capped_text(bytes: &[u8]) -> String {
    let mut end = bytes.len().min(MAX_MATCH_TEXT);
    if end < bytes.len() {
        // Step back over continuation bytes so a multi-byte character is never split.
        while end > 0 && bytes[end] & 0xC0 == 0x80 {
            end -= 1;
        }
    }
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, pattern: &str, store_match: bool) -> ContentRule {
        ContentRule {
            name: name.into(),
            pattern: pattern.into(),
            store_match,
        }
    }

    #[test]
    fn matches_carry_line_and_rule_and_text_only_when_asked() {
        let s = ContentSearcher::new(&[
            rule("PASSWORD", r"password\s*=\s*\S+", true),
            rule("HOST", r"internal\.example\.com", false),
        ])
        .unwrap();
        let text =
            b"a=1\npassword = s3cret\nurl=https://internal.example.com/x internal.example.com\n";
        let got = s.search("/etc/app.conf", text);
        assert_eq!(
            got,
            [
                ContentMatch {
                    path: "/etc/app.conf".into(),
                    line: 2,
                    rule: "PASSWORD".into(),
                    text: Some("password = s3cret".into()),
                },
                // Two matches on one line: one entry.
                ContentMatch {
                    path: "/etc/app.conf".into(),
                    line: 3,
                    rule: "HOST".into(),
                    text: None,
                },
            ]
        );
        assert!(s.search("/x", b"nothing here\n").is_empty());
    }

    #[test]
    fn anchors_work_per_line() {
        let s = ContentSearcher::new(&[rule("EXPORT", r"^export [A-Z_]+$", false)]).unwrap();
        let got = s.search("/p", b"# x\nexport FOO\n  export BAR\nexport BAZ\n");
        let lines: Vec<u64> = got.iter().map(|m| m.line).collect();
        assert_eq!(lines, [2, 4]);
    }

    #[test]
    fn stored_text_is_capped_at_a_character_boundary() {
        let s = ContentSearcher::new(&[rule("LONG", r"é+", true)]).unwrap();
        let long = "é".repeat(400);
        let got = s.search("/p", long.as_bytes());
        let text = got[0].text.as_deref().unwrap();
        assert!(text.len() <= MAX_MATCH_TEXT, "{}", text.len());
        assert_eq!(text, "é".repeat(MAX_MATCH_TEXT / 2));
    }

    #[test]
    fn matches_per_file_are_capped() {
        let s = ContentSearcher::new(&[rule("X", "x", false)]).unwrap();
        let many = "x\n".repeat(1000);
        assert_eq!(s.search("/p", many.as_bytes()).len(), MAX_MATCHES_PER_FILE);
    }

    #[test]
    fn bad_rules_name_themselves() {
        let e = ContentSearcher::new(&[rule("OK", "a", false), rule("BAD", "[unclosed", false)])
            .unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.message.contains("BAD"), "{e}");
        let e = ContentSearcher::new(&[rule("A", "a", false), rule("A", "b", false)]).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.message.contains("earlier"), "{e}");
        assert_eq!(
            ContentSearcher::new(&[rule(" ", "a", false)])
                .unwrap_err()
                .index,
            0
        );
        assert!(ContentSearcher::new(&[rule("E", "", false)]).is_err());
        // A pattern past the size limit is refused, not compiled into gigabytes.
        let e = ContentSearcher::new(&[rule("HUGE", r"(?:\w{500}){500}", false)]).unwrap_err();
        assert!(e.message.contains("HUGE"), "{e}");
    }
}
