//! Failed registry requests classified into [`AnalyzeError`]s: what is missing, refused, rate-limited or
//! unreachable, with the registry's `Retry-After` kept for the job queue.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use super::http::HttpError;
use crate::error::AnalyzeError;

/// What a failing request was after, to classify a 404.
pub(crate) enum Target<'a> {
    Manifest(&'a str),
    Blob(&'a str, &'a str),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<EnvelopeError>,
}

#[derive(Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// The first error code and a readable message from a distribution error envelope (or the raw body).
fn envelope(status: u16, body: &str) -> (String, String) {
    match serde_json::from_str::<Envelope>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let code = e.errors[0].code.to_ascii_uppercase();
            let message = e
                .errors
                .iter()
                .map(|e| format!("{}: {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ");
            (code, message)
        }
        _ => {
            let text: String = body.trim().chars().take(200).collect();
            (String::new(), format!("HTTP {status}: {text}"))
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

pub(crate) fn classify(err: HttpError, insecure: bool, target: Target<'_>) -> AnalyzeError {
    let not_found = |message: String| match target {
        Target::Manifest(r) => AnalyzeError::ManifestUnknown {
            reference: r.to_string(),
            message,
        },
        Target::Blob(what, digest) => AnalyzeError::BlobMissing {
            what: what.to_string(),
            digest: digest.to_string(),
        },
    };
    match err {
        HttpError::Transport { host, error } => transport(&error, &host, insecure),
        HttpError::BadToken { host, message } => AnalyzeError::Unauthorized {
            registry: host,
            message,
        },
        HttpError::Status {
            host,
            url,
            status,
            headers,
            body,
        } => {
            let (code, message) = envelope(status, &body);
            let retry_after = retry_after(&headers);
            match (status, code.as_str()) {
                // The status too: "401" and "403" are what an operator searches for.
                (401 | 403, _) | (_, "UNAUTHORIZED" | "DENIED") => AnalyzeError::Unauthorized {
                    registry: host,
                    message: if message.starts_with("HTTP ") {
                        message
                    } else {
                        format!("HTTP {status}: {message}")
                    },
                },
                (404, _)
                | (_, "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "NOT_FOUND") => {
                    not_found(message)
                }
                (_, "TOOMANYREQUESTS") => AnalyzeError::RegistryStatus {
                    status: 429,
                    url,
                    message,
                    retry_after,
                },
                _ => AnalyzeError::RegistryStatus {
                    status,
                    url,
                    message,
                    retry_after,
                },
            }
        }
    }
}

/// No response: a timeout, a host name that does not resolve, or a connection that failed (with a hint
/// when plain HTTP may be the cause).
pub(crate) fn transport(e: &reqwest::Error, registry: &str, insecure: bool) -> AnalyzeError {
    let mut message = error_chain(e);
    if e.is_timeout() {
        return AnalyzeError::Timeout {
            registry: registry.to_string(),
            message,
        };
    }
    // Plain HTTP cannot help a name that does not resolve: say what failed, not what to allow.
    if let Some(cause) = dns_failure(e) {
        let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
        return AnalyzeError::Connect {
            registry: registry.to_string(),
            message: format!("name resolution failed for host {host:?}: {cause}"),
        };
    }
    if !insecure {
        message.push_str(&format!(
            " (if {registry} serves plain HTTP, allow it with --insecure-registry {registry})"
        ));
    }
    AnalyzeError::Connect {
        registry: registry.to_string(),
        message,
    }
}

/// The resolver's own error when `e` is a DNS failure (hyper-util's connector wraps it in an error
/// that reads `dns error`), else none.
fn dns_failure(e: &dyn std::error::Error) -> Option<String> {
    let mut source = e.source();
    while let Some(s) = source {
        if s.to_string() == "dns error" {
            return Some(s.source().map_or_else(|| "dns error".into(), error_chain));
        }
        source = s.source();
    }
    None
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, headers: &[(&str, &str)], body: &str) -> HttpError {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        HttpError::Status {
            host: "r.example".into(),
            url: "https://r.example/v2/a/manifests/1".into(),
            status,
            headers: map,
            body: body.into(),
        }
    }

    #[test]
    fn classifies_statuses_and_keeps_retry_after() {
        let m = || Target::Manifest("r.example/a:1");
        let unknown = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no such tag"}]}"#;
        assert_eq!(
            classify(status(404, &[], unknown), false, m()).reason(),
            "manifest_unknown"
        );
        let blob = classify(
            status(404, &[], ""),
            false,
            Target::Blob("layer", "sha256:x"),
        );
        assert_eq!(blob.reason(), "blob_missing");
        assert_eq!(
            classify(status(401, &[], ""), false, m()).reason(),
            "unauthorized"
        );
        let denied = r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#;
        let refused = classify(status(403, &[], denied), false, m());
        assert_eq!(refused.reason(), "unauthorized");
        assert!(!refused.is_retryable());
        assert!(
            refused
                .to_string()
                .contains("HTTP 403: DENIED: requested access to the resource is denied"),
            "{refused}"
        );
        let limited = classify(status(429, &[("retry-after", "3")], ""), false, m());
        assert_eq!(limited.reason(), "rate_limited");
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let busy = classify(status(503, &[("retry-after", &later)], "down"), false, m());
        assert!(busy.is_retryable());
        let wait = busy.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{wait:?}"
        );
        let toomany = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
        assert_eq!(
            classify(status(400, &[], toomany), false, m()).reason(),
            "rate_limited"
        );
    }

    #[tokio::test]
    async fn a_host_that_does_not_resolve_is_named_as_such_not_as_plain_http() {
        // `.invalid` never resolves (RFC 2606), with or without network access.
        let host = "fathom-registry.invalid";
        let err = reqwest::Client::new()
            .get(format!("https://{host}/v2/"))
            .send()
            .await
            .unwrap_err();
        let classified = transport(&err, &format!("{host}:5000"), false);
        let text = classified.to_string();
        assert_eq!(classified.reason(), "connect", "{text}");
        assert!(classified.is_retryable(), "{text}");
        assert!(
            text.contains(&format!("name resolution failed for host \"{host}\"")),
            "{text}"
        );
        assert!(!text.contains("--insecure-registry"), "{text}");
        // A refused connection still gets the plain-HTTP hint.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = reqwest::Client::new()
            .get(format!("https://127.0.0.1:{port}/v2/"))
            .send()
            .await
            .unwrap_err();
        let text = transport(&err, &format!("127.0.0.1:{port}"), false).to_string();
        assert!(text.contains("--insecure-registry"), "{text}");
    }
}
