//! `services.notifications`: where events go (endpoints, file only), how long a delivery is retried, how
//! long the event log is kept, and the dispatcher's pace.

use std::collections::BTreeMap;
use std::time::Duration;

use fathom_config::ConfigError;
use serde::{Deserialize, Serialize};

/// Headers an endpoint's `headers` may not set: the dispatcher writes them, and a receiver must be able to
/// trust them.
const RESERVED_HEADERS: &[&str] = &["content-type", "content-length", "fathom-signature", "host"];

/// `services.notifications`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// Whether the core runs the dispatcher (one core at a time delivers; the event routes answer
    /// either way, and events are written into the outbox whatever this says).
    pub enabled: bool,
    /// CloudEvents `source` of every event this deployment sends (a URI-reference).
    pub source: String,
    /// Receivers (file only: `{name, url, events, secret_env, headers, timeout}`).
    pub endpoints: Vec<EndpointConfig>,
    /// A delivery still failing this long after its event was fanned out (or retried by hand) is `dead`.
    #[serde(with = "fathom_config::duration")]
    pub retry_window: Duration,
    /// Events, and finished (delivered or dead) deliveries, older than this are deleted.
    #[serde(with = "fathom_config::duration")]
    pub retention: Duration,
    /// First retry of a failed delivery after about this long (doubling, jittered).
    #[serde(with = "fathom_config::duration")]
    pub backoff_base: Duration,
    /// Longest wait between two attempts of one delivery.
    #[serde(with = "fathom_config::duration")]
    pub backoff_cap: Duration,
    /// Longest wait between two probes of an endpoint that is down (no answer, 5xx, 408, 429, a
    /// redirect): while it is down one delivery at a time probes it, and the first 2xx releases
    /// everything owed to it at once.
    #[serde(with = "fathom_config::duration")]
    pub probe_interval: Duration,
    /// Deliveries in flight to one endpoint at once (each of a different subject).
    pub concurrency: usize,
    /// The dispatcher wakes on every commit that writes events (LISTEN/NOTIFY) and also polls this often.
    #[serde(with = "fathom_config::duration")]
    pub poll_interval: Duration,
    /// How often events and finished deliveries past `retention` are pruned (0s turns pruning off).
    #[serde(with = "fathom_config::duration")]
    pub prune_interval: Duration,
}

/// One receiver in `services.notifications.endpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Short name (`[A-Za-z0-9_.-]`, unique): the deliveries' `endpoint`, the metrics' label.
    pub name: String,
    /// `http://` or `https://` URL the events are POSTed to. Redirects are not followed.
    pub url: String,
    /// CloudEvents type prefixes this endpoint wants (`dev.fathom.image.`); empty: every event.
    #[serde(default)]
    pub events: Vec<String>,
    /// Environment variable holding the HMAC secret that signs each request (`fathom-signature`).
    pub secret_env: String,
    /// Extra request headers (values are redacted when the configuration is printed).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A request unanswered after this long fails and is retried.
    #[serde(default = "default_timeout", with = "fathom_config::duration")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            enabled: true,
            source: "urn:fathom".into(),
            endpoints: Vec::new(),
            retry_window: Duration::from_secs(24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            probe_interval: Duration::from_secs(5),
            concurrency: 8,
            poll_interval: Duration::from_secs(1),
            prune_interval: Duration::from_secs(600),
        }
    }
}

