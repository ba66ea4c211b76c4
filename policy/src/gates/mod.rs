//! The gates: each turns a rule's validated parameters into a check and evaluates it over image facts.

use jiff::Timestamp;

use crate::facts::ImageFacts;
use crate::params::Params;

pub(crate) mod dockerfile;
pub(crate) mod files;
pub(crate) mod image;
pub(crate) mod packages;
pub(crate) mod vulnerabilities;

/// One firing of a trigger.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fire {
    /// Explicit instance id (e.g. `CVE-1+pkg`); `None` takes anchore's MD5 of gate, trigger and message.
    pub instance_id: Option<String>,
    /// Check_Output text.
    pub message: String,
    /// Other ids the same finding goes by (a vulnerability's aliases), also tried against whitelists.
    pub also: Vec<String>,
}

impl Fire {
    pub(crate) fn msg(message: impl Into<String>) -> Fire {
        Fire {
            instance_id: None,
            message: message.into(),
            also: Vec::new(),
        }
    }
}

/// What evaluating a check needs besides the facts.
pub(crate) struct Ctx<'a> {
    pub facts: &'a ImageFacts,
    pub now: Timestamp,
    pub dockerfile: &'a dockerfile::Prepared,
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
            "files" | "secret_scans" => files::Check::build(trigger, params).map(Check::Files),
            _ => image::Check::build(trigger, params).map(Check::Image),
        }
    }

    /// Evaluates the check; `Err` is a rule that could not be evaluated (counted as WARN).
    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        match self {
            Check::Vulnerabilities(c) => c.evaluate(ctx),
            Check::Dockerfile(c) => Ok(c.evaluate(ctx)),
            Check::Packages(c) => c.evaluate(ctx),
            Check::Files(c) => c.evaluate(ctx),
            Check::Image(c) => c.evaluate(ctx),
        }
    }
}

/// Python's `str(list)` of strings, which anchore's messages embed.
pub(crate) fn py_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    format!("[{}]", quoted.join(", "))
}
