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
    regexes: Vec<(&'static str, Regex)>,
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
            if out.values.iter().any(|(n, _)| *n == ps.name) {
                problems.add(
                    format!("{here}.name"),
                    format!("parameter `{}` given twice", ps.name),
                );
                continue;
            }
            match value_problem(ps, &param.value) {
                Some(msg) => problems.add(format!("{here}.value"), msg),
                None => {
                    if matches!(ps.kind, Kind::Regex) {
                        if let Ok(re) = match_regex(&param.value) {
                            out.regexes.push((ps.name, re));
                        }
                    }
                    out.values.push((ps.name, param.value.clone()));
                }
            }
        }
        for ps in spec.params.iter().filter(|p| p.required) {
            let given = params.iter().any(|p| p.name == ps.name);
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

    pub(crate) fn int(&self, name: &str) -> Option<i64> {
        self.str(name).and_then(|v| v.trim().parse().ok())
    }

    pub(crate) fn float(&self, name: &str) -> Option<f64> {
        self.str(name).and_then(|v| v.trim().parse().ok())
    }

    pub(crate) fn list(&self, name: &str) -> Vec<String> {
        self.str(name).map(split_list).unwrap_or_default()
    }

    pub(crate) fn regex(&self, name: &str) -> Option<Regex> {
        self.regexes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.clone())
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
        Kind::Int => (value.trim().parse::<u32>().is_err())
            .then(|| format!("`{value}` is not a non-negative integer")),
        Kind::Float => match value.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => None,
            _ => Some(format!("`{value}` is not a number")),
        },
        Kind::Bool => (!value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false"))
            .then(|| format!("`{value}` is not true or false")),
        Kind::Regex => match_regex(value)
            .err()
            .map(|e| format!("invalid regex: {e}")),
        Kind::List => split_list(value)
            .is_empty()
            .then(|| "empty list".to_string()),
        Kind::Ports => {
            let ports = split_list(value);
            if ports.is_empty() {
                Some("empty port list".into())
            } else {
                ports
                    .iter()
                    .find(|p| p.parse::<u16>().is_err())
                    .map(|p| format!("`{p}` is not a port number"))
            }
        }
    }
}
