//! `services.api`: the core's external HTTP API and the queue maintenance that runs beside it.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use fathom_config::ConfigError;

/// Shortest `services.api.queue_stats_interval` (other than 0s, off).
const MIN_QUEUE_STATS_INTERVAL: Duration = Duration::from_millis(100);

/// `services.api`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiServiceConfig {
    /// Whether `fathom run` starts it.
    pub enabled: bool,
    /// Listen address of the API, its `/healthz`, `/readyz` and `/metrics`.
    pub address: String,
    /// Require a bearer token on every `/v1` route. Off only for a trusted network or a demo.
    pub auth: bool,
    /// Accepted bearer tokens: each either the token itself or `sha256:<hex>` of it (prefer the hash in
    /// files; give plain tokens through `FATHOM_SERVICES_API_TOKENS`, comma-separated, from a Secret).
    pub tokens: Vec<String>,
    /// Whether `/metrics` needs a token too (scrapers then send one).
    pub metrics_auth: bool,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Most references in one batch submission.
    pub max_batch: usize,
    /// Page size when a list request names none.
    pub default_page_size: u32,
    /// Largest page a list request may ask for.
    pub max_page_size: u32,
    /// A request still running after this long is answered `503 timeout`.
    #[serde(with = "fathom_config::duration")]
    pub request_timeout: Duration,
    /// Attempts of a submitted analysis before it is given up.
    pub max_attempts: i32,
    /// How often the core rescues jobs whose worker died (0s turns it off; workers rescue too).
    #[serde(with = "fathom_config::duration")]
    pub rescue_interval: Duration,
    /// How often finished jobs older than `job_retention` are deleted (0s turns it off).
    #[serde(with = "fathom_config::duration")]
    pub prune_interval: Duration,
    /// How long finished jobs are kept (results live on in the store).
    #[serde(with = "fathom_config::duration")]
    pub job_retention: Duration,
    /// How often the core reads the queue's counts into its `fathom_queue_*` gauges, which the
    /// dashboards and the backlog alert read with or without an autoscaler (0s turns them off).
    #[serde(with = "fathom_config::duration")]
    pub queue_stats_interval: Duration,
    /// Base URL of a policy engine running on its own (`http://fathom-policy-engine:8229`): policy checks
    /// are forwarded to it over HTTP. Unset: the core evaluates them itself.
    pub policy_engine_url: Option<String>,
    /// A forwarded check not answered within this long fails with `503 policy_engine_unavailable`.
    #[serde(with = "fathom_config::duration")]
    pub policy_engine_timeout: Duration,
}

impl Default for ApiServiceConfig {
    fn default() -> Self {
        ApiServiceConfig {
            enabled: false,
            address: "0.0.0.0:8228".into(),
            auth: true,
            tokens: Vec::new(),
            metrics_auth: false,
            max_body_bytes: 1 << 20,
            max_batch: 1000,
            default_page_size: 50,
            max_page_size: 1000,
            request_timeout: Duration::from_secs(30),
            max_attempts: 5,
            rescue_interval: Duration::from_secs(15),
            prune_interval: Duration::from_secs(600),
            job_retention: Duration::from_secs(7 * 24 * 3600),
            queue_stats_interval: Duration::from_secs(15),
            policy_engine_url: None,
            policy_engine_timeout: Duration::from_secs(10),
        }
    }
}

impl ApiServiceConfig {
    /// Checks what serde cannot: addresses, ranges, and that auth has tokens to check against.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.address.parse::<SocketAddr>().map_err(|e| {
            ConfigError::new("services.api.address", format!("not HOST:PORT ({e})"))
        })?;
        if self.enabled && self.auth && self.tokens.is_empty() {
            return Err(ConfigError::new(
                "services.api.tokens",
                "empty while services.api.auth is true: set FATHOM_SERVICES_API_TOKENS (or auth: false)",
            ));
        }
        for (i, token) in self.tokens.iter().enumerate() {
            if let Some(hex) = token.strip_prefix("sha256:") {
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(ConfigError::new(
                        format!("services.api.tokens[{i}]"),
                        "sha256: must be followed by 64 hex digits",
                    ));
                }
            } else if token.len() < 16 {
                return Err(ConfigError::new(
                    format!("services.api.tokens[{i}]"),
                    "tokens must be at least 16 characters",
                ));
            }
        }
        if let Some(url) = &self.policy_engine_url {
            let ok = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(['?', '#']));
            if !ok {
                return Err(ConfigError::new(
                    "services.api.policy_engine_url",
                    format!("{url:?} is not an http:// or https:// base URL"),
                ));
            }
            if self.policy_engine_timeout.is_zero() {
                return Err(ConfigError::new(
                    "services.api.policy_engine_timeout",
                    "must be greater than 0",
                ));
            }
        }
        if self.metrics_auth && self.tokens.is_empty() {
            return Err(ConfigError::new(
                "services.api.metrics_auth",
                "true but services.api.tokens is empty",
            ));
        }
        for (key, value) in [
            ("services.api.max_body_bytes", self.max_body_bytes as u64),
            ("services.api.max_batch", self.max_batch as u64),
            (
                "services.api.default_page_size",
                self.default_page_size as u64,
            ),
            ("services.api.max_page_size", self.max_page_size as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.default_page_size > self.max_page_size {
            return Err(ConfigError::new(
                "services.api.default_page_size",
                "must not exceed services.api.max_page_size",
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new(
                "services.api.request_timeout",
                "must be greater than 0",
            ));
        }
        if !self.queue_stats_interval.is_zero()
            && self.queue_stats_interval < MIN_QUEUE_STATS_INTERVAL
        {
            return Err(ConfigError::new(
                "services.api.queue_stats_interval",
                "must be 0s (off) or at least 100ms: shorter reads the queue counts back to back",
            ));
        }
        if self.max_attempts < 1 {
            return Err(ConfigError::new(
                "services.api.max_attempts",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::ApiServiceConfig;

    #[test]
    fn queue_stats_interval_is_off_or_at_least_100ms() {
        let with = |ms| ApiServiceConfig {
            queue_stats_interval: Duration::from_millis(ms),
            ..Default::default()
        };
        assert!(with(0).validate().is_ok());
        assert!(with(100).validate().is_ok());
        let err = with(10).validate().unwrap_err().to_string();
        assert!(err.contains("services.api.queue_stats_interval"), "{err}");
    }
}
