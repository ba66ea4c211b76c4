//! The `passwd_file`, `retrieved_files` and `malware` gates (anchore-engine's `gates/passwd_file.py`,
//! `gates/retrieved_files.py` and `gates/malware.py`), over the files the analyzer retrieved and its
//! malware scan. Messages, instance ids and edge cases are anchore's, quirks included (noted where).

use std::sync::Arc;

use md5::{Digest, Md5};
use regex::Regex;

use super::{regex_param, trigger_error, BuildError, Ctx, Fire};
use crate::params::Params;

/// A compiled check of one of the three gates.
#[derive(Debug)]
pub(crate) enum Check {
    /// `passwd_file.content_not_available`.
    PasswdMissing,
    /// `passwd_file.blacklist_*`: the values to look for, and where in an entry.
    Passwd {
        field: Field,
        values: Vec<String>,
        /// Errors name the rule as anchore's TriggerEvaluationError does.
        error_context: String,
    },
    /// `retrieved_files.content_not_available`.
    FileMissing { path: String },
    /// `retrieved_files.content_regex`.
    ContentRegex {
        path: String,
        pattern: String,
        regex: Result<Regex, String>,
        match_wanted: bool,
        error_context: String,
    },
    /// `malware.scans`.
    Scans,
    /// `malware.scan_not_run`.
    ScanNotRun,
}

/// Which part of a passwd entry a blacklist reads (anchore's `pentry_index`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Field {
    User,
    /// Index into the fields after the name: 1 uid, 2 gid, 5 shell.
    At(usize, &'static str),
    Entry,
}

