//! What each registry asked for (`WWW-Authenticate`), learned once per process, and bearer tokens cached
//! per (registry, scope) until shortly before they expire, fetched once even when many requests need one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// How a registry wants to be authenticated, from its 401 challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostAuth {
    /// `Basic realm=...`: send the credentials with every request.
    Basic,
    /// `Bearer realm=...,service=...`: trade the credentials (or nothing) for a token per scope.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (`Bearer realm="https://auth",service="reg",scope="repository:a:pull"`).
pub(crate) fn parse_challenge(header: &str) -> Option<HostAuth> {
    let header = header.trim();
    let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(HostAuth::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(params);
    let realm = params.get("realm")?.clone();
    Some(HostAuth::Bearer {
        realm,
        service: params.get("service").cloned(),
    })
}

/// `key="quoted, with commas",key2=token` → map with lowercase keys.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = text.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let mut value = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value.push_str(rest[..end].trim());
            rest = &rest[end..];
        }
        out.insert(key, value);
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// A bearer token and when to stop using it.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) value: String,
    valid_until: Instant,
}

impl Token {
    pub(crate) fn is_fresh(&self) -> bool {
        Instant::now() < self.valid_until
    }
}

/// The token service's answer (distribution's token spec; `access_token` is the OAuth2 spelling).
#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Reads a token response. Without `expires_in` the spec says 60 s; a tenth of the lifetime is kept in
/// reserve so a token never expires between the check and the registry reading it.
pub(crate) fn parse_token(body: &[u8]) -> Result<Token, String> {
    let answer: TokenResponse =
        serde_json::from_slice(body).map_err(|e| format!("token response: {e}"))?;
    let value = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or("token response has no token")?;
    let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60));
    Ok(Token {
        value,
        valid_until: Instant::now() + lifetime.mul_f64(0.9),
    })
}

/// One slot per (registry, scope); its async lock makes concurrent requests wait for one token fetch.
pub(crate) type TokenSlot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// Per-process knowledge about registries: the challenge each answered with, and tokens.
#[derive(Default)]
pub(crate) struct AuthCache {
    hosts: Mutex<HashMap<String, HostAuth>>,
    tokens: Mutex<HashMap<(String, String), TokenSlot>>,
}

impl AuthCache {
    /// What `host` asked for; `None` while it has never refused an anonymous request.
    pub(crate) fn host(&self, host: &str) -> Option<HostAuth> {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.get(host).cloned()
    }

    pub(crate) fn learn(&self, host: &str, auth: HostAuth) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.insert(host.to_string(), auth);
    }

    pub(crate) fn slot(&self, host: &str, scope: &str) -> TokenSlot {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            tokens
                .entry((host.to_string(), scope.to_string()))
                .or_default(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_challenges() {
        let got = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            got,
            Some(HostAuth::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=http://x/t"#),
            Some(HostAuth::Bearer {
                realm: "http://x/t".into(),
                service: None
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="fathom-test""#),
            Some(HostAuth::Basic)
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn reads_tokens() {
        let t = parse_token(br#"{"access_token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.value, "abc");
        assert!(t.is_fresh());
        assert!(parse_token(br#"{"token":""}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }
}
