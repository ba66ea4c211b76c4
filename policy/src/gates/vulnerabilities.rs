//! The `vulnerabilities` gate: package matches, stale feeds, missing data, blacklisted ids.

use std::cmp::Ordering;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use regex::Regex;

use super::{py_list, BuildError, Ctx, Fire};
use crate::facts::{Cvss, Severity, VulnMatch};
use crate::params::Params;

/// A comparison operator of the vulnerability gate (`=`, `!=`, `<`, `>`, `<=`, `>=`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cmp(&'static str);

impl Cmp {
    fn parse(op: Option<&str>, default: &'static str) -> Cmp {
        let op = op.unwrap_or(default);
        Cmp(crate::catalog::COMPARISONS
            .iter()
            .copied()
            .find(|c| *c == op)
            .unwrap_or(default))
    }

    pub(crate) fn holds(self, ordering: Option<Ordering>) -> bool {
        let Some(o) = ordering else { return false };
        match self.0 {
            "=" => o == Ordering::Equal,
            "!=" => o != Ordering::Equal,
            "<" => o == Ordering::Less,
            ">" => o == Ordering::Greater,
            "<=" => o != Ordering::Greater,
            _ => o != Ordering::Less,
        }
    }
}

/// Reads one score out of a CVSS record.
type Pick = fn(&Cvss) -> f64;

#[derive(Debug)]
struct Score {
    cmp: Cmp,
    value: f64,
    pick: Pick,
    vendor: bool,
    label: &'static str,
    /// Its bit in a message shape (see `PackageCheck::fire`).
    bit: u16,
}

/// The `package` trigger's parameters, typed.
#[derive(Debug)]
pub(crate) struct PackageCheck {
    os: bool,
    non_os: bool,
    severity_cmp: Cmp,
    severity: Severity,
    scores: Vec<Score>,
    fix_available: Option<bool>,
    vendor_only: bool,
    max_days_since_creation: Option<i64>,
    max_days_since_fix: Option<i64>,
    /// Compiled, or the rule's evaluation error (anchore compiles it only when the trigger runs).
    path_exclude: Option<Result<Regex, String>>,
}

/// A compiled check of the vulnerabilities gate.
#[derive(Debug)]
pub(crate) enum Check {
    Package(Box<PackageCheck>),
    StaleFeed { max_days: i64 },
    DataUnavailable,
    Blacklist { ids: Vec<String>, vendor_only: bool },
}

fn severity(name: &str) -> Severity {
    match name {
        "negligible" => Severity::Negligible,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        _ => Severity::Unknown,
    }
}

