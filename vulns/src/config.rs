//! The `services.feeds` configuration section: where feeds come from, which ecosystems, how often, and
//! the bounds that keep a hostile feed from exhausting memory or disk.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// OSV's public bucket.
pub const DEFAULT_BASE_URL: &str = "https://osv-vulnerabilities.storage.googleapis.com";

/// Ecosystems synced by default (OSV directory names).
pub const DEFAULT_ECOSYSTEMS: [&str; 12] = [
    "Debian",
    "Alpine",
    "Ubuntu",
    "Rocky Linux",
    "AlmaLinux",
    "Red Hat",
    "PyPI",
    "npm",
    "Go",
    "Maven",
    "RubyGems",
    "crates.io",
];

/// Feed settings (`services.feeds`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VulnsConfig {
    /// Whether the core (`fathom run` with `services.api`) runs the periodic sync and fleet matching.
    pub enabled: bool,
    /// Base URL (`https://...`, `http://...`, `file:///dir`) or a plain directory laid out like OSV's
    /// bucket: `ecosystems.txt` and `<ECOSYSTEM>/all.zip`.
    pub base_url: String,
    /// Ecosystems to sync (OSV directory names).
    pub ecosystems: Vec<String>,
    /// Time between syncs (humantime: `6h`, `30m`).
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// How often the core matches newly analyzed images between syncs (cheap when nothing changed).
    #[serde(with = "humantime_serde_compat")]
    pub rematch_interval: Duration,
    /// Largest single record accepted (bytes, inflated); larger entries are skipped and counted.
    pub max_entry_bytes: u64,
    /// Largest `all.zip` downloaded (bytes); a larger body fails that ecosystem's sync.
    pub max_download_bytes: u64,
    /// Whole-request timeout of one download.
    #[serde(with = "humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for VulnsConfig {
    fn default() -> Self {
        VulnsConfig {
            enabled: false,
            base_url: DEFAULT_BASE_URL.to_string(),
            ecosystems: DEFAULT_ECOSYSTEMS.iter().map(|s| s.to_string()).collect(),
            interval: Duration::from_secs(6 * 3600),
            rematch_interval: Duration::from_secs(30),
            max_entry_bytes: 4 << 20,
            max_download_bytes: 2 << 30,
            timeout: Duration::from_secs(600),
        }
    }
}

impl VulnsConfig {
    /// Checks values; errors name the key under `prefix` (e.g. `services.feeds`).
    pub fn validate(&self, prefix: &str) -> Result<()> {
        let bad = |key: &str, message: String| Error::Config {
            key: format!("{prefix}.{key}"),
            message,
        };
        let b = self.base_url.trim();
        if b.is_empty() {
            return Err(bad("base_url", "must not be empty".into()));
        }
        if b.contains("://")
            && !(b.starts_with("http://") || b.starts_with("https://") || b.starts_with("file://"))
        {
            return Err(bad(
                "base_url",
                format!("{b:?}: only http(s)://, file:// or a directory"),
            ));
        }
        if self.ecosystems.is_empty() {
            return Err(bad("ecosystems", "list at least one ecosystem".into()));
        }
        if let Some(e) = self
            .ecosystems
            .iter()
            .find(|e| e.trim().is_empty() || e.contains('/') || e.contains(".."))
        {
            return Err(bad("ecosystems", format!("{e:?} is not an ecosystem name")));
        }
        if self.interval < Duration::from_secs(60) {
            return Err(bad("interval", "must be at least 1m".into()));
        }
        if self.rematch_interval < Duration::from_secs(1) {
            return Err(bad("rematch_interval", "must be at least 1s".into()));
        }
        if self.max_entry_bytes < 1024 {
            return Err(bad("max_entry_bytes", "must be at least 1024".into()));
        }
        if self.max_download_bytes < self.max_entry_bytes {
            return Err(bad(
                "max_download_bytes",
                "must be at least max_entry_bytes".into(),
            ));
        }
        Ok(())
    }
}

/// humantime strings for durations, both ways.
mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_key() {
        VulnsConfig::default().validate("services.feeds").unwrap();
        let c: VulnsConfig = serde_json::from_str(r#"{"interval":"30s"}"#).unwrap();
        let e = c.validate("services.feeds").unwrap_err().to_string();
        assert!(e.starts_with("services.feeds.interval:"), "{e}");
        let c = VulnsConfig {
            base_url: "ftp://x".into(),
            ..VulnsConfig::default()
        };
        assert!(c
            .validate("f")
            .unwrap_err()
            .to_string()
            .starts_with("f.base_url:"));
        let c = VulnsConfig {
            ecosystems: vec!["../etc".into()],
            ..VulnsConfig::default()
        };
        assert!(c
            .validate("f")
            .unwrap_err()
            .to_string()
            .starts_with("f.ecosystems:"));
        assert!(serde_json::from_str::<VulnsConfig>(r#"{"bogus":1}"#).is_err());
        let c: VulnsConfig =
            serde_json::from_str(r#"{"interval":"2h","ecosystems":["PyPI"]}"#).unwrap();
        assert_eq!(c.interval, Duration::from_secs(7200));
    }
}
