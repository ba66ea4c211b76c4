//! The service configuration file (YAML, in the spirit of anchore-engine's `config.yaml`), environment
//! overrides (`FATHOM_<SECTION>_<KEY>`), and validation that names the offending key.
//!
//! ```yaml
//! database:
//!   url: postgres://fathom@db/fathom
//!   pool_size: 2          # per process; keep it tiny, a fleet multiplies it
//!   poll_only: false      # true behind PgBouncer in transaction mode (no LISTEN)
//!   idle_timeout: 30s     # unused pooled connections close; an idle worker keeps only its listener
//! services:
//!   analyzer:           # worker/src/config.rs
//!     enabled: false
//!     concurrency: 2
//!     lease_ttl: 30s
//!     drain_timeout: 25s
//!   autoscaler:           # autoscaler/src/config.rs
//!     enabled: false
//!     target: kubernetes  # or local
//!     min_replicas: 0
//!     max_replicas: 20
//!   api:                  # src/core/config.rs
//!     enabled: false
//!     address: 0.0.0.0:8228
//!     tokens: []          # FATHOM_SERVICES_API_TOKENS=tok1,tok2
//!   policy_engine:        # src/core/policy/config.rs
//!     bundle_file: /etc/fathom/bundle.json   # stored and activated at start
//!   catalog:              # catalog/src/config.rs
//!     watch_interval: 5m  # every watched tag HEADed once per interval
//!   notifications:        # notify/src/config.rs
//!     endpoints:          # file only
//!       - { name: ops, url: https://hooks.example.com/fathom, secret_env: OPS_HOOK_SECRET }
//! registry:               # worker/src/config.rs
//!   insecure: [registry.local:5000]   # also FATHOM_INSECURE_REGISTRIES=a:5000,b
//!   credentials:
//!     - { registry: ghcr.io, username: bot, password_env: GHCR_TOKEN }
//!   webhook:              # webhook/src/config.rs
//!     enabled: false      # needs services.api (it is served by the core)
//!     address: 0.0.0.0:8443
//! metrics:
//!   address: 0.0.0.0:9464
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fathom_autoscaler::AutoscalerServiceConfig;
use fathom_config::env::{keys, overlay};
pub use fathom_config::ConfigError;
use fathom_worker::config::{AnalyzerServiceConfig, RegistryConfig, ENV_ALIASES};
use serde::{Deserialize, Serialize};

use crate::core::config::ApiServiceConfig;

