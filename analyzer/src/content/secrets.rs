//! Secret search: named regexes over a file's bytes, reporting file, line and rule — never the match.

use aho_corasick::{packed, AhoCorasick};
use regex::bytes::{Regex, RegexSet};
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use serde::{Deserialize, Serialize};

use super::{SecretFinding, SecretOptions};

/// Findings kept per file: a file of a million fake keys must not make a million rows.
const MAX_FINDINGS_PER_FILE: usize = 64;

/// Bounds a hostile pattern's compiled size (the default rules need well under 1 MiB).
const REGEX_SIZE_LIMIT: usize = 8 << 20;

/// A named secret pattern.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRule {
    /// Name reported with each finding (`AWS_ACCESS_KEY`).
    pub name: String,
    /// Rust `regex` syntax, matched against the file's bytes.
    pub pattern: String,
}

fn rule(name: &str, pattern: &str) -> SecretRule {
    SecretRule {
        name: name.into(),
        pattern: pattern.into(),
    }
}

/// anchore's default secret rules, rewritten without look-around (which Rust's regex, built for linear
/// time on hostile input, does not have), plus GitHub, GitLab and Slack tokens. Word boundaries are ASCII
/// (`(?-u:\b)`): a Unicode `\b` makes the fast DFA give up on the first non-ASCII byte of a file.
pub fn default_rules() -> Vec<SecretRule> {
    vec![
        rule(
            "AWS_ACCESS_KEY",
            r"(?-u:\b)(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[0-9A-Z]{16}(?-u:\b)",
        ),
        rule(
            "AWS_SECRET_KEY",
            r#"(?i)aws_secret_access_key[ \t]*[=:][ \t]*["']?[A-Za-z0-9/+=]{40}(?-u:\b)"#,
        ),
        rule(
            "PRIV_KEY",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        ),
        rule("DOCKER_AUTH", r#""auth"[ \t]*:[ \t]*"[A-Za-z0-9+/=]{8,}""#),
        rule(
            "API_KEY",
            r#"(?i)api[-_]?key["']?[ \t]*[=:][ \t]*["']?[A-Za-z0-9]{20,60}(?-u:\b)"#,
        ),
        rule(
            "GITHUB_TOKEN",
            r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,255}(?-u:\b)",
        ),
        rule("GITLAB_TOKEN", r"(?-u:\b)glpat-[A-Za-z0-9_-]{20,}"),
        rule("SLACK_TOKEN", r"(?-u:\b)xox[abprs]-[A-Za-z0-9-]{10,}"),
    ]
}

/// Compiled rules and path filters.
#[derive(Debug)]
pub struct SecretScanner {
    names: Vec<String>,
    prefilter: Option<Prefilter>,
    set: RegexSet,
    rules: Vec<Regex>,
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
    max_file_bytes: u64,
}

fn compile_set(what: &str, patterns: &[String]) -> Result<Option<RegexSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    regex::bytes::RegexSetBuilder::new(patterns)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(Some)
        .map_err(|e| format!("{what}: {e}"))
}