impl Check {
    pub(crate) fn build(trigger: &str, p: &Params) -> Result<Check, Vec<BuildError>> {
        Ok(match trigger {
            "package" => {
                let kind = p.str("package_type").unwrap_or("all");
                let mut scores = Vec::new();
                let picks: [(&'static str, Pick); 3] = [
                    ("base", |c| c.base),
                    ("exploitability", |c| c.exploitability),
                    ("impact", |c| c.impact),
                ];
                for (v, vendor) in [false, true].into_iter().enumerate() {
                    for (k, (part, pick)) in picks.into_iter().enumerate() {
                        let prefix = if vendor {
                            "vendor_cvss_v3_"
                        } else {
                            "cvss_v3_"
                        };
                        let name = format!("{prefix}{part}_score");
                        if let Some(value) = p.float(&name) {
                            let cmp = Cmp::parse(p.str(&format!("{name}_comparison")), ">=");
                            let label = label(vendor, part);
                            scores.push(Score {
                                cmp,
                                value,
                                pick,
                                vendor,
                                label,
                                bit: (v * 3 + k) as u16,
                            });
                        }
                    }
                }
                Check::Package(Box::new(PackageCheck {
                    os: kind != "non-os",
                    non_os: kind != "os",
                    // anchore's defaults: `>` against `unknown`, so unrated vulnerabilities fire only when asked.
                    severity_cmp: Cmp::parse(p.str("severity_comparison"), ">"),
                    severity: severity(p.str("severity").unwrap_or("unknown")),
                    scores,
                    fix_available: p.bool("fix_available"),
                    vendor_only: p.bool("vendor_only").unwrap_or(true),
                    max_days_since_creation: p.int("max_days_since_creation"),
                    max_days_since_fix: p.int("max_days_since_fix"),
                    path_exclude: super::regex_param(
                        "vulnerabilities",
                        "package",
                        p,
                        "package_path_exclude",
                    ),
                }))
            }
            "stale_feed_data" => Check::StaleFeed {
                max_days: p.int("max_days_since_sync").unwrap_or(0),
            },
            "vulnerability_data_unavailable" => Check::DataUnavailable,
            _ => Check::Blacklist {
                ids: p.list("vulnerability_ids"),
                vendor_only: p.bool("vendor_only").unwrap_or(true),
            },
        })
    }

    pub(crate) fn evaluate(&self, ctx: &Ctx<'_>) -> Result<Vec<Fire>, String> {
        let facts = ctx.facts;
        match self {
            Check::Package(check) => {
                let vulns = facts.vulnerabilities.as_ref().ok_or_else(unavailable)?;
                if let Some(Err(e)) = &check.path_exclude {
                    return Err(e.clone());
                }
                Ok(ctx
                    .vulns
                    .order
                    .iter()
                    .filter_map(|&i| check.fire(i, vulns.get(i)?, ctx))
                    .collect())
            }
            Check::StaleFeed { max_days } => {
                let stale = match facts.feed.last_sync {
                    Some(at) => at < days_before(ctx.now, *max_days),
                    None => true,
                };
                Ok(if stale {
                    vec![Fire::msg(format!(
                        "The vulnerability feed for this image distro is older than MAXAGE ({max_days}) days"
                    ))]
                } else {
                    Vec::new()
                })
            }
            Check::DataUnavailable => {
                let image = &facts.image;
                Ok(
                    if facts.vulnerabilities.is_none() || !facts.feed.distro_data {
                        vec![Fire::msg(format!(
                        "Distro-specific feed data not found for distro namespace: {}:{}. Cannot perform CVE scan OS/distro packages",
                        image.distro.as_deref().unwrap_or("unknown"),
                        image.distro_version.as_deref().unwrap_or("unknown"),
                    ))]
                    } else {
                        Vec::new()
                    },
                )
            }
            Check::Blacklist { ids, vendor_only } => {
                let vulns = facts.vulnerabilities.as_ref().ok_or_else(unavailable)?;
                // Aliases count too (a fathom extension): a GHSA match blacklisted by its CVE id still fires.
                let found: Vec<String> = ids
                    .iter()
                    .filter(|id| {
                        vulns.iter().any(|v| {
                            !(*vendor_only && v.will_not_fix)
                                && (&v.id == *id || v.aliases.iter().any(|a| a == *id))
                        })
                    })
                    .cloned()
                    .collect();
                Ok(if found.is_empty() {
                    Vec::new()
                } else {
                    vec![Fire::msg(format!(
                        "Blacklisted vulnerabilities detected: {}",
                        py_list(&found)
                    ))]
                })
            }
        }
    }
}

fn unavailable() -> String {
    "vulnerability data unavailable for this image (not scanned, or no feed for its distro)".into()
}

fn label(vendor: bool, part: &str) -> &'static str {
    match (vendor, part) {
        (false, "base") => "cvss_v3_base_score",
        (false, "exploitability") => "cvss_v3_exploitability_score",
        (false, _) => "cvss_v3_impact_score",
        (true, "base") => "vendor_cvss_v3_base_score",
        (true, "exploitability") => "vendor_cvss_v3_exploitability_score",
        (true, _) => "vendor_cvss_v3_impact_score",
    }
}

fn days_before(now: Timestamp, days: i64) -> Timestamp {
    now.checked_sub(SignedDuration::from_hours(days.saturating_mul(24)))
        .unwrap_or(Timestamp::MIN)
}

