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
    /// How often one core deletes layers no image uses any more (0s: never).
    #[serde(with = "fathom_config::duration")]
    pub layer_sweep_interval: Duration,
    /// Layers stored more recently than this are never swept: a running job stores its layers before the
    /// image that references them.
    #[serde(with = "fathom_config::duration")]
    pub layer_sweep_grace: Duration,
    /// Which stored images are deleted on their own (`services.catalog.retention`; off by default).
    pub retention: RetentionConfig,
}

/// `services.catalog.retention`: the rules that delete images nobody needs any more. Each rule is off at
/// zero, the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Digests kept per watched tag, newest first (by the tag's history); older ones are deleted once
    /// they are no tag's current digest and not seen running (0: off).
    pub keep_per_tag: u32,
    /// Digests with no reference a watch follows, no queued or running job and not seen running, analyzed
    /// longer ago than this, are deleted (0s: off).
    #[serde(with = "fathom_config::duration")]
    pub untagged_after: Duration,
    /// How often one core applies the rules.
    #[serde(with = "fathom_config::duration")]
    pub interval: Duration,
    /// Most images one pass deletes (the rest wait for the next pass).
    pub max_per_pass: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep_per_tag: 0,
            untagged_after: Duration::ZERO,
            interval: Duration::from_secs(3600),
            max_per_pass: 1000,
        }
    }
}

impl RetentionConfig {
    /// Whether any rule is on.
    pub fn enabled(&self) -> bool {
        self.keep_per_tag > 0 || !self.untagged_after.is_zero()
    }
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            enabled: true,
            watch_interval: Duration::from_secs(300),
            repository_interval: Duration::from_secs(900),
            max_tags_per_repository: 200,
            requests_per_second_per_host: 5.0,
            layer_sweep_interval: Duration::from_secs(600),
            layer_sweep_grace: Duration::from_secs(3600),
            retention: RetentionConfig::default(),
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
        if self.retention.interval < Duration::from_secs(1) {
            return Err(ConfigError::new(
                key("retention.interval"),
                "must be at least 1s",
            ));
        }
        if !(1..=100_000).contains(&self.retention.max_per_pass) {
            return Err(ConfigError::new(
                key("retention.max_per_pass"),
                format!(
                    "must be between 1 and 100000, got {}",
                    self.retention.max_per_pass
                ),
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
