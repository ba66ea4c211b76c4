//! Trigger parameter values: checked against the catalog at load, read typed by the gates.

use regex::{Regex, RegexBuilder};

use crate::catalog::{Kind, ParamSpec, TriggerSpec};
use crate::load::Problems;
use crate::model::Param;

/// Compiled size cap per regex: the `regex` crate never backtracks, and this bounds its memory too.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles `pattern` with Python `re.match` semantics (anchored at the start), as anchore applies them.
pub(crate) fn match_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// The validated parameters of one rule.
#[derive(Debug, Default)]
pub(crate) struct Params {
    values: Vec<(&'static str, String)>,
    /// Each regex parameter compiled, or why it does not compile: anchore keeps a regex as a plain string
    /// until its trigger runs, so a bad one is the rule's evaluation error, never a validation problem.
    regexes: Vec<(&'static str, Result<Regex, String>)>,
}

impl Params {
    /// Checks `params` against `spec`, recording every problem under `path` (the rule's path).
    pub(crate) fn check(
        spec: &TriggerSpec,
        params: &[Param],
        path: &str,
        problems: &mut Problems,
    ) -> Params {
        let mut out = Params::default();
        for (i, param) in params.iter().enumerate() {
            let here = format!("{path}.params[{i}]");
            // anchore lower-cases parameter names before looking them up (its PolicyRule).
            let Some(ps) = spec.param(&param.name) else {
                let known: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
                problems.add(
                    format!("{here}.name"),
                    format!(
                        "unknown parameter `{}` for trigger `{}`; known: {}",
                        param.name,
                        spec.name,
                        shown(&known)
                    ),
                );
                continue;
            };
            // anchore reads the parameters into a dict: a name given twice is not refused, the last wins.
            out.values.retain(|(n, _)| *n != ps.name);
            out.regexes.retain(|(n, _)| *n != ps.name);
            match value_problem(ps, &param.value) {
                Some(msg) => problems.add(format!("{here}.value"), msg),
                None => {
                    if matches!(ps.kind, Kind::Regex) {
                        out.regexes.push((
                            ps.name,
                            match_regex(&param.value).map_err(|e| e.to_string()),
                        ));
                    }
                    out.values.push((ps.name, param.value.clone()));
                }
            }
        }
        for ps in spec.params.iter().filter(|p| p.required) {
            let given = params.iter().any(|p| p.name.eq_ignore_ascii_case(ps.name));
            if !given {
                problems.add(
                    format!("{path}.params"),
                    format!("missing required parameter `{}`", ps.name),
                );
            }
        }
        out
    }

    /// Raw string value.
    pub(crate) fn str(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.str(name).map(|v| v.eq_ignore_ascii_case("true"))
    }

    /// anchore's integers are any run of digits (no range check): one too large for `i64` reads as
    /// `i64::MAX`, which is what any comparison with it means.
    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.str(name).map(|v| v.trim().parse().unwrap_or(i64::MAX))
    }

    pub(crate) fn float(&self, name: &str) -> Option<f64> {
        self.str(name).and_then(|v| v.trim().parse().ok())
    }

    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.str(name).map(split_list).unwrap_or_default()
    }

    /// The regex parameter `name`, compiled, or the compiler's complaint (see [`Params::regexes`]).
    pub(crate) fn regex(&self, name: &str) -> Option<Result<Regex, String>> {
        self.regexes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.clone())
    }

    /// The given values in catalog order, as anchore's trigger error messages print them.
    pub(crate) fn given(&self) -> &[(&'static str, String)] {
        &self.values
    }
}

/// anchore's comma-delimited lists: split on commas, trim, drop empties.
pub(crate) fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn shown(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn value_problem(spec: &ParamSpec, value: &str) -> Option<String> {
    match spec.kind {
        Kind::Str => None,
        Kind::Enum(allowed) => (!allowed.contains(&value))
            .then(|| format!("`{value}` is not one of {}", allowed.join(", "))),
        // anchore's IntegerValidator: `^\s*\d+\s*$`, no range.
        Kind::Int => {
            (!digits(value.trim())).then(|| format!("`{value}` is not a non-negative integer"))
        }
        Kind::Float => match value.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => None,
            _ => Some(format!("`{value}` is not a number")),
        },
        Kind::Bool => (!value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false"))
            .then(|| format!("`{value}` is not true or false")),
        // A string until evaluated (anchore's TypeValidator("string")): see `Params::regexes`.
        Kind::Regex => None,
        Kind::List => split_list(value)
            .is_empty()
            .then(|| "empty list".to_string()),
        Kind::Ports => {
            let ports = split_list(value);
            if ports.is_empty() {
                Some("empty port list".into())
            } else {
                // anchore's CommaDelimitedNumberListValidator: digits, no range check.
                ports
                    .iter()
                    .find(|p| !digits(p))
                    .map(|p| format!("`{p}` is not a port number"))
            }
        }
        // anchore's CommaDelimitedNumberListValidator.
        Kind::Numbers => {
            let numbers = split_list(value);
            if numbers.is_empty() {
                Some("empty list".into())
            } else {
                numbers
                    .iter()
                    .find(|p| !digits(p))
                    .map(|p| format!("`{p}` is not a non-negative integer"))
            }
        }
    }
}

/// One or more ASCII digits.
fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}