/// Keys only the file can set: lists of mappings, whose empty defaults cannot show that they are not
/// lists of strings.
pub const FILE_ONLY: &[&str] = &[
    "registry.credentials",
    "services.webhook.selectors",
    "services.analyzer.secrets.rules",
    "services.analyzer.content_search",
    "services.notifications.endpoints",
];

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
    /// A pooled connection unused this long is closed (queue and store pools), and an idle worker
    /// whose next poll is further away than this closes them right after an empty claim. Claims and
    /// rescues run on the listening connection, so an idle worker holds only that; a woken one claims
    /// at once and its pools reconnect for the job's own statements.
    #[serde(with = "fathom_config::duration")]
    pub idle_timeout: Duration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            pool_size: 2,
            poll_only: false,
            idle_timeout: fathom_queue::IDLE_TIMEOUT,
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
    /// Vulnerability feeds (OSV): where from, which ecosystems, how often the core syncs.
    pub feeds: fathom_vulns::VulnsConfig,
    /// The Kubernetes admission webhook, served by the core (webhook/src/config.rs).
    pub webhook: fathom_webhook::WebhookConfig,
    /// Policy checks: enabled, the bundle to activate at start, the evaluation cache.
    pub policy_engine: crate::core::policy::config::PolicyEngineConfig,
    /// The catalog's watches: intervals, the repository cap, the per-host rate (catalog/src/config.rs).
    pub catalog: fathom_catalog::CatalogConfig,
    /// Notifications: endpoints (file only), retry window, retention (notify/src/config.rs).
    pub notifications: fathom_notify::NotificationsConfig,
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
        let mut root = fathom_config::parse_yaml(text, origin)?;
        let keys = keys(&FathomConfig::default(), FILE_ONLY)?;
        let from_env = overlay(&mut root, &keys, ENV_ALIASES, env)?;
        let config: FathomConfig = fathom_config::deserialize(root, origin, &from_env)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and formats serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.services.analyzer.validate()?;
        self.services.autoscaler.validate()?;
        self.services.api.validate()?;
        self.services.policy_engine.validate()?;
        self.services.catalog.validate()?;
        self.services.notifications.validate()?;
        self.services
            .feeds
            .validate("services.feeds")
            .map_err(|e| match e {
                fathom_vulns::Error::Config { key, message } => ConfigError::new(key, message),
                other => ConfigError::new("services.feeds", other.to_string()),
            })?;
        match self.services.webhook.validate() {
            Ok(_) => {}
            Err(fathom_webhook::Error::Config(e)) => return Err(e),
            Err(other) => return Err(ConfigError::new("services.webhook", other.to_string())),
        }
        if self.database.pool_size == 0 {
            return Err(ConfigError::new("database.pool_size", "must be at least 1"));
        }
        if self.database.idle_timeout < Duration::from_secs(1) {
            return Err(ConfigError::new(
                "database.idle_timeout",
                "must be at least 1s",
            ));
        }
        self.metrics
            .address
            .parse::<SocketAddr>()
            .map_err(|e| ConfigError::new("metrics.address", format!("not HOST:PORT ({e})")))?;
        self.registry.validate()?;
        Ok(())
    }

    /// A copy safe to print: API tokens, registry passwords and the database URL's password replaced.
    pub fn redacted(&self) -> FathomConfig {
        const HIDDEN: &str = "<redacted>";
        let mut c = self.clone();
        for t in &mut c.services.api.tokens {
            *t = HIDDEN.into();
        }
        for cred in &mut c.registry.credentials {
            if cred.password.is_some() {
                cred.password = Some(HIDDEN.into());
            }
        }
        if let Some(url) = &mut c.database.url {
            *url = redact_database_url(url, HIDDEN);
        }
        c.services.notifications = c.services.notifications.redacted();
        c
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
            deadline: self.services.analyzer.retry_deadline,
            idle_timeout: self.database.idle_timeout,
            ..fathom_queue::QueueConfig::default()
        }
    }
}

/// `postgres://user:password@host/db` → `postgres://user:HIDDEN@host/db`. The userinfo ends at the
/// *last* `@` before the query: a password written unencoded may itself contain `@` (or `/`), and all
/// of it is hidden; one that contains `?` or `#` (before any `/`, where no path has begun) is hidden
/// too. A keyword/value string (`host=… password=…`) has its `password=` value hidden, quoted (`'a b'`)
/// or not.
fn redact_database_url(url: &str, hidden: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_keyword_password(url, hidden);
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let at = match rest[..end].rfind('@') {
        Some(at) => at,
        // `u:p?ss@host/db`: the `?` is the password's, not a query's (none starts before the path).
        None if !rest[..end].contains('/') => match rest.rfind('@') {
            Some(at) => at,
            None => return url.to_string(),
        },
        None => return url.to_string(),
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{hidden}@{host}"),
        None => url.to_string(),
    }
}

