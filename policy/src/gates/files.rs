//! The `files` and `secret_scans` gates, over the file inventory and the content/secret search results.

use std::collections::BTreeSet;

use regex::Regex;

use super::{regex_param, trigger_error, BuildError, Ctx, Fire};
use crate::facts::FileEntry;
use crate::params::Params;

/// A compiled check of the files or secret_scans gate.
#[derive(Debug)]
pub(crate) enum Check {
    ContentRegex {
        regex_name: Option<String>,
    },
    NameMatch {
        /// Compiled, or the rule's evaluation error (anchore compiles it only when the trigger runs).
        regex: Result<Regex, String>,
        pattern: String,
    },
    Attribute(Box<AttributeCheck>),
    SuidOrGuid,
    Secrets {
        content_regex_name: Option<String>,
        filename: Option<(Result<Regex, String>, String)>,
        found: bool,
    },
}

/// The `attribute_match` trigger's parameters.
#[derive(Debug)]
pub(crate) struct AttributeCheck {
    filename: String,
    checksum: Option<(String, bool)>,
    /// The mode as Python's `int(mode, 8)` reads it (or its error, raised only when the file exists, as
    /// anchore's is), and whether it must equal.
    mode: Option<(Result<i64, String>, bool)>,
    skip_missing: bool,
}

impl Check {
    pub(crate) fn build(gate: &str, trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        Ok(match trigger {
            "content_regex_match" => Check::ContentRegex {
                regex_name: p.str("regex_name").map(String::from),
            },
            "name_match" => {
                let pattern = p.str("regex").unwrap_or_default().to_string();
                let Some(regex) = regex_param(gate, trigger, p, "regex") else {
                    return Err(vec![BuildError::at("regex", "missing regex")]);
                };
                Check::NameMatch { regex, pattern }
            }
            "attribute_match" => {
                let equals = |op: &str| p.str(op) != Some("not_equals");
                // anchore tests `if mode and mode_op`: an empty mode is no mode check.
                let mode = p.str("mode").filter(|m| !m.is_empty()).map(|m| {
                    let read = py_int_octal(m).ok_or_else(|| {
                        trigger_error(
                            gate,
                            trigger,
                            p,
                            &format!("invalid literal for int() with base 8: {}", py_repr(m)),
                        )
                    });
                    (read, equals("mode_op"))
                });
                Check::Attribute(Box::new(AttributeCheck {
                    filename: p.str("filename").unwrap_or_default().to_string(),
                    checksum: p
                        .str("checksum")
                        .map(|c| (c.to_ascii_lowercase(), equals("checksum_match"))),
                    mode,
                    skip_missing: p.bool("skip_missing").unwrap_or(true),
                }))
            }
            "suid_or_guid_set" => Check::SuidOrGuid,
            _ => Check::Secrets {
                content_regex_name: p.str("content_regex_name").map(String::from),
                filename: regex_param(gate, trigger, p, "filename_regex")
                    .zip(p.str("filename_regex").map(String::from)),
                found: p.str("match_type") != Some("notfound"),
            },
        })
    }

    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        let facts = ctx.facts;
        let files = || {
            facts
                .files
                .as_deref()
                .ok_or_else(|| "file inventory unavailable for this image".to_string())
        };
        Ok(match self {
            Check::ContentRegex { regex_name } => {
                // No content search configured, no results: anchore's trigger then has nothing to walk
                // and does not fire.
                let Some(matches) = facts.content_matches.as_deref() else {
                    return Ok(Vec::new());
                };
                // One firing per (file, regex), as anchore's per-file result map yields, whatever the
                // number of matching lines; in a stable order.
                let hits: BTreeSet<(&str, Option<&str>, &str)> = matches
                    .iter()
                    .filter(|m| {
                        regex_name.as_ref().is_none_or(|want| {
                            &m.regex == want || m.regex_name.as_ref() == Some(want)
                        })
                    })
                    .map(|m| (m.path.as_str(), m.regex_name.as_deref(), m.regex.as_str()))
                    .collect();
                hits.into_iter()
                    .map(|(path, name, regex)| {
                        let shown = match name {
                            Some(name) => format!("{name}={regex}"),
                            None => regex.to_string(),
                        };
                        Fire::msg(format!(
                            "File content analyzer found regexp match in container: file={path} regexp={shown}"
                        ))
                    })
                    .collect()
            }
            Check::NameMatch { regex, pattern } => {
                let regex = regex.as_ref().map_err(String::clone)?;
                files()?
                .iter()
                .filter(|f| regex.is_match(&f.path))
                .map(|f| {
                    Fire::msg(format!(
                        "Application of regex matched file found in container: file={} regexp={pattern}",
                        f.path
                    ))
                })
                .collect()
            }
            Check::Attribute(check) => check.evaluate(files()?)?.into_iter().collect(),
            Check::SuidOrGuid => files()?
                .iter()
                .filter(|f| f.suid || f.sgid || f.mode & 0o6000 != 0)
                .map(|f| {
                    Fire::msg(format!(
                        "SUID or SGID found set on file {}. Mode: {}",
                        f.path,
                        py_oct(mode_of(f))
                    ))
                })
                .collect(),
            Check::Secrets {
                content_regex_name,
                filename,
                found,
            } => {
                let secrets = facts
                    .secrets
                    .as_deref()
                    .ok_or("secret search results unavailable for this image")?;
                let filename = match filename {
                    Some((Err(e), _)) => return Err(e.clone()),
                    Some((Ok(re), pattern)) => Some((re, pattern)),
                    None => None,
                };
                // One firing per (file, regex), as anchore's per-file result map yields, in a stable order.
                let hits: BTreeSet<(&str, &str)> = secrets
                    .iter()
                    .filter(|s| filename.as_ref().is_none_or(|(re, _)| re.is_match(&s.path)))
                    .filter(|s| {
                        content_regex_name
                            .as_ref()
                            .is_none_or(|want| &s.regex_name == want)
                    })
                    .map(|s| (s.path.as_str(), s.regex_name.as_str()))
                    .collect();
                if *found {
                    hits.into_iter()
                        .map(|(path, name)| {
                            Fire::msg(format!(
                                "Secret content search analyzer found regexp match in container: file={path} regexp={name}"
                            ))
                        })
                        .collect()
                } else if hits.is_empty() {
                    vec![Fire::msg(format!(
                        "Secret content search analyzer did not find regexp match in container: filename_regex={} content_regex_name={}",
                        filename.as_ref().map(|(_, p)| p.as_str()).unwrap_or("*"),
                        content_regex_name.as_deref().unwrap_or("all"),
                    ))]
                } else {
                    Vec::new()
                }
            }
        })
    }
}

