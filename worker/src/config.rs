//! The worker's sections of the configuration file: `services.analyzer` (the job loop and the engine's
//! knobs) and `registry` (how images are pulled), with their defaults and checks. The binary composes
//! them into the one file with the other roles' sections.

use std::time::Duration;

use fathom_analyzer::source::auth::Credentials;
use fathom_analyzer::source::registry::RegistryOptions;
use fathom_analyzer::source::Platform;
use fathom_analyzer::AnalyzerOptions;
use fathom_config::ConfigError;
use serde::{Deserialize, Serialize};

/// Keys only a file can set: lists of mappings.
pub const FILE_ONLY: &[&str] = &[
    "registry.credentials",
    "services.analyzer.secrets.rules",
    "services.analyzer.content_search",
];

/// Conventional variable names accepted besides the derived `FATHOM_<KEY>` ones: `fathom scan` has always
/// read `FATHOM_INSECURE_REGISTRIES`, and every command that pulls images honours it.
pub const ENV_ALIASES: &[(&str, &str)] = &[("registry.insecure", "FATHOM_INSECURE_REGISTRIES")];

/// `services.analyzer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyzerServiceConfig {
    /// Whether `fathom run` starts it.
    pub enabled: bool,
    /// Jobs in flight per process.
    pub concurrency: usize,
    /// Lease length; heartbeats run every third of it.
    #[serde(with = "fathom_config::duration")]
    pub lease_ttl: Duration,
    /// On SIGTERM, how long in-flight jobs may take to finish before they are released.
    #[serde(with = "fathom_config::duration")]
    pub drain_timeout: Duration,
    /// Longest sleep of an idle worker between claims when no notification arrives.
    #[serde(with = "fathom_config::duration")]
    pub poll_interval: Duration,
    /// How often (jittered) this worker rescues expired leases of dead workers.
    #[serde(with = "fathom_config::duration")]
    pub rescue_interval: Duration,
    /// First retry delay of a retryable failure (doubles per attempt).
    #[serde(with = "fathom_config::duration")]
    pub retry_backoff_base: Duration,
    /// Longest retry delay.
    #[serde(with = "fathom_config::duration")]
    pub retry_backoff_cap: Duration,
    /// Time budget of a job: transient failures retry until this long after its first attempt (or its
    /// last requeue), then it goes `dead`; `max_attempts` caps it too.
    #[serde(with = "fathom_config::duration")]
    pub retry_deadline: Duration,
    /// Layers of one image fetched and analyzed at once (default: CPUs).
    pub layers_in_flight: Option<usize>,
    /// Platform picked from multi-arch images (`os/arch[/variant]`).
    pub platform: String,
    /// The content pass (file inventory digests, secrets, copyright licenses); off: packages only.
    pub content: bool,
    /// Regular files up to this size get a sha256 in the file inventory (0: none).
    pub file_digest_max_bytes: u64,
    /// Read Debian copyright files for deb package licenses.
    pub licenses: bool,
    /// Secret search.
    pub secrets: crate::content_config::SecretsConfig,
    /// Content search: named regexes over file contents whose matches the `files.content_regex_match`
    /// policy gate reads (none by default: content search does not run).
    pub content_search: Vec<fathom_analyzer::content::ContentRule>,
    /// Files whose contents are kept (anchore's `retrieve_files`).
    pub retrieve_files: crate::content_config::RetrieveFilesConfig,
    /// Malware scanning with ClamAV's clamd (off by default).
    pub malware: crate::content_config::MalwareConfig,
}

