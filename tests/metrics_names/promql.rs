//! Just enough PromQL and text-exposition reading to find which metrics an expression selects (with
//! their label matchers) and which series a scrape holds. Not a parser of either language: it knows the
//! shapes fathom's dashboard and rules use, and reports anything it cannot read rather than guess.

use std::collections::BTreeMap;

/// A metric an expression selects: `name{label op "value", ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub matchers: Vec<Matcher>,
}

/// One label matcher of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    /// `=`, `!=`, `=~` or `!~`.
    pub op: String,
    pub value: String,
}

/// Keywords that look like identifiers; those followed by a parenthesised label list have it skipped.
const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
];
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Aggregation operators, which may take their `by (...)` clause before the parenthesised body.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The metrics `expr` selects, in order. Function and aggregation names (an identifier before `(`),
/// keywords, label lists, ranges (`[5m]`, `[$__rate_interval]`), numbers and strings are not metrics.
pub fn selectors(expr: &str) -> Result<Vec<Selector>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = string_end(&chars, i)?.1;
        } else if c == '[' {
            i = closing(&chars, i, '[', ']')? + 1;
        } else if c == '$' {
            // A Grafana variable: `$__rate_interval`, `${datasource}`.
            i += 1;
            while i < chars.len() && (ident(chars[i]) || chars[i] == '{' || chars[i] == '}') {
                i += 1;
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                let exponent = matches!(chars[i], 'e' | 'E');
                i += 1;
                if exponent && matches!(chars.get(i), Some('+' | '-')) {
                    i += 1;
                }
            }
        } else if c == '{' {
            return Err(format!("a selector without a metric name at offset {i}"));
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let paren = chars.get(next) == Some(&'(');
            if KEYWORDS.contains(&word.as_str()) {
                if paren && LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                    i = closing(&chars, next, '(', ')')? + 1;
                }
                continue;
            }
            let clause = || {
                let rest: String = chars[next..].iter().collect();
                ["by", "without"].iter().any(|k| {
                    rest.strip_prefix(k)
                        .is_some_and(|r| r.trim_start().starts_with('('))
                })
            };
            if paren || (AGGREGATIONS.contains(&word.as_str()) && clause()) {
                continue;
            }
            let mut selector = Selector {
                name: word,
                matchers: Vec::new(),
            };
            if chars.get(next) == Some(&'{') {
                let (matchers, end) = matchers(&chars, next)?;
                selector.matchers = matchers;
                i = end;
            }
            out.push(selector);
        } else {
            i += 1;
        }
    }
    Ok(out)
}

/// The string starting at `start` (its quote): its unescaped content and the index after it.
fn string_end(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars[start];
    let mut value = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if quote != '`' => {
                value.extend(chars.get(i + 1));
                i += 2;
            }
            c if c == quote => return Ok((value, i + 1)),
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(format!("unterminated string at offset {start}"))
}

/// The index of the bracket closing the one at `open_at`, skipping strings and nested pairs.
fn closing(chars: &[char], open_at: usize, open: char, close: char) -> Result<usize, String> {
    let mut depth = 0;
    let mut i = open_at;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => {
                i = string_end(chars, i)?.1;
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("unclosed {open} at offset {open_at}"))
}

/// The matchers of `{...}` starting at `open_at`, and the index after the `}`.
fn matchers(chars: &[char], open_at: usize) -> Result<(Vec<Matcher>, usize), String> {
    let mut out = Vec::new();
    let mut i = open_at + 1;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && (chars[*i].is_whitespace() || chars[*i] == ',') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        match chars.get(i) {
            Some('}') => return Ok((out, i + 1)),
            Some(&c) if ident_start(c) => {}
            _ => return Err(format!("unreadable label matcher at offset {i}")),
        }
        let start = i;
        while i < chars.len() && ident(chars[i]) {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let op: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op = match op.as_str() {
            "=~" | "!~" | "!=" => op,
            _ if chars.get(i) == Some(&'=') => "=".to_string(),
            _ => return Err(format!("no matcher operator after label {label}")),
        };
        i += op.len();
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if !matches!(chars.get(i), Some('"' | '\'' | '`')) {
            return Err(format!("label {label}: value is not a string"));
        }
        let (value, end) = string_end(chars, i)?;
        i = end;
        out.push(Matcher { label, op, value });
    }
}

/// A sample line of the text exposition format: its series name and labels (the value is ignored).
pub fn sample(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    let chars: Vec<char> = line.chars().collect();
    let end = chars.iter().position(|c| *c == '{' || c.is_whitespace())?;
    let name: String = chars[..end].iter().collect();
    let mut labels = BTreeMap::new();
    if chars[end] == '{' {
        let (found, _) = matchers(&chars, end).ok()?;
        for m in found {
            if m.op != "=" {
                return None;
            }
            labels.insert(m.label, m.value);
        }
    }
    Some((name, labels))
}

/// Identifier-like words of a text (metric names in prose, descriptions, legends).
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !ident(c)).filter(|w| !w.is_empty())
}
