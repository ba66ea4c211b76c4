//! The service configuration file (YAML, in the spirit of anchore-engine's `config.yaml`), environment
//! overrides (`FATHOM_<SECTION>_<KEY>`), and validation that names the offending key.
//!
//! ```yaml
//! database:
//!   url: postgres://fathom@db/fathom
//!   pool_size: 2          # per process; keep it tiny, a fleet multiplies it
//!   poll_only: false      # true behind PgBouncer in transaction mode (no LISTEN)
//! services:
//!   analyzer:
//!     enabled: true
//!     concurrency: 2
//!     lease_ttl: 30s
//!     drain_timeout: 25s
//!   autoscaler:           # see config/autoscaler.rs for every key
//!     enabled: false
//!     target: kubernetes  # or local
//!     min_replicas: 0
//!     max_replicas: 20
//!   api:                  # see config/api.rs for every key
//!     enabled: false
//!     address: 0.0.0.0:8228
//!     tokens: []          # FATHOM_SERVICES_API_TOKENS=tok1,tok2
//! registry:
//!   insecure: [registry.local:5000]
//!   credentials:
//!     - { registry: ghcr.io, username: bot, password_env: GHCR_TOKEN }
//! metrics:
//!   address: 0.0.0.0:9464
//! ```

mod api;
mod autoscaler;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};

use crate::source::auth::Credentials;
use crate::source::registry::RegistryOptions;
use crate::source::Platform;
use crate::AnalyzerOptions;

pub use api::{ApiServiceConfig, API_ENV_KEYS};
pub use autoscaler::{AutoscalerServiceConfig, AutoscalerTarget, AUTOSCALER_ENV_KEYS};

/// A configuration problem, naming the key (`services.analyzer.concurrency`) and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// Dotted key path, or the file when the whole file is unreadable.
    pub key: String,
    /// What is wrong (and which environment variable set it, if one did).
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FathomConfig {
    /// Postgres.
    pub database: DatabaseConfig,
    /// Which services `fathom run` starts, and their settings.
    pub services: ServicesConfig,
    /// Registry access for the analyzer.
    pub registry: RegistryConfig,
    /// The metrics and health endpoint.
    pub metrics: MetricsConfig,
}

/// `database`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connection URL (`DATABASE_URL` when absent).
    pub url: Option<String>,
    /// Connections per pool (the queue and the store each keep one pool).
    pub pool_size: u32,
    /// Poll for work instead of LISTEN/NOTIFY, and use unnamed statements (PgBouncer transaction mode).
    pub poll_only: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            pool_size: 2,
            poll_only: false,
        }
    }
}

/// `services`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServicesConfig {
    /// The analyzer worker.
    pub analyzer: AnalyzerServiceConfig,
    /// The queue-depth autoscaler.
    pub autoscaler: AutoscalerServiceConfig,
    /// The core's external API (and queue maintenance).
    pub api: ApiServiceConfig,
}

/// `services.analyzer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyzerServiceConfig {
    /// Whether `fathom run` starts it.
    pub enabled: bool,
    /// Jobs in flight per process.
    pub concurrency: usize,
    /// Lease length; heartbeats run every third of it.
    #[serde(with = "human_duration")]
    pub lease_ttl: Duration,
    /// On SIGTERM, how long in-flight jobs may take to finish before they are released.
    #[serde(with = "human_duration")]
    pub drain_timeout: Duration,
    /// Longest sleep of an idle worker between claims when no notification arrives.
    #[serde(with = "human_duration")]
    pub poll_interval: Duration,
    /// How often (jittered) this worker rescues expired leases of dead workers.
    #[serde(with = "human_duration")]
    pub rescue_interval: Duration,
    /// First retry delay of a retryable failure (doubles per attempt).
    #[serde(with = "human_duration")]
    pub retry_backoff_base: Duration,
    /// Longest retry delay.
    #[serde(with = "human_duration")]
    pub retry_backoff_cap: Duration,
    /// Layers of one image fetched and analyzed at once (default: CPUs).
    pub layers_in_flight: Option<usize>,
    /// Platform picked from multi-arch images (`os/arch[/variant]`).
    pub platform: String,
}

impl Default for AnalyzerServiceConfig {
    fn default() -> Self {
        AnalyzerServiceConfig {
            enabled: true,
            concurrency: 2,
            lease_ttl: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(25),
            poll_interval: Duration::from_secs(5),
            rescue_interval: Duration::from_secs(10),
            retry_backoff_base: Duration::from_secs(2),
            retry_backoff_cap: Duration::from_secs(600),
            layers_in_flight: None,
            platform: "linux/amd64".into(),
        }
    }
}