impl SecretScanner {
    /// Compiles the options' rules and filters; an invalid one is an error naming it.
    pub fn new(options: &SecretOptions) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(options.rules.len());
        for r in &options.rules {
            if r.name.is_empty() {
                return Err("secret rule with an empty name".into());
            }
            rules.push(
                regex::bytes::RegexBuilder::new(&r.pattern)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("secret rule {}: {e}", r.name))?,
            );
        }
        let patterns: Vec<String> = options.rules.iter().map(|r| r.pattern.clone()).collect();
        let set = regex::bytes::RegexSetBuilder::new(&patterns)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("secret rules: {e}"))?;
        Ok(SecretScanner {
            names: options.rules.iter().map(|r| r.name.clone()).collect(),
            prefilter: prefilter(&patterns),
            set,
            rules,
            include: compile_set("secret include pattern", &options.include)?,
            exclude: compile_set("secret exclude pattern", &options.exclude)?,
            max_file_bytes: options.max_file_bytes,
        })
    }

    /// Whether a file of this path and size is searched.
    pub fn wants(&self, path: &str, size: u64) -> bool {
        size > 0
            && size <= self.max_file_bytes
            && !self.rules.is_empty()
            && self
                .include
                .as_ref()
                .is_none_or(|s| s.is_match(path.as_bytes()))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|s| s.is_match(path.as_bytes()))
    }

    /// Findings in a text file, sorted by line then rule. Only the match's position is kept.
    pub fn scan(&self, path: &str, bytes: &[u8]) -> Vec<SecretFinding> {
        // A clean file is rejected by one literal scan (SIMD-fast) or, without a prefilter, one pass of
        // the set; only the rules that match are run again to place their findings.
        if self.prefilter.as_ref().is_some_and(|p| !p.is_match(bytes)) {
            return Vec::new();
        }
        let matched = self.set.matches(bytes);
        let mut found = Vec::new();
        for i in matched.iter() {
            for (line, _) in super::matches_with_lines(&self.rules[i], bytes) {
                if found.len() >= MAX_FINDINGS_PER_FILE {
                    break;
                }
                found.push(SecretFinding {
                    path: path.to_string(),
                    line,
                    rule: self.names[i].clone(),
                });
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

/// Shortest leading literal worth a prefilter: shorter ones occur everywhere and only add a pass.
const MIN_PREFIX: usize = 3;

/// Literals one rule may add to the prefilter. A case-insensitive rule's literals are all its case
/// variants, Unicode's included (`aws` is 12: `s` also folds to `ſ`), so each rule's set is cut to the
/// longest prefix length at which it stays this small; the default rules then stay within the 64
/// literals the SIMD (Teddy) search handles.
const MAX_LITERALS_PER_RULE: usize = 16;

/// The literal search: vectorized (Teddy) where the CPU and the literal count allow it, else an
/// Aho-Corasick automaton (whose own prefilter gives up on this many literals with many distinct first
/// bytes and steps through every byte).
#[derive(Debug)]
enum Prefilter {
    Packed(packed::Searcher),
    Automaton(AhoCorasick),
}

impl Prefilter {
    fn is_match(&self, bytes: &[u8]) -> bool {
        match self {
            Prefilter::Packed(s) => s.find(bytes).is_some(),
            Prefilter::Automaton(ac) => ac.is_match(bytes),
        }
    }
}

/// A search for the literals every match of some rule starts with, or `None` when a rule has no such
/// finite set (a pattern starting with a class or a repetition): then every file goes to the regex set.
/// Only a rejection is trusted, so a superset of the literals is fine: cutting them to a shorter prefix
/// only lets more files through to the exact regexes.
///
/// The literals keep their case (a case-insensitive rule contributes its case variants): an ASCII
/// case-insensitive automaton cannot use the vectorized search and steps through every byte of every
/// text file, which cost more than the hashing of the same bytes.
fn prefilter(patterns: &[String]) -> Option<Prefilter> {
    let mut literals: Vec<Vec<u8>> = Vec::new();
    let mut parser = regex_syntax::ParserBuilder::new();
    // The rules run on bytes (`regex::bytes`), which allows non-UTF-8 classes.
    parser.utf8(false);
    let mut extractor = Extractor::new();
    extractor.kind(ExtractKind::Prefix);
    for pattern in patterns {
        let hir = parser.build().parse(pattern).ok()?;
        let seq = extractor.extract(&hir);
        let found: Vec<&[u8]> = seq.literals()?.iter().map(|l| l.as_bytes()).collect();
        if found.is_empty() || found.iter().any(|l| l.len() < MIN_PREFIX) {
            return None;
        }
        let longest = found.iter().map(|l| l.len()).max().unwrap_or(0);
        let cut = (MIN_PREFIX..=longest).rev().find_map(|len| {
            let mut cut: Vec<&[u8]> = found.iter().map(|l| &l[..l.len().min(len)]).collect();
            cut.sort_unstable();
            cut.dedup();
            (cut.len() <= MAX_LITERALS_PER_RULE).then_some(cut)
        })?;
        literals.extend(cut.into_iter().map(<[u8]>::to_vec));
    }
    literals.sort();
    literals.dedup();
    if let Some(s) = packed::Config::new().builder().extend(&literals).build() {
        return Some(Prefilter::Packed(s));
    }
    AhoCorasick::new(&literals).ok().map(Prefilter::Automaton)
}

#[cfg(test)]
mod prefilter_tests {
    use super::*;

    fn patterns(rules: &[SecretRule]) -> Vec<String> {
        rules.iter().map(|r| r.pattern.clone()).collect()
    }

    #[test]
    fn default_rules_have_a_prefilter_that_keeps_every_match() {
        let ac = prefilter(&patterns(&default_rules())).expect("a prefilter");
        for hit in [
            "AKIAZZZZEXAMPLEKEY42",
            "AWS_Secret_Access_Key = x",
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "\"auth\": \"dXNlcjpwYXNz\"",
            "Api-Key: abc",
            "ghp_x",
            "glpat-x",
            "xoxb-1",
            "aws_\u{17f}ecret_access_key = x",
        ] {
            assert!(ac.is_match(hit.as_bytes()), "{hit}");
            // Long haystacks take the vectorized path, short ones a scalar one.
            let long = format!("{0}{hit}{0}", "lorem ipsum dolor sit amet ".repeat(20));
            assert!(ac.is_match(long.as_bytes()), "{hit}");
        }
        assert!(!ac.is_match(b"the package function return value error config"));
        let long = "the package function return value error config ".repeat(50);
        assert!(!ac.is_match(long.as_bytes()));
        // Any case of a case-insensitive rule's keyword passes.
        for hit in ["aPi_kEy", "AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"] {
            assert!(ac.is_match(hit.as_bytes()), "{hit}");
        }
        // A case-sensitive rule's literal does not pass in another case.
        assert!(!ac.is_match(b"akiaexample -----begin private key-----"));
    }

    #[test]
    fn default_rules_fit_the_vectorized_search() {
        let p = prefilter(&patterns(&default_rules())).expect("a prefilter");
        // Teddy takes up to 64 literals; past that the search falls back to stepping through bytes.
        if cfg!(target_arch = "x86_64") && std::is_x86_feature_detected!("ssse3") {
            assert!(matches!(p, Prefilter::Packed(_)), "{p:?}");
        }
    }

    #[test]
    fn a_rule_without_a_leading_literal_disables_it() {
        let mut rules = patterns(&default_rules());
        rules.push("[A-Z]{20}".into());
        assert!(prefilter(&rules).is_none());
        assert!(prefilter(&["(?i)x".into()]).is_none());
    }
}
