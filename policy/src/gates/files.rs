//! The `files` and `secret_scans` gates, over the file inventory and the content/secret search results.

use std::collections::BTreeSet;

use regex::Regex;

use super::{BuildError, Ctx, Fire};
use crate::facts::FileEntry;
use crate::params::Params;

/// A compiled check of the files or secret_scans gate.
#[derive(Debug)]
pub(crate) enum Check {
    ContentRegex {
        regex_name: Option<String>,
    },
    NameMatch {
        regex: Regex,
        pattern: String,
    },
    Attribute(Box<AttributeCheck>),
    SuidOrGuid,
    Secrets {
        content_regex_name: Option<String>,
        filename: Option<(Regex, String)>,
        found: bool,
    },
}

/// The `attribute_match` trigger's parameters.
#[derive(Debug)]
pub(crate) struct AttributeCheck {
    filename: String,
    checksum: Option<(String, bool)>,
    mode: Option<(u32, bool)>,
    skip_missing: bool,
}

impl Check {
    pub(crate) fn build(trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        Ok(match trigger {
            "content_regex_match" => Check::ContentRegex {
                regex_name: p.str("regex_name").map(String::from),
            },
            "name_match" => {
                let pattern = p.str("regex").unwrap_or_default().to_string();
                let Some(regex) = p.regex("regex") else {
                    return Err(vec![BuildError::at("regex", "invalid regex")]);
                };
                Check::NameMatch { regex, pattern }
            }
            "attribute_match" => {
                let equals = |op: &str| p.str(op) != Some("not_equals");
                let mode = match p.str("mode") {
                    None => None,
                    Some(m) => match u32::from_str_radix(m.trim(), 8) {
                        Ok(bits) if bits <= 0o7777 => Some((bits, equals("mode_op"))),
                        _ => {
                            return Err(vec![BuildError::at(
                                "mode",
                                format!("`{m}` is not an octal file mode"),
                            )])
                        }
                    },
                };
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
                filename: p
                    .regex("filename_regex")
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
                let matches = facts.content_matches.as_deref().ok_or("content search results unavailable for this image")?;
                // One firing per (file, regex), as anchore's per-file result map yields, whatever the
                // number of matching lines; in a stable order.
                let hits: BTreeSet<(&str, Option<&str>, &str)> = matches
                    .iter()
                    .filter(|m| {
                        regex_name
                            .as_ref()
                            .is_none_or(|want| &m.regex == want || m.regex_name.as_ref() == Some(want))
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
            Check::NameMatch { regex, pattern } => files()?
                .iter()
                .filter(|f| regex.is_match(&f.path))
                .map(|f| {
                    Fire::msg(format!(
                        "Application of regex matched file found in container: file={} regexp={pattern}",
                        f.path
                    ))
                })
                .collect(),
            Check::Attribute(check) => check.evaluate(files()?).into_iter().collect(),
            Check::SuidOrGuid => files()?
                .iter()
                .filter(|f| f.suid || f.sgid || f.mode & 0o6000 != 0)
                .map(|f| Fire::msg(format!("SUID or SGID found set on file {}. Mode: {}", f.path, py_oct(mode_of(f)))))
                .collect(),
            Check::Secrets { content_regex_name, filename, found } => {
                let secrets = facts.secrets.as_deref().ok_or("secret search results unavailable for this image")?;
                // One firing per (file, regex), as anchore's per-file result map yields, in a stable order.
                let hits: BTreeSet<(&str, &str)> = secrets
                    .iter()
                    .filter(|s| filename.as_ref().is_none_or(|(re, _)| re.is_match(&s.path)))
                    .filter(|s| content_regex_name.as_ref().is_none_or(|want| &s.regex_name == want))
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
fn py_oct(mode: u32) -> String {
    format!("0o{mode:o}")
}

impl AttributeCheck {
    fn evaluate(&self, files: &[FileEntry]) -> Option<Fire> {
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
                        return None;
                    }
                    let op = if *equals { "equals" } else { "not_equals" };
                    parts.push(format!("checksum={have} op={op} specified_checksum={want}"));
                }
                if let Some((want, equals)) = self.mode {
                    let have = mode_of(file) & 0o7777;
                    if (have == want) != equals {
                        return None;
                    }
                    let op = if equals { "equals" } else { "not_equals" };
                    parts.push(format!(
                        "mode={} op={op} specified_mode={}",
                        py_oct(have),
                        py_oct(want)
                    ));
                }
            }
            None if self.skip_missing => return None,
            None => parts.push("skip_missing=False".to_string()),
        }
        if parts.is_empty() {
            return None;
        }
        Some(Fire::msg(format!(
            "filename={} and {}",
            self.filename,
            parts.join(" and ")
        )))
    }
}