impl PackageCheck {
    /// Whether the rule fires on match `i`, and then its fire (built once per match and message shape).
    fn fire(&self, i: usize, v: &VulnMatch, ctx: &Ctx<'_>) -> Option<Fire> {
        let now = ctx.now;
        let os = v.is_os();
        if (os && !self.os) || (!os && !self.non_os) {
            return None;
        }
        if !self
            .severity_cmp
            .holds(Some(v.severity.cmp(&self.severity)))
        {
            return None;
        }
        if self.vendor_only && v.will_not_fix {
            return None;
        }
        if let (Some(Ok(re)), Some(path)) = (&self.path_exclude, &v.package_path) {
            if re.is_match(path) {
                return None;
            }
        }
        // Which clauses the message carries: bits 0-5 the scores (by label), 6 creation, 7 fix time.
        let mut shape: u16 = 0;
        if let (Some(days), Some(created)) = (self.max_days_since_creation, v.created_at) {
            // Too recent for this rule: anchore skips vulnerabilities created inside the window.
            if created > days_before(now, days) {
                return None;
            }
            shape |= 1 << 6;
        }
        if self.fix_available == Some(true) {
            if let (Some(days), Some(_), Some(seen)) =
                (self.max_days_since_fix, &v.fix_version, v.fix_first_seen)
            {
                if seen > days_before(now, days) {
                    return None;
                }
                shape |= 1 << 7;
            }
        }
        for s in &self.scores {
            if !s.cmp.holds(s.found(v).partial_cmp(&s.value)) {
                return None;
            }
            shape |= 1 << s.bit;
        }
        if let Some(want) = self.fix_available {
            if want != v.fix_version.is_some() {
                return None;
            }
        }
        let mut memo = ctx.vulns.fires.borrow_mut();
        let slot = memo.get_mut(i)?;
        if let Some((_, fire)) = slot.iter().find(|(s, _)| *s == shape) {
            return Some(fire.clone());
        }
        let fire = self.build(i, v, shape, os);
        slot.push((shape, fire.clone()));
        Some(fire)
    }

    /// The fire of match `i` with the clauses of `shape`.
    fn build(&self, i: usize, v: &VulnMatch, shape: u16, os: bool) -> Fire {
        let mut times = Vec::new();
        if shape & (1 << 6) != 0 {
            if let Some(created) = v.created_at {
                times.push(format!(
                    "max_days_since_creation={}",
                    created.strftime("%Y-%m-%d")
                ));
            }
        }
        if shape & (1 << 7) != 0 {
            if let Some(seen) = v.fix_first_seen {
                times.push(format!("max_days_since_fix={}", seen.strftime("%Y-%m-%d")));
            }
        }
        let scores: Vec<String> = self
            .scores
            .iter()
            .map(|s| format!("{}={}", s.label, s.found(v)))
            .collect();
        let fix = v
            .fix_version
            .as_ref()
            .map(|f| format!("(fixed in: {f})"))
            .unwrap_or_default();
        let scores = paren(&scores);
        let times = paren(&times);
        let message = format!(
            "{} Vulnerability found in {} package type ({}) - {} {fix}{scores}{times}({} - {})",
            v.severity.upper(),
            if os { "os" } else { "non-os" },
            v.package_type,
            v.package_name,
            v.id,
            v.link.as_deref().unwrap_or("None"),
        );
        let also: Vec<String> = v
            .aliases
            .iter()
            .map(|a| format!("{a}+{}", v.package_name))
            .collect();
        Fire {
            instance_id: Some(Arc::from(format!("{}+{}", v.id, v.package_name))),
            message: Arc::from(message),
            also: Arc::from(also),
            vuln: Some(i),
            rule_scoped: false,
        }
    }
}

impl Score {
    /// The match's score; anchore reads a missing score as -1.0.
    fn found(&self, v: &VulnMatch) -> f64 {
        let cvss = if self.vendor {
            v.vendor_cvss_v3
        } else {
            v.cvss_v3
        };
        cvss.as_ref().map(self.pick).unwrap_or(-1.0)
    }
}

fn paren(parts: &[String]) -> String {
    if parts.is_empty() {
        String::new()
    } else {
        format!("({})", parts.join(" "))
    }
}
