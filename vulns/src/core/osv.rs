//! The OSV record model (ossf/osv-schema), tolerant of fields it does not know, with parse errors that
//! name the record id and the JSON path of the offending value.

use serde::{Deserialize, Serialize};

/// One OSV vulnerability record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Record id (`DSA-5501-1`, `GHSA-...`, `CVE-...`).
    pub id: String,
    /// Last modification, RFC 3339.
    #[serde(default)]
    pub modified: String,
    /// When the record was withdrawn; a withdrawn record never matches.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// Other ids of the same vulnerability (CVE ids).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// One-line summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// Severity vectors.
    #[serde(default)]
    pub severity: Vec<Severity>,
    /// Affected packages.
    #[serde(default)]
    pub affected: Vec<Affected>,
    /// Reference links.
    #[serde(default)]
    pub references: Vec<Reference>,
    /// Database-specific data (distro severities live here).
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// A severity entry: `type` (`CVSS_V3`, `CVSS_V4`, ...) and its vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Severity {
    /// Scoring system.
    #[serde(rename = "type")]
    pub kind: String,
    /// Vector string.
    pub score: String,
}

/// A reference link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// `ADVISORY`, `WEB`, `FIX`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The URL.
    pub url: String,
}

/// One affected package with its ranges and explicit versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    /// The package.
    pub package: Option<PackageRef>,
    /// Per-package severity (overrides the record's).
    #[serde(default)]
    pub severity: Vec<Severity>,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<Range>,
    /// Explicitly affected versions.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Ecosystem-specific data (Ubuntu priority, ...).
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    /// Database-specific data (Debian urgency, ...).
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

/// The package an `affected` entry is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRef {
    /// OSV ecosystem (`Debian:12`, `PyPI`, ...).
    pub ecosystem: String,
    /// Package name in that ecosystem.
    pub name: String,
    /// Package URL, when given.
    #[serde(default)]
    pub purl: Option<String>,
}

/// Range kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RangeKind {
    /// SemVer 2.0 ordering.
    Semver,
    /// The ecosystem's own ordering.
    Ecosystem,
    /// Commit hashes: not evaluable against package versions.
    Git,
    /// A kind this crate does not know; never evaluated.
    #[serde(other)]
    Unknown,
}

/// A version range: an ordered list of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// How versions in `events` are ordered.
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// Events in the order the record lists them.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// One range event. The schema says each object holds exactly one of these keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Affected from this version on (`"0"`: from the beginning).
    Introduced(String),
    /// Not affected from this version on.
    Fixed(String),
    /// Affected up to and including this version.
    LastAffected(String),
    /// Not affected from this version on (an upper bound, not a fix).
    Limit(String),
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {id}: {path}: {message}")]
pub struct ParseError {
    /// The record's id when it could be read, else `?`.
    pub id: String,
    /// JSON path of the offending value (`affected[0].ranges[1].type`).
    pub path: String,
    /// What was wrong.
    pub message: String,
}

/// Parses one record. On failure the error names the record's id (read leniently first) and the JSON
/// path where the strict parse failed.
pub fn parse(bytes: &[u8]) -> Result<Record, ParseError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, Record>(de) {
        Ok(r) if r.id.trim().is_empty() => Err(ParseError {
            id: "?".into(),
            path: "id".into(),
            message: "empty id".into(),
        }),
        Ok(r) => Ok(r),
        Err(e) => {
            #[derive(Deserialize)]
            struct IdOnly {
                id: Option<String>,
            }
            let id = serde_json::from_slice::<IdOnly>(bytes)
                .ok()
                .and_then(|r| r.id)
                .unwrap_or_else(|| "?".into());
            let path = e.path().to_string();
            Err(ParseError {
                id,
                path: if path.is_empty() { ".".into() } else { path },
                message: e.into_inner().to_string(),
            })
        }
    }
}

/// Distro severity words found in `database_specific` / `ecosystem_specific` (Debian `urgency`, Ubuntu
/// `priority`, Alpine/Red Hat/Rocky `severity`), with the key they came from.
pub fn distro_severity(value: Option<&serde_json::Value>) -> Option<String> {
    let obj = value?.as_object()?;
    for key in ["severity", "urgency", "priority"] {
        if let Some(s) = obj.get(key).and_then(|v| v.as_str()) {
            if !s.trim().is_empty() {
                return Some(s.trim().to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_debian_record_and_ignores_unknown_fields() {
        let r = parse(
            br#"{"id":"DSA-1-1","schema_version":"1.6.0","modified":"2024-01-01T00:00:00Z",
            "aliases":["CVE-2024-1"],"affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"},
            "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}],
            "database_specific":{"urgency":"high"},"whatever":1}]}"#,
        )
        .unwrap();
        assert_eq!(r.aliases, ["CVE-2024-1"]);
        let a = &r.affected[0];
        assert_eq!(a.ranges[0].kind, RangeKind::Ecosystem);
        assert_eq!(
            a.ranges[0].events[1],
            Event::Fixed("3.0.11-1~deb12u2".into())
        );
        assert_eq!(
            distro_severity(a.database_specific.as_ref()).as_deref(),
            Some("high")
        );
    }

    #[test]
    fn errors_name_the_id_and_path() {
        let e = parse(br#"{"id":"GHSA-x","affected":[{"ranges":[{"type":"SEMVER","events":[{"fixd":"1"}]}]}]}"#)
            .unwrap_err();
        assert_eq!(e.id, "GHSA-x");
        assert!(
            e.path.starts_with("affected[0].ranges[0].events[0]"),
            "{}",
            e.path
        );
        let e = parse(br#"{"affected":[]}"#).unwrap_err();
        assert_eq!(e.id, "?");
        let e = parse(b"not json").unwrap_err();
        assert_eq!(e.id, "?");
    }

    #[test]
    fn unknown_range_kinds_are_kept_not_fatal() {
        let r = parse(br#"{"id":"X","affected":[{"ranges":[{"type":"NEWKIND","events":[]}]}]}"#)
            .unwrap();
        assert_eq!(r.affected[0].ranges[0].kind, RangeKind::Unknown);
    }
}