impl Check {
    pub(crate) fn build(gate: &str, trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        let context = trigger_error(gate, trigger, p, "");
        let passwd = |field: Field, values: Vec<String>| Check::Passwd {
            field,
            values,
            error_context: context.clone(),
        };
        Ok(match (gate, trigger) {
            ("passwd_file", "content_not_available") => Check::PasswdMissing,
            ("passwd_file", "blacklist_usernames") => passwd(Field::User, p.list("user_names")),
            ("passwd_file", "blacklist_userids") => {
                passwd(Field::At(1, "uid"), numbers(&p.list("user_ids")))
            }
            ("passwd_file", "blacklist_groupids") => {
                passwd(Field::At(2, "gid"), numbers(&p.list("group_ids")))
            }
            ("passwd_file", "blacklist_shells") => passwd(Field::At(5, "shell"), p.list("shells")),
            ("passwd_file", _) => passwd(
                Field::Entry,
                vec![p.str("entry").unwrap_or_default().trim().to_string()],
            ),
            ("retrieved_files", "content_not_available") => Check::FileMissing {
                path: p.str("path").unwrap_or_default().to_string(),
            },
            ("retrieved_files", _) => {
                let Some(regex) = regex_param(gate, trigger, p, "regex") else {
                    return Err(vec![BuildError::at("regex", "missing regex")]);
                };
                Check::ContentRegex {
                    path: p.str("path").unwrap_or_default().to_string(),
                    pattern: p.str("regex").unwrap_or_default().to_string(),
                    regex,
                    match_wanted: p.str("check") == Some("match"),
                    error_context: context,
                }
            }
            (_, "scans") => Check::Scans,
            _ => Check::ScanNotRun,
        })
    }

    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        let facts = ctx.facts;
        Ok(match self {
            // anchore: `if not context.data.get('passwd_entries')` — no file, or one without lines.
            Check::PasswdMissing => match facts.passwd_entries() {
                Some(Ok(entries)) if !entries.is_empty() => Vec::new(),
                Some(Err(e)) => return Err(e),
                _ => vec![Fire::msg(
                    "Cannot locate /etc/passwd in image stored files archive: check analyzer settings.",
                )],
            },
            Check::Passwd {
                field,
                values,
                error_context,
            } => {
                let entries = match facts.passwd_entries() {
                    Some(Ok(entries)) if !entries.is_empty() => entries,
                    Some(Err(e)) => return Err(e),
                    _ => return Ok(Vec::new()),
                };
                let mut fires = Vec::new();
                for (user, fields) in &entries {
                    let whole = || {
                        let mut line = user.clone();
                        for f in fields {
                            line.push(':');
                            line.push_str(f);
                        }
                        line
                    };
                    let candidate = match field {
                        Field::User => user.clone(),
                        // A short line raises IndexError in anchore, failing the rule.
                        Field::At(i, _) => match fields.get(*i) {
                            Some(v) => v.clone(),
                            None => return Err(format!("{error_context}list index out of range")),
                        },
                        Field::Entry => whole(),
                    };
                    if values.contains(&candidate) {
                        let label = match field {
                            Field::User => "user",
                            Field::At(_, label) => label,
                            Field::Entry => "pentry",
                        };
                        fires.push(Fire::msg(format!(
                            "Blacklisted {label} '{candidate}' found in image's /etc/passwd: pentry={}",
                            whole()
                        )));
                    }
                }
                fires
            }
            Check::FileMissing { path } => {
                const MSG: &str = "Cannot locate file in the image analysis";
                // anchore fires once when nothing at all was retrieved and once more because the file is
                // not among them: two rows then, as in anchore.
                let mut fires = Vec::new();
                if facts.retrieved_files.is_empty() {
                    fires.push(Fire::msg(MSG));
                }
                if facts.retrieved(path).is_none() {
                    fires.push(Fire::msg(MSG));
                }
                fires
            }
            Check::ContentRegex {
                path,
                pattern,
                regex,
                match_wanted,
                error_context,
            } => {
                if facts.retrieved_files.is_empty() {
                    return Ok(Vec::new());
                }
                // anchore compiles the regex before looking for the file.
                let regex = regex.clone()?;
                let Some(file) = facts.retrieved(path) else {
                    return Ok(Vec::new());
                };
                let Ok(text) = std::str::from_utf8(&file.content) else {
                    return Err(format!(
                        "{error_context}Cannot execute regex check due to error processing file content"
                    ));
                };
                // Python's `str.split()` (whitespace runs) and `re.match` on each token.
                let found = text.split_whitespace().any(|t| regex.is_match(t));
                if found != *match_wanted {
                    return Ok(Vec::new());
                }
                let check = if *match_wanted { "match" } else { "no_match" };
                let mut fire = Fire::msg(format!(
                    "Content regex '{pattern}' check '{check}' found in retrieved file '{path}'"
                ));
                fire.instance_id = Some(Arc::from(format!("file://{path}")));
                fire.rule_scoped = true;
                vec![fire]
            }
            Check::Scans => {
                let Some(scan) = &facts.malware else {
                    return Ok(Vec::new());
                };
                scan.findings
                    .iter()
                    .filter(|f| !f.path.is_empty() && !f.signature.is_empty())
                    .map(|f| {
                        let mut fire = Fire::msg(format!(
                            "Malware scan finding: scanner={} file={} signature={}",
                            scan.scanner, f.path, f.signature
                        ));
                        fire.instance_id = Some(Arc::from(format!(
                            "{}+{}+{}",
                            scan.scanner,
                            f.signature,
                            hex::encode(Md5::digest(f.path.as_bytes()))
                        )));
                        fire
                    })
                    .collect()
            }
            Check::ScanNotRun => match &facts.malware {
                Some(_) => Vec::new(),
                None => vec![Fire::msg("No malware scans found for image")],
            },
        })
    }
}

/// anchore's CommaDelimitedNumberListParameter gives ints, which the triggers compare as `str(int)`:
/// `007` looks for `7`.
fn numbers(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|v| {
            let t = v.trim().trim_start_matches('0');
            if t.is_empty() {
                "0".to_string()
            } else {
                t.to_string()
            }
        })
        .collect()
}
