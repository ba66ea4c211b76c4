//! fathom's registry HTTP layer: one pooled client (keep-alive, HTTP/2 where TLS offers it), requests sent
//! optimistically and authenticated only after a 401 challenge, what was learned kept for the process,
//! and failed responses returned whole (status, headers, body) so callers can classify them and honour
//! `Retry-After`.

use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};

use super::auth::Credentials;
use super::reference::ImageRef;
use super::requests::{self, RequestKind};
use super::token::{self, AuthCache, HostAuth};

/// Error bodies are read up to this size (registries send a small JSON envelope).
const MAX_ERROR_BODY: usize = 16 << 10;

/// A request that did not produce a usable response.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// No response: connect, TLS, timeout, reset.
    Transport { host: String, error: reqwest::Error },
    /// The registry (or its token service) answered with a failure status.
    Status {
        host: String,
        url: String,
        status: u16,
        headers: HeaderMap,
        body: String,
    },
    /// The token service answered 200 with something that is not a token.
    BadToken { host: String, message: String },
}

/// The HTTP client every image of an analyzer shares, with what it learned about each registry.
pub(crate) struct Http {
    client: reqwest::Client,
    insecure: Vec<String>,
    credentials: Credentials,
    auth: AuthCache,
}

impl Http {
    pub(crate) fn new(insecure: Vec<String>, credentials: Credentials, timeout: Duration) -> Http {
        let build = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .build();
        let client = match build {
            Ok(c) => c,
            Err(e) => {
                // Only a broken TLS backend fails here; the default client reports the same later.
                tracing::warn!(error = %e, "registry client options refused; using defaults");
                reqwest::Client::new()
            }
        };
        Http {
            client,
            insecure,
            credentials,
            auth: AuthCache::default(),
        }
    }

    pub(crate) fn is_insecure(&self, host: &str) -> bool {
        self.insecure.iter().any(|h| h == host)
    }

    /// `https://HOST` (or `http://` for registries allowed plain HTTP); Docker Hub's API lives elsewhere.
    pub(crate) fn base(&self, host: &str) -> String {
        let scheme = if self.is_insecure(host) {
            "http"
        } else {
            "https"
        };
        let api_host = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        format!("{scheme}://{api_host}")
    }

    /// `GET /v2/REPO/PATH` (`manifests/TAG`, `blobs/DIGEST`). Anonymous unless the registry has asked for
    /// authentication before; on a 401 challenge, authenticates (once) and repeats the request.
    pub(crate) async fn get(
        &self,
        image: &ImageRef,
        path: &str,
        accept: Option<&str>,
        kind: RequestKind,
    ) -> Result<reqwest::Response, HttpError> {
        self.send(reqwest::Method::GET, image, path, accept, kind)
            .await
    }

    /// [`Http::get`] with another method (`HEAD` for a watcher's digest lookups).
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        image: &ImageRef,
        path: &str,
        accept: Option<&str>,
        kind: RequestKind,
    ) -> Result<reqwest::Response, HttpError> {
        let host = image.registry.as_str();
        let url = format!("{}/v2/{}/{path}", self.base(host), image.repository);
        let scope = format!("repository:{}:pull", image.repository);
        let mut authorization = self.authorization(host, &scope, None).await?;
        let mut challenged = false;
        loop {
            let mut request = self.client.request(method.clone(), &url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            requests::record(host, kind);
            let response = request.send().await.map_err(|error| HttpError::Transport {
                host: host.to_string(),
                error,
            })?;
            if response.status().is_success() {
                return Ok(response);
            }
            if response.status().as_u16() == 401 && !challenged {
                challenged = true;
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(token::parse_challenge);
                let usable = match &challenge {
                    Some(HostAuth::Basic) => self.credentials.for_host(host).is_some(),
                    Some(HostAuth::Bearer { .. }) => true,
                    None => false,
                };
                if let (true, Some(challenge)) = (usable, challenge) {
                    self.auth.learn(host, challenge);
                    // A refused token is stale (expired early, revoked): fetch a new one.
                    let stale = authorization.take();
                    authorization = self.authorization(host, &scope, stale.as_deref()).await?;
                    continue;
                }
            }
            return Err(failure(host, response).await);
        }
    }

    /// The `Authorization` value for a request to `host` in `scope`, from what the host asked for.
    async fn authorization(
        &self,
        host: &str,
        scope: &str,
        stale: Option<&str>,
    ) -> Result<Option<String>, HttpError> {
        let secret = self.credentials.for_host(host);
        let (realm, service) = match self.auth.host(host) {
            None => return Ok(None),
            Some(HostAuth::Basic) => {
                return Ok(secret.map(|s| basic(&s.username, &s.password)));
            }
            Some(HostAuth::Bearer { realm, service }) => (realm, service),
        };
        let slot = self.auth.slot(host, scope);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh()) {
            let value = format!("Bearer {}", token.value);
            if stale != Some(value.as_str()) {
                return Ok(Some(value));
            }
        }
        let mut query = vec![("scope", scope)];
        if let Some(service) = service.as_deref() {
            query.push(("service", service));
        }
        let mut request = self.client.get(&realm).query(&query);
        if let Some(s) = secret {
            request = request.header(AUTHORIZATION, basic(&s.username, &s.password));
        }
        requests::record(host, RequestKind::Token);
        let response = request.send().await.map_err(|error| HttpError::Transport {
            host: host.to_string(),
            error,
        })?;
        if !response.status().is_success() {
            return Err(failure(host, response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| HttpError::Transport {
                host: host.to_string(),
                error,
            })?;
        let token = token::parse_token(&body).map_err(|message| HttpError::BadToken {
            host: host.to_string(),
            message,
        })?;
        let value = format!("Bearer {}", token.value);
        *cached = Some(token);
        Ok(Some(value))
    }
}

fn basic(username: &str, password: &str) -> String {
    let pair = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// Keeps what the caller needs to classify a failed response: status, headers and the start of the body.
async fn failure(host: &str, response: reqwest::Response) -> HttpError {
    let status = response.status().as_u16();
    let url = response.url().to_string();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    let mut response = response;
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    HttpError::Status {
        host: host.to_string(),
        url,
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}
