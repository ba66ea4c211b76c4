//! The gates: each turns a rule's validated parameters into a check and evaluates it over image facts.

use std::cell::RefCell;
use std::sync::Arc;

use jiff::Timestamp;

use crate::facts::ImageFacts;
use crate::params::Params;

pub(crate) mod dockerfile;
pub(crate) mod feeds;
pub(crate) mod files;
pub(crate) mod image;
pub(crate) mod packages;
pub(crate) mod retrieved;
pub(crate) mod vulnerabilities;

/// One firing of a trigger.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fire {
    /// Explicit instance id (e.g. `CVE-1+pkg`); `None` takes anchore's MD5 of gate, trigger and message.
    pub instance_id: Option<Arc<str>>,
    /// Check_Output text.
    pub message: Arc<str>,
    /// Other ids the same finding goes by (a vulnerability's aliases), also tried against whitelists.
    pub also: Arc<[String]>,
    /// The vulnerability match this fire is about: many rules fire on the same match, and its trigger id,
    /// aliases and so its whitelist answer are the same for all of them, so the answer is kept by index.
    pub vuln: Option<usize>,
    /// The instance id is prefixed with the rule's id (`RULE+...`, `None+...` for a rule without one), as
    /// anchore's `retrieved_files.content_regex` builds it.
    pub rule_scoped: bool,
}

impl Fire {
    pub(crate) fn msg(message: impl Into<String>) -> Fire {
        Fire {
            instance_id: None,
            message: Arc::from(message.into()),
            also: Arc::from(Vec::new()),
            vuln: None,
            rule_scoped: false,
        }
    }
}

/// What evaluating a check needs besides the facts.
pub(crate) struct Ctx<'a> {
    pub facts: &'a ImageFacts,
    pub now: Timestamp,
    pub dockerfile: &'a dockerfile::Prepared,
    /// Per-evaluation memo of vulnerability fires (see [`VulnMemo`]).
    pub vulns: &'a VulnMemo,
}

/// What the `vulnerabilities.package` trigger derived per match during one evaluation. A large bundle has
/// many package rules firing on the same matches; the message differs between rules only by which score
/// and time clauses the rule has (its `shape`), so each (match, shape) message is built once.
pub(crate) struct VulnMemo {
    /// Match indexes ordered by trigger id, so the rows of a rule come out (nearly) sorted.
    pub order: Vec<usize>,
    /// Per match: the fires built so far, by shape.
    pub fires: RefCell<Vec<Vec<(u16, Fire)>>>,
}

impl VulnMemo {
    pub(crate) fn new(facts: &ImageFacts) -> VulnMemo {
        let vulns = facts.vulnerabilities.as_deref().unwrap_or_default();
        let mut order: Vec<usize> = (0..vulns.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&vulns[a], &vulns[b]);
            (&a.id, &a.package_name).cmp(&(&b.id, &b.package_name))
        });
        VulnMemo {
            order,
            fires: RefCell::new(vec![Vec::new(); vulns.len()]),
        }
    }
}

/// A rule parameter problem found while building a check: which parameter (if one) and what.
#[derive(Debug)]
pub(crate) struct BuildError {
    pub param: Option<&'static str>,
    pub message: String,
}

impl BuildError {
    pub(crate) fn at(param: &'static str, message: impl Into<String>) -> BuildError {
        BuildError {
            param: Some(param),
            message: message.into(),
        }
    }
}

/// A compiled check of one rule.
#[derive(Debug)]
pub(crate) enum Check {
    Vulnerabilities(vulnerabilities::Check),
    Dockerfile(dockerfile::Check),
    Packages(packages::Check),
    Files(files::Check),
    Image(image::Check),
    Feeds(feeds::Check),
    Retrieved(retrieved::Check),
}

impl Check {
    /// Builds the check of `gate`/`trigger` (both already known to the catalog).
    pub(crate) fn build(
        gate: &str,
        trigger: &str,
        params: &Params,
    ) -> Result<Check, Vec<BuildError>> {
        match gate {
            "vulnerabilities" => {
                vulnerabilities::Check::build(trigger, params).map(Check::Vulnerabilities)
            }
            "dockerfile" => dockerfile::Check::build(trigger, params).map(Check::Dockerfile),
            "packages" => packages::Check::build(trigger, params).map(Check::Packages),
            "files" | "secret_scans" => {
                files::Check::build(gate, trigger, params).map(Check::Files)
            }
            "npms" | "ruby_gems" => Ok(Check::Feeds(feeds::Check::build(gate, trigger, params))),
            "passwd_file" | "retrieved_files" | "malware" => {
                retrieved::Check::build(gate, trigger, params).map(Check::Retrieved)
            }
            _ => image::Check::build(trigger, params).map(Check::Image),
        }
    }

    /// Evaluates the check; `Err` is a rule that could not be evaluated (counted as WARN).
    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        match self {
            Check::Vulnerabilities(c) => c.evaluate(ctx),
            Check::Dockerfile(c) => c.evaluate(ctx),
            Check::Packages(c) => c.evaluate(ctx),
            Check::Files(c) => c.evaluate(ctx),
            Check::Image(c) => c.evaluate(ctx),
            Check::Feeds(c) => Ok(c.evaluate(ctx)),
            Check::Retrieved(c) => c.evaluate(ctx),
        }
    }
}

/// Python's `str(list)` of strings, which anchore's messages embed.
pub(crate) fn py_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// anchore's TriggerEvaluationError text for a rule whose trigger failed while running (e.g. a regex
/// parameter that does not compile: anchore keeps it a string until then): the gate, the trigger, the
/// parameters as Python prints a dict, and the cause.
pub(crate) fn trigger_error(gate: &str, trigger: &str, params: &Params, cause: &str) -> String {
    let shown: Vec<String> = params
        .given()
        .iter()
        .map(|(name, value)| format!("{}: {}", py_str(name), py_str(value)))
        .collect();
    format!(
        "Trigger evaluation failed for gate {gate} and trigger {trigger}, with parameters: ({{{}}}) due to: {cause}",
        shown.join(", ")
    )
}

/// Python's `repr()` of a string (the quoting its dicts print with).
fn py_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A regex parameter as the check keeps it: compiled, or anchore's evaluation error for the rule.
pub(crate) fn regex_param(
    gate: &str,
    trigger: &str,
    params: &Params,
    name: &str,
) -> Option<Result<regex::Regex, String>> {
    params
        .regex(name)
        .map(|r| r.map_err(|e| trigger_error(gate, trigger, params, &e)))
}
