//! A counting HTTP proxy in front of the real test registry: adds a fixed delay to every request (a
//! registry in another zone), counts requests by kind, and optionally guards the registry with bearer
//! tokens it issues itself from `/token` (the distribution token flow), so tests and the bench can see
//! exactly what a scan costs a registry.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Bearer tokens the proxy requires and issues.
#[derive(Debug, Clone, Copy)]
pub struct BearerAuth {
    /// `expires_in` of issued tokens; the proxy refuses a token once it is this old.
    pub expires_in: Duration,
}

/// A running proxy.
pub struct Proxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    delay: Duration,
    bearer: Option<BearerAuth>,
    addr: String,
    counts: Mutex<BTreeMap<&'static str, usize>>,
    /// Issued token → (scope, issued at).
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    next_token: AtomicU64,
    /// The next registry request is answered with this status and `Retry-After` value.
    refuse_next: Mutex<Option<(u16, String)>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`) on the current runtime.
    pub async fn start(upstream: &str, delay: Duration, bearer: Option<BearerAuth>) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            delay,
            bearer,
            addr: addr.to_string(),
            counts: Mutex::default(),
            tokens: Mutex::default(),
            next_token: AtomicU64::new(1),
            refuse_next: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy {
            addr: addr.to_string(),
            shared,
            task,
        }
    }

    /// Requests so far by kind: `manifest`, `blob`, `token`, `ping`, `other`, and `denied` (answered 401).
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.shared.counts.lock().unwrap().clone()
    }

    /// Every request so far (denied ones included).
    pub fn total(&self) -> usize {
        self.counts()
            .iter()
            .filter(|(k, _)| **k != "denied")
            .map(|(_, n)| n)
            .sum()
    }

    /// Answers the next registry request with `status` and a `Retry-After: retry_after` header.
    pub fn refuse_next(&self, status: u16, retry_after: &str) {
        *self.shared.refuse_next.lock().unwrap() = Some((status, retry_after.to_string()));
    }

    /// Forgets every token issued so far (a token service restarted with a new key).
    pub fn revoke_tokens(&self) {
        self.shared.tokens.lock().unwrap().clear();
    }

    /// Forgets the counts.
    pub fn reset(&self) {
        self.shared.counts.lock().unwrap().clear();
    }
}

fn kind(path: &str) -> &'static str {
    if path.starts_with("/token") {
        "token"
    } else if path == "/v2/" || path == "/v2" {
        "ping"
    } else if path.contains("/manifests/") {
        "manifest"
    } else if path.contains("/blobs/") {
        "blob"
    } else {
        "other"
    }
}

/// `/v2/REPO/manifests/X` → `REPO`.
fn repository(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    let end = rest.find("/manifests/").or_else(|| rest.find("/blobs/"))?;
    Some(&rest[..end])
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    tokio::time::sleep(shared.delay).await;
    let kind = kind(&path);
    *shared.counts.lock().unwrap().entry(kind).or_default() += 1;
    if kind == "token" {
        return issue_token(&shared, req.uri().query().unwrap_or_default());
    }
    if let Some((status, retry_after)) = shared.refuse_next.lock().unwrap().take() {
        let body = if status == 429 {
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#
        } else {
            r#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#
        };
        let status = StatusCode::from_u16(status).unwrap();
        return (status, [("retry-after", retry_after)], body).into_response();
    }
    if let Some(bearer) = shared.bearer {
        if let Some(denied) = check_token(&shared, bearer, &req, &path) {
            *shared.counts.lock().unwrap().entry("denied").or_default() += 1;
            return denied;
        }
    }
    forward(&shared, req).await
}

fn issue_token(shared: &Shared, query: &str) -> Response {
    let scope = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("scope="))
        .map(|s| s.replace("%3A", ":").replace("%2F", "/"))
        .unwrap_or_default();
    let n = shared.next_token.fetch_add(1, Ordering::Relaxed);
    let token = format!("tok{n}");
    shared
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), (scope, Instant::now()));
    let expires = shared.bearer.map_or(60, |b| b.expires_in.as_secs().max(1));
    let body = format!(r#"{{"token":"{token}","expires_in":{expires}}}"#);
    ([("content-type", "application/json")], body).into_response()
}

/// `None` when the request carries a live token for its repository; else the 401 challenge.
fn check_token(shared: &Shared, bearer: BearerAuth, req: &Request, path: &str) -> Option<Response> {
    let scope = repository(path).map(|r| format!("repository:{r}:pull"));
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid =
        given.is_some_and(|t| {
            shared.tokens.lock().unwrap().get(t).is_some_and(|(s, at)| {
                Some(s) == scope.as_ref() && at.elapsed() < bearer.expires_in
            })
        });
    if valid {
        return None;
    }
    let mut challenge = format!(
        r#"Bearer realm="http://{}/token",service="fathom-test""#,
        shared.addr
    );
    if let Some(scope) = scope {
        challenge.push_str(&format!(r#",scope="{scope}""#));
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", challenge)],
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        )
            .into_response(),
    )
}

async fn forward(shared: &Shared, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let url = format!("http://{}{path}", shared.upstream);
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut upstream = shared.client.request(method, url);
    for (name, value) in req.headers() {
        if name != "host" && name != "authorization" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let answer = match upstream.send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut builder = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|e| (StatusCode::BAD_GATEWAY, e.to_string()).into_response())
}