/// `host=db password='a b' dbname=x` → `host=db password=HIDDEN dbname=x` (libpq's quoting: a value in
/// single quotes runs to the closing unescaped quote).
fn redact_keyword_password(text: &str, hidden: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(' ').unwrap_or(rest.len());
        let word = &rest[..word_end];
        let Some((key, value)) = word.split_once('=') else {
            out.push_str(word);
            rest = &rest[word_end..];
            if let Some(r) = rest.strip_prefix(' ') {
                out.push(' ');
                rest = r;
            }
            continue;
        };
        let value_start = key.len() + 1;
        let value_end = if value.starts_with('\'') {
            // The closing quote: the first `'` after the opening one not escaped by a backslash.
            let bytes = rest.as_bytes();
            let mut i = value_start + 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            (i + 1).min(rest.len())
        } else {
            word_end
        };
        if key.eq_ignore_ascii_case("password") {
            out.push_str(key);
            out.push('=');
            out.push_str(hidden);
        } else {
            out.push_str(&rest[..value_end]);
        }
        rest = &rest[value_end..];
        if let Some(r) = rest.strip_prefix(' ') {
            out.push(' ');
            rest = r;
        }
    }
    out
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
    use std::time::Duration;

    use super::*;

    use super::load_for_test as load;

    #[test]
    fn empty_file_gives_defaults() {
        let c = load("", &[]).unwrap();
        assert_eq!(c, FathomConfig::default());
        assert!(!c.services.analyzer.enabled);
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
    fn insecure_registries_has_its_conventional_name_too() {
        let c = load("", &[("FATHOM_INSECURE_REGISTRIES", "r:5000,q:1")]).unwrap();
        assert_eq!(c.registry.insecure, vec!["r:5000", "q:1"]);
        // The canonical variable wins over the alias.
        let c = load(
            "",
            &[
                ("FATHOM_INSECURE_REGISTRIES", "r:5000"),
                ("FATHOM_REGISTRY_INSECURE", "s:1"),
            ],
        )
        .unwrap();
        assert_eq!(c.registry.insecure, vec!["s:1"]);
    }

    #[test]
    fn every_section_key_is_settable_from_the_environment() {
        let keys: Vec<String> = fathom_config::env::keys(&FathomConfig::default(), FILE_ONLY)
            .unwrap()
            .into_iter()
            .map(|k| k.key)
            .collect();
        for key in [
            "database.url",
            "services.analyzer.poll_interval",
            "services.autoscaler.max_replicas",
            "services.autoscaler.worker_config",
            "services.api.tokens",
            "services.api.job_retention",
            "registry.insecure",
            "metrics.address",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} missing from {keys:?}");
        }
        // Lists of mappings stay file-only.
        assert!(!keys.iter().any(|k| k.starts_with("registry.credentials")));
        assert!(!keys
            .iter()
            .any(|k| k.starts_with("services.webhook.selectors")));
        for key in [
            "services.analyzer.secrets.rules",
            "services.analyzer.content_search",
        ] {
            assert!(
                !keys.iter().any(|k| k == key),
                "{key} is a list of mappings"
            );
        }
        assert!(keys.iter().any(|k| k == "services.webhook.failure_policy"));
    }

    #[test]
    fn redacted_hides_secrets() {
        let c = load(
            "database: {url: 'postgres://u:hunter2@db/x'}\nservices: {api: {tokens: [s3cret-s3cret-s3cret]}}\n\
             registry: {credentials: [{registry: r, username: u, password: pw}]}\n",
            &[],
        )
        .unwrap();
        let text = serde_json::to_string(&c.redacted()).unwrap();
        for secret in ["hunter2", "s3cret-s3cret", "\"pw\""] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("postgres://u:<redacted>@db/x"), "{text}");
    }

    #[test]
    fn a_database_password_with_at_signs_or_slashes_is_hidden_whole() {
        for (url, want) in [
            (
                "postgres://u:p@ss@host/db",
                "postgres://u:<redacted>@host/db",
            ),
            (
                "postgres://u:a@b@c@host:5432/db?sslmode=require",
                "postgres://u:<redacted>@host:5432/db?sslmode=require",
            ),
            (
                "postgres://u:pa/ss@host/db",
                "postgres://u:<redacted>@host/db",
            ),
            ("postgres://u@host/db", "postgres://u@host/db"),
            ("postgres://host/db?user=a@b", "postgres://host/db?user=a@b"),
            (
                "host=db user=u password=p@ss dbname=x",
                "host=db user=u password=<redacted> dbname=x",
            ),
            // A `?` or `#` in an unencoded password does not start a query there.
            (
                "postgres://u:p?ss@host/db",
                "postgres://u:<redacted>@host/db",
            ),
            (
                "postgres://u:p#1@ss@host:5432/db?sslmode=require",
                "postgres://u:<redacted>@host:5432/db?sslmode=require",
            ),
            // A quoted keyword value is hidden whole, spaces and escaped quotes included.
            (
                "host=db password='my s3cret \\' word' dbname=x",
                "host=db password=<redacted> dbname=x",
            ),
        ] {
            assert_eq!(redact_database_url(url, "<redacted>"), want, "{url}");
        }
        let c = load("database: {url: 'postgres://u:p@ss@host/db'}\n", &[]).unwrap();
        let text = serde_json::to_string(&c.redacted()).unwrap();
        assert!(!text.contains("p@ss") && !text.contains(":p@"), "{text}");
        assert!(text.contains("postgres://u:<redacted>@host/db"), "{text}");
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
    fn the_webhook_section_is_read_and_its_errors_name_the_key() {
        let c = load(
            "services:\n  webhook:\n    enabled: true\n    timeout: 2s\n    selectors:\n      \
             - {namespace: '^dev-', mode: breakglass}\n",
            &[("FATHOM_SERVICES_WEBHOOK_FAILURE_POLICY", "deny")],
        )
        .unwrap();
        assert!(c.services.webhook.enabled);
        assert_eq!(c.services.webhook.timeout, Duration::from_secs(2));
        assert_eq!(
            c.services.webhook.failure_policy,
            fathom_webhook::FailurePolicy::Deny
        );
        assert_eq!(c.services.webhook.selectors.len(), 1);
        let e = load("services: {webhook: {timeout: 31s}}", &[]).unwrap_err();
        assert_eq!(e.key, "services.webhook.timeout");
        let e = load("services: {webhook: {timeout: soon}}", &[]).unwrap_err();
        assert_eq!(e.key, "services.webhook.timeout");
        let e = load(
            "services: {webhook: {selectors: [{namespace: '(', mode: policy}]}}",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "services.webhook.selectors[0].namespace");
    }

    #[test]
    fn the_notifications_section_is_read_and_its_errors_name_the_key() {
        let c = load(
            "services:\n  notifications:\n    retry_window: 2h\n    endpoints:\n      - name: ops\n        \
             url: https://hooks.example.com/x\n        events: [dev.fathom.image.]\n        secret_env: OPS\n        \
             headers: {authorization: Bearer hunter2}\n",
            &[("FATHOM_SERVICES_NOTIFICATIONS_SOURCE", "https://fathom.example.com")],
        )
        .unwrap();
        let n = &c.services.notifications;
        assert_eq!(n.retry_window, Duration::from_secs(7200));
        assert_eq!(n.source, "https://fathom.example.com");
        assert_eq!(n.endpoints[0].timeout, Duration::from_secs(10));
        let text = serde_json::to_string(&c.redacted()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        let e = load(
            "services: {notifications: {endpoints: [{name: a, url: 'ftp://x', secret_env: S}]}}",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "services.notifications.endpoints[0].url");
        let e = load(
            "services: {notifications: {endpoints: [{name: a, url: 'http://x'}]}}",
            &[],
        )
        .unwrap_err();
        assert_eq!(e.key, "services.notifications.endpoints[0]");
        let keys: Vec<String> = fathom_config::env::keys(&FathomConfig::default(), FILE_ONLY)
            .unwrap()
            .into_iter()
            .map(|k| k.key)
            .collect();
        assert!(keys.iter().any(|k| k == "services.notifications.retention"));
        assert!(!keys
            .iter()
            .any(|k| k.starts_with("services.notifications.endpoints")));
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

#[cfg(test)]
mod documented;
