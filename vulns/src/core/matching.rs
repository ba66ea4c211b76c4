//! The matching semantics shared by the Postgres fleet matcher and the standalone (in-memory) scanner:
//! which candidates a record contributes ([`candidates`]) and which of them hit one installed version
//! ([`match_version`]). Keeping both here is what makes `fathom scan --vulns-from` answer what the API does.

use std::collections::HashSet;

use super::affected::{evaluate, FixState, Verdict};
use super::ecosystem::{normalize_ecosystem, normalize_name_for};
use super::osv::{Affected, Record};
use super::severity::rate;
use super::version::Scheme;

/// Reference URLs kept per record.
pub const MAX_URLS: usize = 20;

/// One `affected` entry of a record, keyed by normalized (ecosystem, name), with what a match shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// OSV ecosystem, normalized ([`normalize_ecosystem`]).
    pub ecosystem: String,
    /// Package name, normalized for the ecosystem ([`normalize_name_for`]).
    pub name: String,
    /// Record id.
    pub vuln_id: String,
    /// Record aliases.
    pub aliases: Vec<String>,
    /// Severity label ([`super::severity::Level::as_str`]).
    pub severity: String,
    /// Highest CVSS base score.
    pub cvss_score: Option<f64>,
    /// The record's first reference URLs.
    pub urls: Vec<String>,
    /// The entry itself (ranges and versions).
    pub entry: Affected,
}

/// The candidates a record contributes: one per `affected` entry naming a package; none when withdrawn.
pub fn candidates(record: &Record) -> Vec<Candidate> {
    candidates_where(record, |_, _| true)
}

/// [`candidates`] for the entries whose normalized (ecosystem, name) `keep` accepts; the others are not
/// rated (scoring CVSS vectors is most of the cost of reading a feed nobody matches against).
pub fn candidates_where(record: &Record, keep: impl Fn(&str, &str) -> bool) -> Vec<Candidate> {
    if record.withdrawn.is_some() {
        return Vec::new();
    }
    let urls: Vec<String> = record
        .references
        .iter()
        .map(|r| r.url.clone())
        .take(MAX_URLS)
        .collect();
    record
        .affected
        .iter()
        .filter_map(|a| {
            let p = a.package.as_ref()?;
            let ecosystem = normalize_ecosystem(&p.ecosystem);
            let name = normalize_name_for(&ecosystem, &p.name);
            if !keep(&ecosystem, &name) {
                return None;
            }
            let rated = rate(record, a);
            Some(Candidate {
                name,
                ecosystem,
                vuln_id: record.id.clone(),
                aliases: record.aliases.clone(),
                severity: rated.level.as_str().to_string(),
                cvss_score: rated.cvss_score,
                urls: urls.clone(),
                entry: a.clone(),
            })
        })
        .collect()
}

/// A candidate that affects the installed version.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<'a> {
    /// The candidate.
    pub candidate: &'a Candidate,
    /// Fix state.
    pub state: FixState,
    /// Fixed versions above the installed one, lowest first.
    pub fixed: Vec<String>,
}

/// Evaluates `version` (in `ecosystem`'s version space) against the candidates of its (ecosystem, name).
/// A record listing the package in several entries yields one hit (its first affecting entry). Returns the
/// hits and how many (candidate, version) pairs could not be decided (a version does not parse).
pub fn match_version<'a>(
    ecosystem: &str,
    version: &str,
    candidates: impl IntoIterator<Item = &'a Candidate>,
) -> (Vec<Hit<'a>>, u64) {
    let scheme = Scheme::for_ecosystem(ecosystem);
    let mut seen: HashSet<&str> = HashSet::new();
    let mut hits = Vec::new();
    let mut undecidable = 0;
    for c in candidates {
        match evaluate(&c.entry, scheme, version) {
            Verdict::Affected { state, fixed } => {
                if seen.insert(c.vuln_id.as_str()) {
                    hits.push(Hit {
                        candidate: c,
                        state,
                        fixed,
                    });
                }
            }
            Verdict::Undecidable => undecidable += 1,
            Verdict::Clear => {}
        }
    }
    (hits, undecidable)
}

/// The feed (OSV bucket directory) an ecosystem's records live in: `Debian:12` → `Debian`,
/// `Ubuntu:22.04:LTS` → `Ubuntu`, `crates.io` → `crates.io`.
pub fn feed_of(ecosystem: &str) -> &str {
    ecosystem.split(':').next().unwrap_or(ecosystem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::osv::parse;

    fn record(json: &str) -> Record {
        parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn candidates_normalize_and_skip_withdrawn() {
        let r = record(
            r#"{"id":"GHSA-1","aliases":["CVE-1"],"references":[{"type":"WEB","url":"https://a"}],
            "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected":[{"package":{"ecosystem":"PyPI","name":"Django_Rest"}},{"ranges":[]},
            {"package":{"ecosystem":"Red Hat:enterprise_linux:9::appstream","name":"openssl"}}]}"#,
        );
        let c = candidates(&r);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].ecosystem.as_str(), c[0].name.as_str()),
            ("PyPI", "django-rest")
        );
        assert_eq!(c[0].severity, "critical");
        assert_eq!(c[0].cvss_score, Some(9.8));
        assert_eq!(c[0].urls, ["https://a"]);
        assert_eq!(c[1].ecosystem, "Red Hat:9");
        let mut w = r.clone();
        w.withdrawn = Some("2024-01-01T00:00:00Z".into());
        assert!(candidates(&w).is_empty());
    }

    #[test]
    fn one_hit_per_record_and_undecidable_counted() {
        let r = record(
            r#"{"id":"DSA-1","affected":[
            {"package":{"ecosystem":"Debian:12","name":"glibc"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.36-9+deb12u15"}]}]},
            {"package":{"ecosystem":"Debian:12","name":"glibc"},"ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.36-9+deb12u16"}]}]}]}"#,
        );
        let c = candidates(&r);
        let (hits, undecidable) = match_version("Debian:12", "2.36-9+deb12u14", &c);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].state, FixState::Fixed);
        assert_eq!(hits[0].fixed, ["2.36-9+deb12u15"]);
        assert_eq!(undecidable, 0);
        let (hits, _) = match_version("Debian:12", "2.36-9+deb12u15", &c);
        assert_eq!(hits.len(), 1, "the second entry still affects u15");
        assert_eq!(hits[0].fixed, ["2.36-9+deb12u16"]);
        let (hits, undecidable) = match_version("Debian:12", "not a version!", &c);
        assert!(hits.is_empty());
        assert_eq!(undecidable, 2);
    }

    #[test]
    fn feeds_of_ecosystems() {
        assert_eq!(feed_of("Debian:12"), "Debian");
        assert_eq!(feed_of("Ubuntu:22.04:LTS"), "Ubuntu");
        assert_eq!(feed_of("Rocky Linux:9"), "Rocky Linux");
        assert_eq!(feed_of("crates.io"), "crates.io");
    }
}
