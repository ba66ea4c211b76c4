//! The `dockerfile` gate, over the real Dockerfile or the one inferred from the image history and config.

use std::collections::BTreeMap;

use regex::Regex;

use super::{BuildError, Ctx, Fire};
use crate::facts::{DockerfileMode, ImageConfig};
use crate::params::{match_regex, split_list, Params};

/// Dockerfile lines grouped by upper-cased directive, each line kept whole (anchore's prepared_dockerfile).
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub actual: bool,
    pub lines: BTreeMap<String, Vec<String>>,
}

impl Prepared {
    /// Groups the instructions; where the history is silent but the config is not (squashed or
    /// history-less images), the config supplies the line, so USER/EXPOSE/HEALTHCHECK are never lost.
    pub(crate) fn new(config: &ImageConfig) -> Prepared {
        let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for line in &config.instructions {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let directive = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            lines.entry(directive).or_default().push(line.to_string());
        }
        if !lines.contains_key("EXPOSE") && !config.exposed_ports.is_empty() {
            lines.insert(
                "EXPOSE".into(),
                vec![format!("EXPOSE {}", config.exposed_ports.join(" "))],
            );
        }
        if let Some(user) = config.user.as_deref().filter(|u| !u.is_empty()) {
            lines
                .entry("USER".into())
                .or_insert_with(|| vec![format!("USER {user}")]);
        }
        if let Some(check) = &config.healthcheck {
            lines
                .entry("HEALTHCHECK".into())
                .or_insert_with(|| vec![format!("HEALTHCHECK {check}")]);
        }
        Prepared {
            actual: config.dockerfile_mode == DockerfileMode::Actual,
            lines,
        }
    }