/// The file's mode with the suid/sgid flags folded in, in case the caller set only the flags.
fn mode_of(f: &FileEntry) -> u32 {
    f.mode | if f.suid { 0o4000 } else { 0 } | if f.sgid { 0o2000 } else { 0 }
}

/// Python's `oct()`.
fn py_oct(mode: impl Into<i64>) -> String {
    let mode: i64 = mode.into();
    if mode < 0 {
        format!("-0o{:o}", mode.unsigned_abs())
    } else {
        format!("0o{mode:o}")
    }
}

impl AttributeCheck {
    fn evaluate(&self, files: &[FileEntry]) -> Result<Option<Fire>, String> {
        let mut parts = Vec::new();
        match files.iter().find(|f| f.path == self.filename) {
            Some(file) => {
                if let Some((want, equals)) = &self.checksum {
                    let have = file
                        .sha256
                        .as_deref()
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    if (have == *want) != *equals {
                        return Ok(None);
                    }
                    let op = if *equals { "equals" } else { "not_equals" };
                    parts.push(format!("checksum={have} op={op} specified_checksum={want}"));
                }
                if let Some((want, equals)) = &self.mode {
                    let want = *want.as_ref().map_err(String::clone)?;
                    // anchore compares `oct(S_IMODE(file mode))` with `oct(int(mode, 8))`: the given mode
                    // is not masked, so one with file-type bits (`0o104111`) never equals.
                    let have = i64::from(mode_of(file) & 0o7777);
                    if (have == want) != *equals {
                        return Ok(None);
                    }
                    let op = if *equals { "equals" } else { "not_equals" };
                    parts.push(format!(
                        "mode={} op={op} specified_mode={}",
                        py_oct(have),
                        py_oct(want)
                    ));
                }
            }
            None if self.skip_missing => return Ok(None),
            None => parts.push("skip_missing=False".to_string()),
        }
        if parts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Fire::msg(format!(
            "filename={} and {}",
            self.filename,
            parts.join(" and ")
        ))))
    }
}

/// Python's `int(text, 8)`: surrounding whitespace, an optional sign (a negative mode can never equal, so
/// never equals a file's mode), an optional `0o` prefix, octal digits with single `_` between them.
/// anchore writes file modes this way, so `0o104111` and `0755` both read.
pub(crate) fn py_int_octal(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let t = t
        .strip_prefix("0o")
        .or_else(|| t.strip_prefix("0O"))
        .map(|rest| rest.strip_prefix('_').unwrap_or(rest))
        .unwrap_or(t);
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    let mut value: i64 = 0;
    for b in t.bytes() {
        match b {
            b'_' => continue,
            b'0'..=b'7' => value = value.checked_mul(8)?.checked_add(i64::from(b - b'0'))?,
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

/// Python's `repr()` of a short string, for anchore's error texts.
fn py_repr(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}