/// `registry`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// `HOST[:PORT]` of registries reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Connect and read timeout.
    #[serde(with = "human_duration")]
    pub timeout: Duration,
    /// Credentials by registry (in addition to `~/.docker/config.json`).
    pub credentials: Vec<RegistryCredential>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            timeout: Duration::from_secs(30),
            credentials: Vec::new(),
        }
    }
}

/// One `registry.credentials` entry. The password is given inline or, better, named by an environment
/// variable (a Kubernetes Secret mounted as env).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredential {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// User name.
    pub username: String,
    /// Password or token, inline.
    #[serde(default)]
    pub password: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// `metrics`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen address of `/metrics`, `/healthz` and `/readyz`.
    pub address: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            address: "0.0.0.0:9464".into(),
        }
    }
}

/// Scalar keys settable from the environment as `FATHOM_` + the key upper-cased with `.` → `_`
/// (`services.analyzer.concurrency` ← `FATHOM_SERVICES_ANALYZER_CONCURRENCY`). List keys take a
/// comma-separated value. The autoscaler's keys are in [`AUTOSCALER_ENV_KEYS`].
pub const ENV_KEYS: &[&str] = &[
    "database.url",
    "database.pool_size",
    "database.poll_only",
    "services.analyzer.enabled",
    "services.analyzer.concurrency",
    "services.analyzer.lease_ttl",
    "services.analyzer.drain_timeout",
    "services.analyzer.poll_interval",
    "services.analyzer.rescue_interval",
    "services.analyzer.retry_backoff_base",
    "services.analyzer.retry_backoff_cap",
    "services.analyzer.layers_in_flight",
    "services.analyzer.platform",
    "registry.insecure",
    "registry.timeout",
    "metrics.address",
];

const LIST_KEYS: &[&str] = &["registry.insecure", "services.api.tokens"];

/// The environment variable overriding `key`.
pub fn env_name(key: &str) -> String {
    format!("FATHOM_{}", key.replace('.', "_").to_uppercase())
}