impl NotificationsConfig {
    /// Checks what serde cannot; every error names its key (`services.notifications.endpoints[1].url`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("services.notifications.{k}");
        if self.source.trim().is_empty() || self.source.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                key("source"),
                "must be a non-empty URI-reference without spaces (e.g. https://fathom.example.com)",
            ));
        }
        for (name, value, min) in [
            ("retry_window", self.retry_window, Duration::from_secs(1)),
            ("retention", self.retention, Duration::from_secs(60)),
            ("backoff_base", self.backoff_base, Duration::from_millis(10)),
            ("backoff_cap", self.backoff_cap, Duration::from_millis(10)),
            (
                "probe_interval",
                self.probe_interval,
                Duration::from_millis(10),
            ),
            (
                "poll_interval",
                self.poll_interval,
                Duration::from_millis(10),
            ),
        ] {
            if value < min {
                return Err(ConfigError::new(
                    key(name),
                    format!("must be at least {}", humantime::format_duration(min)),
                ));
            }
        }
        if self.backoff_cap < self.backoff_base {
            return Err(ConfigError::new(
                key("backoff_cap"),
                "must not be shorter than services.notifications.backoff_base",
            ));
        }
        if self.retention < self.retry_window {
            return Err(ConfigError::new(
                key("retention"),
                "must not be shorter than services.notifications.retry_window (an event still owed would be deleted)",
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(ConfigError::new(
                key("concurrency"),
                format!("must be between 1 and 256, got {}", self.concurrency),
            ));
        }
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            endpoint.validate(&key(&format!("endpoints[{i}]")))?;
            if self.endpoints[..i].iter().any(|e| e.name == endpoint.name) {
                return Err(ConfigError::new(
                    key(&format!("endpoints[{i}].name")),
                    format!(
                        "{:?} is used by an earlier endpoint: names must be unique",
                        endpoint.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The endpoint called `name`.
    pub fn endpoint(&self, name: &str) -> Option<&EndpointConfig> {
        self.endpoints.iter().find(|e| e.name == name)
    }

    /// A copy safe to print: header values hidden (they often carry credentials).
    pub fn redacted(&self) -> NotificationsConfig {
        let mut c = self.clone();
        for endpoint in &mut c.endpoints {
            for value in endpoint.headers.values_mut() {
                *value = "<redacted>".into();
            }
        }
        c
    }
}

impl EndpointConfig {
    /// Checks one endpoint; `at` is its key (`services.notifications.endpoints[0]`).
    fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{at}.{k}");
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(ConfigError::new(
                key("name"),
                format!(
                    "{:?} must be 1-64 characters of A-Z a-z 0-9 _ . -",
                    self.name
                ),
            ));
        }
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| ConfigError::new(key("url"), format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::new(
                key("url"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        if url.password().is_some() {
            return Err(ConfigError::new(
                key("url"),
                "must not carry a password: put credentials in headers (redacted when printed)",
            ));
        }
        for (i, prefix) in self.events.iter().enumerate() {
            if prefix.trim().is_empty() {
                return Err(ConfigError::new(
                    key(&format!("events[{i}]")),
                    "empty: leave events out to receive every event",
                ));
            }
        }
        if self.secret_env.is_empty() {
            return Err(ConfigError::new(
                key("secret_env"),
                "must name the environment variable holding the signing secret",
            ));
        }
        for (name, value) in &self.headers {
            let header =
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    ConfigError::new(
                        key("headers"),
                        format!("{name:?} is not a valid header name"),
                    )
                })?;
            if RESERVED_HEADERS.contains(&header.as_str()) {
                return Err(ConfigError::new(
                    key("headers"),
                    format!("{name:?} is set by fathom and cannot be configured"),
                ));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                // The value is not echoed: it may be a credential.
                return Err(ConfigError::new(
                    key(&format!("headers.{name}")),
                    "not a valid header value (visible ASCII only)",
                ));
            }
        }
        if self.timeout < Duration::from_millis(10) || self.timeout > Duration::from_secs(300) {
            return Err(ConfigError::new(
                key("timeout"),
                "must be between 10ms and 5m",
            ));
        }
        Ok(())
    }

    /// Whether this endpoint wants events of `kind` (one of its prefixes starts it; no prefixes: all).
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|p| kind.starts_with(p.as_str()))
    }

    /// The endpoint's signing secret from its `secret_env`, looked up with `env`; an error names the key
    /// (`at`) and the variable, never a value.
    pub fn secret(
        &self,
        at: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<u8>, ConfigError> {
        match env(&self.secret_env) {
            Some(s) if !s.is_empty() => Ok(s.into_bytes()),
            _ => Err(ConfigError::new(
                format!("{at}.secret_env"),
                format!(
                    "environment variable {} is not set or empty: the endpoint's requests must be signed",
                    self.secret_env
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> EndpointConfig {
        EndpointConfig {
            name: "ops".into(),
            url: "https://hooks.example.com/fathom".into(),
            events: vec!["dev.fathom.image.".into()],
            secret_env: "OPS_SECRET".into(),
            headers: BTreeMap::new(),
            timeout: default_timeout(),
        }
    }

    fn with(f: impl FnOnce(&mut NotificationsConfig)) -> Result<(), ConfigError> {
        let mut c = NotificationsConfig {
            endpoints: vec![endpoint()],
            ..NotificationsConfig::default()
        };
        f(&mut c);
        c.validate()
    }

    #[test]
    fn defaults_and_a_plain_endpoint_are_valid() {
        NotificationsConfig::default().validate().unwrap();
        with(|_| {}).unwrap();
    }

    #[test]
    fn bad_values_name_their_key() {
        type Change = Box<dyn FnOnce(&mut NotificationsConfig)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|c| c.endpoints[0].url = "ftp://x/".into()),
                "services.notifications.endpoints[0].url",
            ),
            (
                Box::new(|c| c.endpoints[0].url = "not a url".into()),
                "services.notifications.endpoints[0].url",
            ),
            (
                Box::new(|c| c.endpoints[0].url = "https://u:pw@h/".into()),
                "services.notifications.endpoints[0].url",
            ),
            (
                Box::new(|c| c.endpoints[0].name = "a b".into()),
                "services.notifications.endpoints[0].name",
            ),
            (
                Box::new(|c| c.endpoints.push(endpoint())),
                "services.notifications.endpoints[1].name",
            ),
            (
                Box::new(|c| c.endpoints[0].secret_env = String::new()),
                "services.notifications.endpoints[0].secret_env",
            ),
            (
                Box::new(|c| c.endpoints[0].events = vec![" ".into()]),
                "services.notifications.endpoints[0].events[0]",
            ),
            (
                Box::new(|c| {
                    c.endpoints[0]
                        .headers
                        .insert("Fathom-Signature".into(), "x".into());
                }),
                "services.notifications.endpoints[0].headers",
            ),
            (
                Box::new(|c| {
                    c.endpoints[0]
                        .headers
                        .insert("authorization".into(), "a\nb".into());
                }),
                "services.notifications.endpoints[0].headers.authorization",
            ),
            (
                Box::new(|c| c.endpoints[0].timeout = Duration::ZERO),
                "services.notifications.endpoints[0].timeout",
            ),
            (
                Box::new(|c| c.retention = Duration::from_secs(3600)),
                "services.notifications.retention",
            ),
            (
                Box::new(|c| c.backoff_cap = Duration::from_millis(100)),
                "services.notifications.backoff_cap",
            ),
            (
                Box::new(|c| c.concurrency = 0),
                "services.notifications.concurrency",
            ),
            (
                Box::new(|c| c.source = " ".into()),
                "services.notifications.source",
            ),
        ];
        for (change, key) in cases {
            assert_eq!(with(change).unwrap_err().key, key);
        }
    }

    #[test]
    fn prefixes_select_events_and_none_selects_all() {
        let e = endpoint();
        assert!(e.wants("dev.fathom.image.analyzed"));
        assert!(!e.wants("dev.fathom.tag.moved"));
        let all = EndpointConfig {
            events: vec![],
            ..endpoint()
        };
        assert!(all.wants("dev.fathom.tag.moved"));
    }

    #[test]
    fn a_missing_secret_names_the_variable_and_header_values_are_redacted() {
        let e = endpoint();
        let err = e
            .secret("services.notifications.endpoints[0]", |_| None)
            .unwrap_err();
        assert_eq!(err.key, "services.notifications.endpoints[0].secret_env");
        assert!(err.message.contains("OPS_SECRET"), "{err}");
        assert_eq!(e.secret("x", |_| Some("s3".into())).unwrap(), b"s3");
        let mut c = NotificationsConfig {
            endpoints: vec![e],
            ..Default::default()
        };
        c.endpoints[0]
            .headers
            .insert("authorization".into(), "Bearer hunter2".into());
        let text = serde_json::to_string(&c.redacted()).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
    }
}
