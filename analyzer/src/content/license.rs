//! License strings to SPDX: an expression that parses (leniently: `GPL-2+`, `MIT/Apache-2.0`, lower-case
//! operators) is written in canonical SPDX form; anything else is kept as the package wrote it.
//!
//! Imprecise names are not guessed at: the `spdx` crate's table maps `BSD` to `BSD-2-Clause`, `GPL` to
//! `GPL-2.0` and `gnu gpl v2` to `GPL-3.0`, which says more than the package did. Syft keeps those raw too.

/// The spdx crate's lax mode minus its imprecise-name guesses.
const LENIENT: spdx::ParseMode = spdx::ParseMode {
    allow_lower_case_operators: true,
    allow_slash_as_or_operator: true,
    allow_imprecise_license_names: false,
    allow_postfix_plus_on_gpl: true,
};

/// The SPDX form of a declared license, or the text itself when it is not an SPDX expression.
pub fn normalize(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    if spdx::Expression::parse_mode(text, spdx::ParseMode::STRICT).is_ok() {
        return text.to_string();
    }
    if let Some(id) = debian_short_name(text) {
        return id;
    }
    match spdx::Expression::parse_mode(text, LENIENT) {
        Ok(expr) => canonical(&expr).unwrap_or_else(|| text.to_string()),
        Err(_) => text.to_string(),
    }
}

/// Debian's short names (`GPL-2+`, `LGPL-2.1`, `Expat`) that SPDX spells differently.
fn debian_short_name(text: &str) -> Option<String> {
    let (base, plus) = match text.strip_suffix('+') {
        Some(b) => (b, true),
        None => (text, false),
    };
    let family = ["GPL", "LGPL", "AGPL", "GFDL"];
    for f in family {
        if let Some(v) = base.strip_prefix(f).and_then(|r| r.strip_prefix('-')) {
            let v = if v.contains('.') {
                v.to_string()
            } else {
                format!("{v}.0")
            };
            let suffix = if plus { "-or-later" } else { "-only" };
            let id = format!("{f}-{v}{suffix}");
            return spdx::license_id(&id).map(|l| l.name.to_string());
        }
    }
    match base {
        "Expat" => Some("MIT".into()),
        "public-domain" | "PD" => None,
        _ => None,
    }
}

/// Writes a leniently parsed expression with SPDX ids and operators; `None` when the result is still not
/// a strict SPDX expression (then the raw text is kept).
fn canonical(expr: &spdx::Expression) -> Option<String> {
    let text = expr.as_ref();
    let mut out = String::with_capacity(text.len() + 8);
    let mut at = 0usize;
    for req in expr.requirements() {
        let (start, end) = (req.span.start as usize, req.span.end as usize);
        out.push_str(&operators(text.get(at..start)?));
        out.push_str(&req.req.to_string());
        at = end;
    }
    out.push_str(&operators(text.get(at..)?));
    let out = out
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")");
    spdx::Expression::parse_mode(&out, spdx::ParseMode::STRICT)
        .is_ok()
        .then_some(out)
}

/// The text between two license ids with lax operators made strict (`/` and lower case).
fn operators(between: &str) -> String {
    let spaced = between
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let words: Vec<&str> = spaced
        .split_whitespace()
        .map(|w| match w {
            "and" => "AND",
            "or" => "OR",
            "with" => "WITH",
            other => other,
        })
        .collect();
    if words.is_empty() {
        return String::new();
    }
    format!(" {} ", words.join(" "))
}
