//! The `metadata`, `licenses` and `always` gates: checks over the image record and package licenses.

use std::cmp::Ordering;

use regex::Regex;

use super::{BuildError, Ctx, Fire};
use crate::facts::ImageInfo;
use crate::params::{match_regex, split_list, Params};

/// A compiled check of the metadata, licenses or always gate.
#[derive(Debug)]
pub(crate) enum Check {
    Attribute {
        attribute: &'static str,
        check: &'static str,
        shown: String,
        op: Op,
    },
    LicenseExact(Vec<String>),
    LicensePartial(Vec<String>),
    Always,
    /// An `attribute` rule anchore accepts but cannot run as written: with no value for a check that
    /// needs one its trigger returns without firing (`None`); a value that does not read as the
    /// attribute's type, or a bad regex, raises when the trigger runs — the rule's evaluation error.
    Deferred(Option<String>),
}

/// The right-hand side of an attribute check, parsed for the attribute's type.
#[derive(Debug)]
pub(crate) enum Op {
    Exists(bool),
    Cmp(&'static str, Val),
    Like(Regex, bool),
    In(Vec<Val>, bool),
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub(crate) enum Val {
    Num(u64),
    Str(String),
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Num(n) => write!(f, "{n}"),
            Val::Str(s) => f.write_str(s),
        }
    }
}