impl Default for AnalyzerServiceConfig {
    fn default() -> Self {
        AnalyzerServiceConfig {
            enabled: false,
            concurrency: 2,
            lease_ttl: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(25),
            poll_interval: Duration::from_secs(5),
            rescue_interval: Duration::from_secs(10),
            retry_backoff_base: Duration::from_secs(2),
            retry_backoff_cap: Duration::from_secs(600),
            retry_deadline: Duration::from_secs(24 * 3600),
            layers_in_flight: None,
            platform: "linux/amd64".into(),
            content: true,
            file_digest_max_bytes: 1 << 20,
            licenses: true,
            secrets: Default::default(),
            content_search: Vec::new(),
            retrieve_files: Default::default(),
            malware: Default::default(),
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
    #[serde(with = "fathom_config::duration")]
    pub timeout: Duration,
    /// Credentials by registry (in addition to `~/.docker/config.json`).
    pub credentials: Vec<RegistryCredential>,
    /// Jobs talking to one registry host at once, fleet-wide (each worker takes an even share, at least
    /// one); 0 for no limit.
    pub max_concurrent_per_host: usize,
    /// Consecutive transient failures at a registry that open its breaker (0: no breaker).
    pub breaker_failures: u32,
    /// While a registry's breaker is open, time between probes.
    #[serde(with = "fathom_config::duration")]
    pub breaker_probe_interval: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure: Vec::new(),
            timeout: Duration::from_secs(30),
            credentials: Vec::new(),
            max_concurrent_per_host: 32,
            breaker_failures: 5,
            breaker_probe_interval: Duration::from_secs(5),
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

impl AnalyzerServiceConfig {
    /// Checks ranges and formats serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1024).contains(&self.concurrency) {
            return Err(ConfigError::new(
                "services.analyzer.concurrency",
                format!("must be between 1 and 1024, got {}", self.concurrency),
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "services.analyzer.lease_ttl",
                "must be at least 1s (heartbeats run every third of it)",
            ));
        }
        for (key, value) in [
            ("services.analyzer.poll_interval", self.poll_interval),
            ("services.analyzer.rescue_interval", self.rescue_interval),
            (
                "services.analyzer.retry_backoff_base",
                self.retry_backoff_base,
            ),
            ("services.analyzer.retry_deadline", self.retry_deadline),
        ] {
            if value.is_zero() {
                return Err(ConfigError::new(key, "must be greater than 0"));
            }
        }
        if self.retry_backoff_cap < self.retry_backoff_base {
            return Err(ConfigError::new(
                "services.analyzer.retry_backoff_cap",
                "must not be shorter than services.analyzer.retry_backoff_base",
            ));
        }
        if self.layers_in_flight == Some(0) {
            return Err(ConfigError::new(
                "services.analyzer.layers_in_flight",
                "must be at least 1",
            ));
        }
        self.platform
            .parse::<Platform>()
            .map_err(|e| ConfigError::new("services.analyzer.platform", e.to_string()))?;
        crate::content_config::content_options(self.content_keys())?;
        Ok(())
    }

    /// The content pass's keys.
    pub fn content_keys(&self) -> crate::content_config::ContentKeys<'_> {
        crate::content_config::ContentKeys {
            content: self.content,
            file_digest_max_bytes: self.file_digest_max_bytes,
            licenses: self.licenses,
            secrets: &self.secrets,
            content_search: &self.content_search,
            retrieve_files: &self.retrieve_files,
            malware: &self.malware,
        }
    }
}

impl RegistryConfig {
    /// Checks the credentials entries, naming the one at fault, and the breaker's probe interval.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.breaker_probe_interval.is_zero() {
            return Err(ConfigError::new(
                "registry.breaker_probe_interval",
                "must be greater than 0",
            ));
        }
        for (i, c) in self.credentials.iter().enumerate() {
            if c.password.is_some() == c.password_env.is_some() {
                return Err(ConfigError::new(
                    format!("registry.credentials[{i}]"),
                    "give exactly one of password and password_env",
                ));
            }
        }
        Ok(())
    }
}

/// The worker's registry guards: the breaker (its probe may take as long as a registry request) and the
/// per-host limit.
pub fn breaker_config(registry: &RegistryConfig) -> crate::job::breaker::BreakerConfig {
    crate::job::breaker::BreakerConfig {
        failures: registry.breaker_failures,
        probe_interval: registry.breaker_probe_interval,
        probe_timeout: registry.timeout.max(registry.breaker_probe_interval),
    }
}

/// Analyzer options: platform, registries (credentials from `~/.docker/config.json`, the
/// `FATHOM_REGISTRY_USERNAME`/`_PASSWORD` pair, and `registry.credentials`), layer parallelism.
pub fn analyzer_options(
    analyzer: &AnalyzerServiceConfig,
    registry: &RegistryConfig,
) -> Result<AnalyzerOptions, ConfigError> {
    let mut credentials =
        Credentials::from_env().map_err(|m| ConfigError::new("registry.credentials", m))?;
    for (i, c) in registry.credentials.iter().enumerate() {
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
    let mut options = AnalyzerOptions {
        platform: analyzer
            .platform
            .parse()
            .map_err(|e: fathom_analyzer::AnalyzeError| {
                ConfigError::new("services.analyzer.platform", e.to_string())
            })?,
        registry: RegistryOptions {
            insecure: registry.insecure.clone(),
            credentials,
            timeout: registry.timeout,
        },
        content: crate::content_config::content_options(analyzer.content_keys())?,
        ..Default::default()
    };
    if let Some(n) = analyzer.layers_in_flight {
        options.layers_in_flight = n;
    }
    Ok(options)
}