impl FathomConfig {
    /// Reads `path` (when given), applies `FATHOM_...` overrides from the process environment and
    /// validates the result.
    pub fn load(path: Option<&Path>) -> Result<FathomConfig, ConfigError> {
        let text = match path {
            Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new(p.display().to_string(), format!("cannot read: {e}"))
            })?),
            None => None,
        };
        let origin = path.map(|p| p.display().to_string());
        Self::from_sources(text.as_deref(), origin.as_deref(), |k| {
            std::env::var(k).ok()
        })
    }

    /// Parses YAML `text` (if any) from `origin`, applies overrides looked up with `env`, and validates.
    pub fn from_sources(
        text: Option<&str>,
        origin: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<FathomConfig, ConfigError> {
        let origin = origin.unwrap_or("configuration");
        let mut root = match text {
            Some(t) if !t.trim().is_empty() => serde_yaml::from_str::<Value>(t)
                .map_err(|e| ConfigError::new(origin, format!("not valid YAML: {e}")))?,
            _ => Value::Mapping(Mapping::new()),
        };
        if !root.is_mapping() {
            return Err(ConfigError::new(origin, "the top level must be a mapping"));
        }
        let mut from_env = Vec::new();
        for key in ENV_KEYS
            .iter()
            .chain(AUTOSCALER_ENV_KEYS)
            .chain(API_ENV_KEYS)
        {
            let var = env_name(key);
            if let Some(raw) = env(&var) {
                let value = if LIST_KEYS.contains(key) {
                    Value::Sequence(
                        raw.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(|s| Value::String(s.to_string()))
                            .collect(),
                    )
                } else {
                    scalar(&raw)
                };
                set_path(&mut root, key, value).map_err(|m| ConfigError::new(*key, m))?;
                from_env.push((key.to_string(), var));
            }
        }
        let config: FathomConfig = serde_path_to_error::deserialize(root).map_err(|e| {
            let key = e.path().to_string();
            let mut message = e.inner().to_string();
            if let Some((_, var)) = from_env.iter().find(|(k, _)| *k == key) {
                message.push_str(&format!(" (set by {var})"));
            }
            ConfigError::new(if key == "." { origin.to_string() } else { key }, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and formats serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let a = &self.services.analyzer;
        if !(1..=1024).contains(&a.concurrency) {
            return Err(ConfigError::new(
                "services.analyzer.concurrency",
                format!("must be between 1 and 1024, got {}", a.concurrency),
            ));
        }
        if a.lease_ttl < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "services.analyzer.lease_ttl",
                "must be at least 1s (heartbeats run every third of it)",
            ));
        }
        for (key, value) in [
            ("services.analyzer.poll_interval", a.poll_interval),
            ("services.analyzer.rescue_interval", a.rescue_interval),
            ("services.analyzer.retry_backoff_base", a.retry_backoff_base),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        if a.retry_backoff_cap < a.retry_backoff_base {
            return Err(ConfigError::new(
                "services.analyzer.retry_backoff_cap",
                "must not be shorter than services.analyzer.retry_backoff_base",
            ));
        }
        if a.layers_in_flight == Some(0) {
            return Err(ConfigError::new(
                "services.analyzer.layers_in_flight",
                "must be at least 1",
            ));
        }
        a.platform
            .parse::<Platform>()
            .map_err(|e| ConfigError::new("services.analyzer.platform", e.to_string()))?;
        self.services.autoscaler.validate()?;
        self.services.api.validate()?;
        if self.database.pool_size == 0 {
            return Err(ConfigError::new("database.pool_size", "must be at least 1"));
        }
        self.metrics
            .address
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::new("metrics.address", format!("not HOST:PORT ({e})")))?;
        for (i, c) in self.registry.credentials.iter().enumerate() {
            if c.password.is_some() == c.password_env.is_some() {
                return Err(ConfigError::new(
                    format!("registry.credentials[{i}]"),
                    "give exactly one of password and password_env",
                ));
            }
        }
        Ok(())
    }

    /// The database URL: `database.url`, else `fallback` (the `DATABASE_URL` environment variable).
    pub fn database_url(&self, fallback: Option<String>) -> Result<String, ConfigError> {
        self.database
            .url
            .clone()
            .filter(|u| !u.is_empty())
            .or(fallback.filter(|u| !u.is_empty()))
            .ok_or_else(|| {
                ConfigError::new(
                    "database.url",
                    "missing (set it, FATHOM_DATABASE_URL or DATABASE_URL)",
                )
            })
    }

    /// Queue settings of a `pool_size`-connection pool: statement mode from `database.poll_only` (PgBouncer
    /// transaction mode needs unnamed statements) and the analyzer's retry backoff.
    pub fn queue_config(&self, pool_size: usize) -> fathom_queue::QueueConfig {
        fathom_queue::QueueConfig {
            pool_size,
            statement_mode: if self.database.poll_only {
                fathom_queue::StatementMode::Unnamed
            } else {
                fathom_queue::StatementMode::Prepared
            },
            backoff_base: self.services.analyzer.retry_backoff_base,
            backoff_cap: self.services.analyzer.retry_backoff_cap,
            ..fathom_queue::QueueConfig::default()
        }
    }

    /// Analyzer options: platform, registries (credentials from `~/.docker/config.json`, the
    /// `FATHOM_REGISTRY_USERNAME`/`_PASSWORD` pair, and `registry.credentials`), layer parallelism.
    pub fn analyzer_options(&self) -> Result<AnalyzerOptions, ConfigError> {
        let mut credentials =
            Credentials::from_env().map_err(|m| ConfigError::new("registry.credentials", m))?;
        for (i, c) in self.registry.credentials.iter().enumerate() {
            let password = match (&c.password, &c.password_env) {
                (Some(p), _) => p.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    ConfigError::new(
                        format!("registry.credentials[{i}].password_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?,
                (None, None) => String::new(),
            };
            credentials.insert(&c.registry, &c.username, &password);
        }
        let analyzer = &self.services.analyzer;
        let mut options = AnalyzerOptions {
            platform: analyzer
                .platform
                .parse()
                .map_err(|e: crate::AnalyzeError| {
                    ConfigError::new("services.analyzer.platform", e.to_string())
                })?,
            registry: RegistryOptions {
                insecure: self.registry.insecure.clone(),
                credentials,
                timeout: self.registry.timeout,
            },
            ..Default::default()
        };
        if let Some(n) = analyzer.layers_in_flight {
            options.layers_in_flight = n;
        }
        Ok(options)
    }
}

/// Parses an environment value as a YAML scalar (`true`, `4`, `30s`), keeping odd strings as strings.
fn scalar(raw: &str) -> Value {
    match serde_yaml::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        _ => Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Mapping(m) => m,
            Value::Null => {
                *node = Value::Mapping(Mapping::new());
                match node {
                    Value::Mapping(m) => m,
                    _ => return Err("internal: mapping expected".into()),
                }
            }
            _ => return Err(format!("{} is not a mapping", parts[..i].join("."))),
        };
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Mapping(Mapping::new()));
    }
    Ok(())
}

