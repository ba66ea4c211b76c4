//! `services.catalog`: how often watched tags and repositories are looked at, how many tags a repository
//! watch may add, and how hard the watchers may press one registry host.

use std::time::Duration;

use fathom_config::ConfigError;
use serde::{Deserialize, Serialize};

/// `services.catalog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// Whether the core runs the catalog loop (the watch routes answer either way).
    pub enabled: bool,
    /// Every watched tag is resolved (`HEAD`) once per this interval.
    #[serde(with = "fathom_config::duration")]
    pub watch_interval: Duration,
    /// Every watched repository's tag list is read once per this interval.
    #[serde(with = "fathom_config::duration")]
    pub repository_interval: Duration,
    /// Tags one repository watch may add; the rest are counted in the watch, never dropped silently.
    pub max_tags_per_repository: u32,
    /// Requests the watchers send one registry host per second at most.
    pub requests_per_second_per_host: f64,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            enabled: true,
            watch_interval: Duration::from_secs(300),
            repository_interval: Duration::from_secs(900),
            max_tags_per_repository: 200,
            requests_per_second_per_host: 5.0,
        }
    }
}

impl CatalogConfig {
    /// Range checks serde cannot do; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("services.catalog.{k}");
        for (name, value) in [
            ("watch_interval", self.watch_interval),
            ("repository_interval", self.repository_interval),
        ] {
            if value < Duration::from_secs(1) {
                return Err(ConfigError::new(key(name), "must be at least 1s"));
            }
        }
        if !(1..=100_000).contains(&self.max_tags_per_repository) {
            return Err(ConfigError::new(
                key("max_tags_per_repository"),
                format!(
                    "must be between 1 and 100000, got {}",
                    self.max_tags_per_repository
                ),
            ));
        }
        let rate = self.requests_per_second_per_host;
        if !rate.is_finite() || !(0.01..=10_000.0).contains(&rate) {
            return Err(ConfigError::new(
                key("requests_per_second_per_host"),
                format!("must be between 0.01 and 10000, got {rate}"),
            ));
        }
        Ok(())
    }

    /// The interval of a pass kind.
    pub fn interval(&self, kind: crate::PassKind) -> Duration {
        match kind {
            crate::PassKind::Tags => self.watch_interval,
            crate::PassKind::Repositories => self.repository_interval,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        CatalogConfig::default().validate().unwrap();
        let bad = [
            CatalogConfig {
                watch_interval: Duration::from_millis(10),
                ..CatalogConfig::default()
            },
            CatalogConfig {
                max_tags_per_repository: 0,
                ..CatalogConfig::default()
            },
            CatalogConfig {
                requests_per_second_per_host: f64::NAN,
                ..CatalogConfig::default()
            },
            CatalogConfig {
                requests_per_second_per_host: 0.0,
                ..CatalogConfig::default()
            },
        ];
        let keys: Vec<String> = bad.iter().map(|c| c.validate().unwrap_err().key).collect();
        assert_eq!(
            keys,
            [
                "services.catalog.watch_interval",
                "services.catalog.max_tags_per_repository",
                "services.catalog.requests_per_second_per_host",
                "services.catalog.requests_per_second_per_host",
            ]
        );
    }
}