/// anchore's size strings: digits with an optional b/kb/mb/gb/tb unit (any case, 1024-based).
pub(crate) fn parse_size(value: &str) -> Option<u64> {
    let v = value.trim().to_ascii_lowercase();
    let digits = v.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = v.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

fn numeric(attribute: &str) -> bool {
    matches!(attribute, "size" | "layer_count")
}

fn parse_val(attribute: &str, value: &str) -> Option<Val> {
    match attribute {
        "size" => parse_size(value).map(Val::Num),
        "layer_count" => value.trim().parse().ok().map(Val::Num),
        _ => Some(Val::Str(value.to_string())),
    }
}

impl Check {
    pub(crate) fn build(trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        // anchore's attribute parameters are plain strings (TypeValidator("string")), read when the trigger
        // runs: what fathom reads at build time becomes the rule's outcome at evaluation.
        match Check::compile(trigger, p) {
            Ok(check) => Ok(check),
            Err(errors) if trigger == "attribute" => Ok(Check::Deferred(
                errors
                    .into_iter()
                    .find(|e| e.param.is_some())
                    .map(|e| super::trigger_error("metadata", "attribute", p, &e.message)),
            )),
            Err(errors) => Err(errors),
        }
    }

    fn compile(trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        Ok(match trigger {
            "attribute" => {
                let find = |list: &'static [&'static str], name| {
                    list.iter().copied().find(|a| Some(*a) == p.str(name))
                };
                let attribute = find(crate::catalog::ATTRIBUTES, "attribute").unwrap_or("size");
                let check = find(crate::catalog::ATTRIBUTE_CHECKS, "check").unwrap_or("exists");
                // anchore: `op.requires_rvalue and not rval` returns, so an empty value is none.
                let value = p.str("value").filter(|v| !v.is_empty());
                let bad = |m: String| vec![BuildError::at("value", m)];
                let op = match (check, value) {
                    ("exists", _) => Op::Exists(true),
                    ("not_exists", _) => Op::Exists(false),
                    (_, None) => {
                        let message = format!("check `{check}` needs parameter `value`");
                        return Err(vec![BuildError {
                            param: None,
                            message,
                        }]);
                    }
                    ("like" | "not_like", Some(v)) => {
                        if numeric(attribute) {
                            return Err(bad(format!(
                                "`{check}` does not apply to numeric attribute `{attribute}`"
                            )));
                        }
                        let re = match_regex(v).map_err(|e| bad(format!("invalid regex: {e}")))?;
                        Op::Like(re, check == "like")
                    }
                    ("in" | "not_in", Some(v)) => {
                        let items = split_list(v)
                            .iter()
                            .map(|i| {
                                parse_val(attribute, i)
                                    .ok_or_else(|| bad(format!("`{i}` is not a valid {attribute}")))
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Op::In(items, check == "in")
                    }
                    (_, Some(v)) => Op::Cmp(
                        check,
                        parse_val(attribute, v)
                            .ok_or_else(|| bad(format!("`{v}` is not a valid {attribute}")))?,
                    ),
                };
                let shown = match &op {
                    Op::Cmp(_, v) => v.to_string(),
                    _ => value.unwrap_or_default().to_string(),
                };
                Check::Attribute {
                    attribute,
                    check,
                    shown,
                    op,
                }
            }
            "blacklist_exact_match" => Check::LicenseExact(p.list("licenses")),
            "blacklist_partial_match" => Check::LicensePartial(p.list("licenses")),
            _ => Check::Always,
        })
    }

    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        Ok(match self {
            Check::Attribute {
                attribute,
                check,
                shown,
                op,
            } => {
                let have = attribute_value(&ctx.facts.image, attribute);
                let hit = matches(have.as_ref(), op).ok_or_else(|| {
                    format!("image attribute `{attribute}` is unknown; cannot apply `{check}`")
                })?;
                if hit {
                    let have = have.map(|v| v.to_string()).unwrap_or_else(|| "None".into());
                    vec![Fire::msg(format!(
                        "Attribute check for attribute: '{attribute}' check: '{check}' check_value: '{shown}' matched image value: '{have}'"
                    ))]
                } else {
                    Vec::new()
                }
            }
            Check::LicenseExact(list) => {
                licenses(ctx, "LICFULLMATCH", |l| list.iter().any(|b| b == l))
            }
            Check::LicensePartial(list) => licenses(ctx, "LICSUBMATCH", |l| {
                list.iter().any(|b| l.contains(b.as_str()))
            }),
            Check::Always => vec![Fire::msg("always")],
            Check::Deferred(None) => Vec::new(),
            Check::Deferred(Some(e)) => return Err(e.clone()),
        })
    }
}

fn attribute_value(image: &ImageInfo, attribute: &str) -> Option<Val> {
    let s = |v: &Option<String>| v.clone().map(Val::Str);
    match attribute {
        "size" => Some(Val::Num(image.size)),
        "layer_count" => Some(Val::Num(image.layer_count)),
        "architecture" => s(&image.architecture),
        "os_type" => s(&image.os_type),
        "distro" => s(&image.distro),
        "distro_version" => s(&image.distro_version),
        _ => s(&image.like_distro),
    }
}

/// `None` when the comparison cannot be made (a missing value ordered or pattern-matched), which anchore
/// hits as a Python TypeError and reports as an errored rule.
fn matches(have: Option<&Val>, op: &Op) -> Option<bool> {
    match (op, have) {
        (Op::Exists(want), v) => {
            let present = match v {
                Some(Val::Num(n)) => *n != 0,
                Some(Val::Str(s)) => !s.is_empty(),
                None => false,
            };
            Some(present == *want)
        }
        (Op::In(items, want), v) => Some(v.is_some_and(|v| items.contains(v)) == *want),
        (Op::Cmp("=", want), v) => Some(v == Some(want)),
        (Op::Cmp("!=", want), v) => Some(v != Some(want)),
        (_, None) => None,
        (Op::Like(re, want), Some(v)) => Some(re.is_match(&v.to_string()) == *want),
        (Op::Cmp(check, want), Some(v)) => {
            let o = v.partial_cmp(want)?;
            Some(match *check {
                "<" => o == Ordering::Less,
                ">" => o == Ordering::Greater,
                "<=" => o != Ordering::Greater,
                _ => o != Ordering::Less,
            })
        }
    }
}

fn licenses(ctx: &Ctx<'_>, tag: &str, hit: impl Fn(&str) -> bool) -> Vec<Fire> {
    let mut found = Vec::new();
    for pkg in &ctx.facts.packages {
        // anchore splits each package's license field on whitespace before matching.
        for license in pkg.licenses.iter().flat_map(|l| l.split_whitespace()) {
            if hit(license) {
                found.push(format!("{}({license})", pkg.name));
            }
        }
    }
    if found.is_empty() {
        Vec::new()
    } else {
        vec![Fire::msg(format!(
            "{tag} Packages are installed that have blacklisted licenses: {}",
            found.join(", ")
        ))]
    }
}
