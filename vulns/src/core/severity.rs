//! Severities: CVSS v3.x and v4.0 base scores computed from the vectors (by RustSec's `cvss` crate), distro
//! severity words normalized, and the one label a match shows.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::osv::{distro_severity, Affected, Record, Severity};

/// A severity label, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// No severity known.
    Unknown,
    /// Negligible (Debian `unimportant`, Ubuntu `negligible`).
    Negligible,
    /// Low.
    Low,
    /// Medium (Debian `medium`, Red Hat `moderate`).
    Medium,
    /// High (Red Hat `important`).
    High,
    /// Critical.
    Critical,
}

impl Level {
    /// The stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::Negligible => "negligible",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    /// Parses a stable name (as [`Level::as_str`] writes it) or a distro word.
    pub fn from_word(word: &str) -> Level {
        match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Level::Critical,
            "high" | "important" => Level::High,
            "medium" | "moderate" => Level::Medium,
            "low" => Level::Low,
            "negligible" | "unimportant" | "not yet assigned" | "end-of-life" => Level::Negligible,
            _ => Level::Unknown,
        }
    }

    /// CVSS qualitative rating of a base score.
    pub fn from_score(score: f64) -> Level {
        match score {
            s if s >= 9.0 => Level::Critical,
            s if s >= 7.0 => Level::High,
            s if s >= 4.0 => Level::Medium,
            s if s > 0.0 => Level::Low,
            _ => Level::Unknown,
        }
    }
}

/// Base score of one vector (`CVSS:3.1/...`, `CVSS:4.0/...`); `None` for other systems or bad vectors.
pub fn base_score(vector: &str) -> Option<f64> {
    let v = vector.trim();
    if v.starts_with("CVSS:3.") {
        cvss::v3::Base::from_str(v).ok().map(|b| b.score().value())
    } else if v.starts_with("CVSS:4.0/") {
        cvss::v4::Vector::from_str(v)
            .ok()
            .map(|b| b.score().value())
    } else {
        None
    }
}

/// Highest base score among severity entries.
pub fn max_score(entries: &[Severity]) -> Option<f64> {
    entries
        .iter()
        .filter_map(|s| base_score(&s.score))
        .fold(None, |m, s| Some(m.map_or(s, |m: f64| m.max(s))))
}

/// What a match shows: the distro's own word when it gave one (distros rate for their build), else the
/// CVSS rating; and the highest CVSS base score (per-package vectors first, then the record's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rated {
    /// Label.
    pub level: Level,
    /// Highest CVSS base score, when any vector scored.
    pub cvss_score: Option<f64>,
}

/// Rates one affected entry of a record.
pub fn rate(record: &Record, entry: &Affected) -> Rated {
    let score = max_score(&entry.severity).or_else(|| max_score(&record.severity));
    let word = distro_severity(entry.ecosystem_specific.as_ref())
        .or_else(|| distro_severity(entry.database_specific.as_ref()))
        .or_else(|| distro_severity(record.database_specific.as_ref()));
    let level = match word.map(|w| Level::from_word(&w)) {
        Some(l) if l != Level::Unknown => l,
        _ => score.map_or(Level::Unknown, Level::from_score),
    };
    Rated {
        level,
        cvss_score: score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_first_calculators() {
        // Values from FIRST's calculators (v3.1 and v4.0).
        let close = |v: &str, want: f64| {
            let got = base_score(v).unwrap_or(-1.0);
            assert!((got - want).abs() < 1e-9, "{v}: {got} != {want}");
        };
        close("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8);
        close("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1);
        close("CVSS:3.0/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N", 4.7);
        close(
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            9.3,
        );
        close(
            "CVSS:4.0/AV:L/AC:L/AT:N/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
            8.5,
        );
        assert_eq!(base_score("AV:N/AC:L/Au:N/C:P/I:P/A:P"), None);
        assert_eq!(base_score("CVSS:3.1/garbage"), None);
    }

    #[test]
    fn distro_word_wins_over_cvss() {
        let r = crate::core::osv::parse(
            br#"{"id":"X","severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected":[{"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"a"},"ecosystem_specific":{"priority":"low"}},
            {"package":{"ecosystem":"PyPI","name":"b"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            rate(&r, &r.affected[0]),
            Rated {
                level: Level::Low,
                cvss_score: Some(9.8)
            }
        );
        assert_eq!(
            rate(&r, &r.affected[1]),
            Rated {
                level: Level::Critical,
                cvss_score: Some(9.8)
            }
        );
        assert_eq!(Level::from_word("Important"), Level::High);
    }
}
