//! One endpoint's HTTP side: a client that never follows redirects, verifies TLS against the web's
//! roots and gives up after the endpoint's timeout; each request signed with the endpoint's secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fathom_config::ConfigError;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};

use crate::config::EndpointConfig;
use crate::envelope::{CloudEvent, CONTENT_TYPE as CE_CONTENT_TYPE};
use crate::signature;

/// A configured endpoint ready to send: its client, URL, secret and extra headers.
pub struct Target {
    /// The endpoint's configuration.
    pub config: EndpointConfig,
    url: reqwest::Url,
    secret: Vec<u8>,
    headers: HeaderMap,
    client: reqwest::Client,
}

impl std::fmt::Debug for Target {
    // By hand: the secret and the header values must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A 2xx.
    Delivered {
        /// The status.
        status: u16,
    },
    /// Anything else; `endpoint_down` when the failure says the endpoint as a whole is not taking
    /// events (no answer, timeout, 5xx, 408, 429, a redirect) rather than refusing this one event.
    Failed {
        /// The status, when there was an answer.
        status: Option<u16>,
        /// What happened, for the delivery's `last_error` (no URL credentials, no header values).
        error: String,
        /// Whether the endpoint as a whole looks down.
        endpoint_down: bool,
    },
}

/// The answer to a test event: status (or the failure) and the start of the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The outcome, as for a delivery.
    pub outcome: Outcome,
    /// The first 1 KiB of the answer's body (lossy UTF-8), when there was one.
    pub body: String,
    /// How long the request took.
    pub elapsed: Duration,
}

impl Target {
    /// The target of endpoint `config` (at key `at`), its secret looked up with `env`.
    pub fn new(
        config: &EndpointConfig,
        at: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Target, ConfigError> {
        let secret = config.secret(at, env)?;
        let url = reqwest::Url::parse(&config.url)
            .map_err(|e| ConfigError::new(format!("{at}.url"), format!("not a URL ({e})")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) else {
                return Err(ConfigError::new(
                    format!("{at}.headers"),
                    format!("{name:?}: not a valid header"),
                ));
            };
            let mut v = v;
            v.set_sensitive(true);
            headers.insert(n, v);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("fathom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ConfigError::new(at.to_string(), format!("cannot build its HTTP client: {e}"))
            })?;
        Ok(Target {
            config: config.clone(),
            url,
            secret,
            headers,
            client,
        })
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// POSTs `event`, signed now; the body of the answer is read up to 1 KiB.
    pub async fn send(&self, event: &CloudEvent) -> Answer {
        let started = std::time::Instant::now();
        let body = event.body();
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sig = signature::sign(&self.secret, t, &body);
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, CE_CONTENT_TYPE)
            .header(signature::HEADER, sig)
            .body(body);
        let (outcome, text) = match request.send().await {
            Err(e) => (
                Outcome::Failed {
                    status: None,
                    error: describe(&e, self.config.timeout),
                    endpoint_down: true,
                },
                String::new(),
            ),
            Ok(response) => {
                let status = response.status();
                let text = excerpt(response).await;
                let code = status.as_u16();
                let outcome = if status.is_success() {
                    Outcome::Delivered { status: code }
                } else if status.is_redirection() {
                    Outcome::Failed {
                        status: Some(code),
                        error: format!(
                            "HTTP {code}: a redirect, not followed (point the endpoint's url at where it redirects)"
                        ),
                        endpoint_down: true,
                    }
                } else {
                    Outcome::Failed {
                        status: Some(code),
                        error: format!("HTTP {code}"),
                        endpoint_down: status.is_server_error() || code == 408 || code == 429,
                    }
                };
                (outcome, text)
            }
        };
        Answer {
            outcome,
            body: text,
            elapsed: started.elapsed(),
        }
    }
}

/// At most 1 KiB of a response body (an endpoint may answer with anything, of any length).
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut out = Vec::new();
    while out.len() < 1024 {
        match response.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk),
            _ => break,
        }
    }
    out.truncate(1024);
    String::from_utf8_lossy(&out).into_owned()
}

/// A transport error as a line: its kind and causes, without the URL (which may carry a token).
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {}", humantime::format_duration(timeout));
    }
    let kind = if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    // The innermost causes say why (refused, certificate unknown); the outer ones repeat them.
    causes.dedup();
    let why = causes
        .last()
        .cloned()
        .unwrap_or_else(|| e.without_url_string());
    format!("{kind}: {why}")
}

trait WithoutUrl {
    fn without_url_string(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_string(&self) -> String {
        // `without_url` consumes the error; render a copy of its text with the URL stripped instead.
        let text = self.to_string();
        match self.url() {
            Some(url) => text.replace(url.as_str(), "<endpoint url>"),
            None => text,
        }
    }
}

/// Every endpoint of `config` ready to send, secrets looked up with `env`: an endpoint whose secret is
/// missing stops the start naming its key and variable.
pub fn targets(
    config: &crate::config::NotificationsConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Target>, ConfigError> {
    config
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| Target::new(e, &format!("services.notifications.endpoints[{i}]"), &env))
        .collect()
}
