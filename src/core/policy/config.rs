//! `services.policy_engine`: policy checks in the core, the bundle to seed at start, the evaluation cache.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use fathom_config::ConfigError;

/// `services.policy_engine`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyEngineConfig {
    /// Whether the core serves `/v1/policies` and `/v1/images/{digest}/check` (off: they answer 503).
    pub enabled: bool,
    /// A bundle file (JSON or YAML) the core stores and activates at start, replacing the stored bundle
    /// of the same id. Unset: the stored active bundle, else the built-in default bundle.
    pub bundle_file: Option<String>,
    /// Keep evaluations in memory, keyed by image digest, tag, bundle digest and feed state.
    pub cache: bool,
    /// A cached evaluation is recomputed after this long even when nothing it was keyed on changed:
    /// whitelist expiry and feed staleness depend on the clock.
    #[serde(with = "fathom_config::duration")]
    pub cache_ttl: Duration,
    /// Most evaluations cached (the cache is emptied when it fills).
    pub cache_entries: usize,
    /// Evaluations kept per image in its history (`GET /v1/images/{digest}/checks`); 0 keeps none.
    pub history_per_image: u32,
    /// Listen address of the policy engine as its own service (the split deployment): `fathom run`
    /// then serves checks, `/healthz`, `/readyz` and `/metrics` there. Unset: it runs inside the core.
    pub address: Option<String>,
    /// How often the core re-evaluates the images in scope (watched tags' current digests, images the
    /// inventory says run) to write `dev.fathom.image.policy.changed` when a final action changes (also
    /// at once after a bundle activation); 0s turns it off.
    #[serde(with = "fathom_config::duration")]
    pub scope_interval: Duration,
}

impl Default for PolicyEngineConfig {
    fn default() -> Self {
        PolicyEngineConfig {
            enabled: true,
            bundle_file: None,
            cache: true,
            cache_ttl: Duration::from_secs(300),
            cache_entries: 10_000,
            history_per_image: 100,
            address: None,
            scope_interval: Duration::from_secs(30),
        }
    }
}

impl PolicyEngineConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self
            .bundle_file
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            return Err(ConfigError::new(
                "services.policy_engine.bundle_file",
                "empty; remove the key to use the stored or built-in bundle",
            ));
        }
        if let Some(address) = &self.address {
            address.parse::<std::net::SocketAddr>().map_err(|e| {
                ConfigError::new(
                    "services.policy_engine.address",
                    format!("not HOST:PORT ({e})"),
                )
            })?;
            if !self.enabled {
                return Err(ConfigError::new(
                    "services.policy_engine.address",
                    "set while services.policy_engine.enabled is false",
                ));
            }
        }
        if self.cache && self.cache_ttl.is_zero() {
            return Err(ConfigError::new(
                "services.policy_engine.cache_ttl",
                "must be greater than 0 while services.policy_engine.cache is true",
            ));
        }
        if self.cache && self.cache_entries == 0 {
            return Err(ConfigError::new(
                "services.policy_engine.cache_entries",
                "must be at least 1 while services.policy_engine.cache is true",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_for_test as load;

    #[test]
    fn defaults_and_file_and_environment() {
        let c = load("", &[]).unwrap();
        assert!(c.services.policy_engine.enabled);
        assert!(c.services.policy_engine.cache);
        let c = load(
            "services: {policy_engine: {bundle_file: /etc/fathom/bundle.yaml, cache_ttl: 1m}}",
            &[("FATHOM_SERVICES_POLICY_ENGINE_CACHE", "false")],
        )
        .unwrap();
        let p = &c.services.policy_engine;
        assert_eq!(p.bundle_file.as_deref(), Some("/etc/fathom/bundle.yaml"));
        assert_eq!(p.cache_ttl, std::time::Duration::from_secs(60));
        assert!(!p.cache);
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            (
                "services: {policy_engine: {bundle_file: ''}}",
                "services.policy_engine.bundle_file",
            ),
            (
                "services: {policy_engine: {cache_ttl: 0s}}",
                "services.policy_engine.cache_ttl",
            ),
            (
                "services: {policy_engine: {cache_entries: 0}}",
                "services.policy_engine.cache_entries",
            ),
            (
                "services: {policy_engine: {cach: true}}",
                "services.policy_engine.cach",
            ),
            (
                "services: {policy_engine: {address: nowhere}}",
                "services.policy_engine.address",
            ),
        ] {
            assert_eq!(load(text, &[]).unwrap_err().key, key, "{text}");
        }
    }
}