    fn get(&self, directive: &str) -> &[String] {
        self.lines
            .get(directive)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// The `instruction` trigger's comparison.
#[derive(Debug)]
pub(crate) enum Op {
    Eq(String),
    Ne(String),
    Exists,
    NotExists,
    /// `like` / `not_like`: the regex compiled, or the rule's evaluation error (anchore runs `re.match`
    /// on each line, so a bad regex fails the rule only when the instruction is there).
    Like(Result<Regex, String>),
    NotLike(Result<Regex, String>),
    In(Vec<String>),
    NotIn(Vec<String>),
    /// A check that needs a `value` given none: anchore's trigger returns without firing.
    Never,
}

/// A compiled check of the dockerfile gate.
#[derive(Debug)]
pub(crate) enum Check {
    Instruction {
        directive: String,
        check: &'static str,
        value: String,
        op: Op,
        actual_only: bool,
    },
    ExposedPorts {
        ports: Vec<String>,
        allow: bool,
        actual_only: bool,
    },
    EffectiveUser {
        users: Vec<String>,
        allow: bool,
    },
    NoDockerfile,
}

fn allow_type(p: &Params) -> bool {
    matches!(p.str("type"), Some("whitelist" | "allow"))
}

impl Check {
    pub(crate) fn build(trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        let actual_only = p.bool("actual_dockerfile_only").unwrap_or(false);
        Ok(match trigger {
            "instruction" => {
                let check = crate::catalog::INSTRUCTION_CHECKS
                    .iter()
                    .copied()
                    .find(|c| Some(*c) == p.str("check"))
                    .unwrap_or("exists");
                let given = p.str("value").map(String::from);
                let needs_value = !matches!(check, "exists" | "not_exists");
                let value = given.clone().unwrap_or_default();
                let regex = |v: &str| {
                    match_regex(v).map_err(|e| {
                        super::trigger_error("dockerfile", "instruction", p, &e.to_string())
                    })
                };
                let op = match check {
                    _ if needs_value && given.is_none() => Op::Never,
                    "=" => Op::Eq(value.clone()),
                    "!=" => Op::Ne(value.clone()),
                    "exists" => Op::Exists,
                    "not_exists" => Op::NotExists,
                    "like" => Op::Like(regex(&value)),
                    "not_like" => Op::NotLike(regex(&value)),
                    "in" => Op::In(split_list(&value)),
                    _ => Op::NotIn(split_list(&value)),
                };
                let directive = p.str("instruction").unwrap_or_default().to_string();
                Check::Instruction {
                    directive,
                    check,
                    value,
                    op,
                    actual_only,
                }
            }
            "exposed_ports" => Check::ExposedPorts {
                ports: p.list("ports"),
                allow: allow_type(p),
                actual_only,
            },
            "effective_user" => Check::EffectiveUser {
                users: p.list("users"),
                allow: allow_type(p),
            },
            _ => Check::NoDockerfile,
        })
    }

    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        let df = ctx.dockerfile;
        Ok(match self {
            Check::Instruction {
                actual_only: true, ..
            }
            | Check::ExposedPorts {
                actual_only: true, ..
            } if !df.actual => Vec::new(),
            Check::Instruction {
                directive,
                check,
                value,
                op,
                ..
            } => {
                let mut fires = Vec::new();
                if matches!(op, Op::Never) {
                    return Ok(fires);
                }
                for line in df.get(directive) {
                    let rest = line.get(directive.len()..).unwrap_or_default().trim();
                    let hit = match op {
                        Op::Eq(v) => rest == v,
                        Op::Ne(v) => rest != v,
                        Op::Exists => true,
                        Op::NotExists => false,
                        Op::Like(re) => re.as_ref().map_err(String::clone)?.is_match(rest),
                        Op::NotLike(re) => !re.as_ref().map_err(String::clone)?.is_match(rest),
                        Op::Never => false,
                        Op::In(list) => list.iter().any(|v| v == rest),
                        Op::NotIn(list) => !list.iter().any(|v| v == rest),
                    };
                    if hit {
                        fires.push(Fire::msg(format!(
                            "Dockerfile directive '{directive}' check '{check}' matched against '{value}' for line '{rest}'"
                        )));
                    }
                }
                if matches!(op, Op::NotExists) && df.get(directive).is_empty() {
                    fires.push(Fire::msg(format!(
                        "Dockerfile directive '{directive}' not found, matching condition '{check}' check"
                    )));
                }
                fires
            }
            Check::ExposedPorts { ports, allow, .. } => exposed(df, ports, *allow),
            Check::EffectiveUser { users, allow } => {
                let last = df
                    .get("USER")
                    .last()
                    .map(String::as_str)
                    .unwrap_or("USER root");
                let user = last
                    .get(4..)
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim();
                let listed = users.iter().any(|u| u == user);
                if *allow && !listed {
                    vec![Fire::msg(format!(
                        "User {user} found as effective user, which is not on the allowed list"
                    ))]
                } else if !*allow && listed {
                    // anchore's wording, typo included: the message feeds the trigger id whitelists match on.
                    vec![Fire::msg(format!(
                        "User {user} found as effective user, which is explicity not allowed list"
                    ))]
                } else {
                    Vec::new()
                }
            }
            Check::NoDockerfile => {
                if df.actual {
                    Vec::new()
                } else {
                    vec![Fire::msg(
                        "Image was not analyzed with an actual Dockerfile",
                    )]
                }
            }
        })
    }
}

fn exposed(df: &Prepared, ports: &[String], allow: bool) -> Vec<Fire> {
    let mut fires = Vec::new();
    for line in df.get("EXPOSE") {
        let exposed: Vec<&str> = line.split_whitespace().skip(1).collect();
        if exposed.is_empty() {
            continue;
        }
        // Port 0 means "any port"; anchore meant this but compared an int to strings, so it never fired.
        let any = ports.iter().any(|p| p == "0");
        if !allow {
            if any {
                fires.push(Fire::msg(format!(
                    "Dockerfile exposes network ports but policy sets DENIEDPORTS=0: {}",
                    super::py_list(&exposed.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                )));
                continue;
            }
            for p in ports {
                let hit = [p.clone(), format!("{p}/tcp"), format!("{p}/udp")]
                    .into_iter()
                    .find(|c| exposed.contains(&c.as_str()));
                if let Some(hit) = hit {
                    fires.push(Fire::msg(format!(
                        "Dockerfile exposes port ({hit}) which is in policy file DENIEDPORTS list"
                    )));
                }
            }
        } else {
            if any {
                fires.push(Fire::msg(format!(
                    "Dockerfile exposes network ports but policy sets ALLOWEDPORTS=0: {}",
                    super::py_list(&exposed.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                )));
                continue;
            }
            for e in exposed {
                let port = e.split('/').next().unwrap_or(e);
                let proto_ok = e == port || e.ends_with("/tcp") || e.ends_with("/udp");
                if !(proto_ok && ports.iter().any(|p| p == port)) {
                    fires.push(Fire::msg(format!("Dockerfile exposes port ({e}) which is not in policy file ALLOWEDPORTS list")));
                }
            }
        }
    }
    fires
}