/// Durations as humantime strings (`30s`, `1m 30s`, `250ms`) or whole seconds.
mod human_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Duration::from_secs(s)),
            Raw::Text(t) => humantime::parse_duration(&t).map_err(|e| {
                serde::de::Error::custom(format!("{t:?} is not a duration like 30s or 250ms ({e})"))
            }),
        }
    }
}

/// Test helper: loads `text` with `env` as the only environment (shared by the config modules' tests).
#[cfg(test)]
pub(crate) fn load_for_test(text: &str, env: &[(&str, &str)]) -> Result<FathomConfig, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    FathomConfig::from_sources(Some(text), Some("test.yaml"), move |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::load_for_test as load;

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("", &[]).unwrap();
        assert_eq!(c, FathomConfig::default());
        assert!(c.services.analyzer.enabled);
        assert!(!c.services.autoscaler.enabled);
    }

    #[test]
    fn reads_a_full_file() {
        let c = load(
            "database: {url: 'postgres://x/y', pool_size: 3}\n\
             services:\n  analyzer: {concurrency: 8, lease_ttl: 1m, drain_timeout: 500ms}\n  \
             autoscaler: {enabled: true}\n\
             registry: {insecure: ['r:5000'], credentials: [{registry: r, username: u, password: p}]}\n\
             metrics: {address: '127.0.0.1:9000'}\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.database.url.as_deref(), Some("postgres://x/y"));
        assert_eq!(c.services.analyzer.concurrency, 8);
        assert_eq!(c.services.analyzer.lease_ttl, Duration::from_secs(60));
        assert_eq!(
            c.services.analyzer.drain_timeout,
            Duration::from_millis(500)
        );
        assert!(c.services.autoscaler.enabled);
        assert_eq!(c.registry.insecure, vec!["r:5000"]);
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            "services: {analyzer: {concurrency: 8}}",
            &[
                ("FATHOM_SERVICES_ANALYZER_CONCURRENCY", "3"),
                ("FATHOM_SERVICES_ANALYZER_ENABLED", "false"),
                ("FATHOM_REGISTRY_INSECURE", "a:1, b:2"),
                ("FATHOM_SERVICES_ANALYZER_LEASE_TTL", "5s"),
                ("FATHOM_DATABASE_URL", "postgres://env/db"),
            ],
        )
        .unwrap();
        assert_eq!(c.services.analyzer.concurrency, 3);
        assert!(!c.services.analyzer.enabled);
        assert_eq!(c.registry.insecure, vec!["a:1", "b:2"]);
        assert_eq!(c.services.analyzer.lease_ttl, Duration::from_secs(5));
        assert_eq!(c.database_url(None).unwrap(), "postgres://env/db");
    }

    #[test]
    fn errors_name_the_key() {
        // An unknown key is named in full, typo included, so the user sees exactly what to fix.
        let e = load("services: {analyzer: {concurency: 2}}", &[]).unwrap_err();
        assert_eq!(e.key, "services.analyzer.concurency");
        assert!(e.message.contains("concurency"), "{e}");
        let e = load("services: {analyzer: {lease_ttl: soon}}", &[]).unwrap_err();
        assert_eq!(e.key, "services.analyzer.lease_ttl");
        let e = load("", &[("FATHOM_SERVICES_ANALYZER_CONCURRENCY", "many")]).unwrap_err();
        assert_eq!(e.key, "services.analyzer.concurrency");
        assert!(
            e.message.contains("FATHOM_SERVICES_ANALYZER_CONCURRENCY"),
            "{e}"
        );
        let e = load("services: {analyzer: {concurrency: 0}}", &[]).unwrap_err();
        assert_eq!(e.key, "services.analyzer.concurrency");
        let e = load("metrics: {address: nowhere}", &[]).unwrap_err();
        assert_eq!(e.key, "metrics.address");
        let e = load("[1, 2]", &[]).unwrap_err();
        assert_eq!(e.key, "test.yaml");
        let e = load("registry: {credentials: [{registry: r, username: u}]}", &[]).unwrap_err();
        assert_eq!(e.key, "registry.credentials[0]");
    }

    #[test]
    fn missing_database_url_is_named() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.database_url(None).unwrap_err().key, "database.url");
        assert_eq!(
            c.database_url(Some("postgres://d".into())).unwrap(),
            "postgres://d"
        );
    }
}
