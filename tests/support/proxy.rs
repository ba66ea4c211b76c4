//! A tiny HTTP proxy in front of the real test registry that counts blob downloads and concurrent requests
//! and injects faults (500s, an outage, 429 with Retry-After, 403 refusals, slow requests), so tests can
//! watch what the worker fetches and how it copes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Faults and counters, adjustable while the proxy runs.
#[derive(Default)]
pub struct Rules {
    /// Answer the next N requests with 500.
    pub fail_next: AtomicUsize,
    /// Delay before each blob GET is forwarded, in milliseconds.
    pub blob_delay_ms: AtomicU64,
    /// Every request delayed by this many milliseconds before it is forwarded (counted as in flight).
    pub delay_ms: AtomicU64,
    /// While true the registry is "down": every request answers 503 without a Retry-After.
    pub down: AtomicBool,
    /// Answer the next N requests with 429 and `Retry-After: retry_after_s`.
    pub rate_limit_next: AtomicUsize,
    /// The Retry-After, in seconds, of injected 429s.
    pub retry_after_s: AtomicU64,
    /// While true the registry refuses us: every request answers 403 with a `DENIED` envelope (a
    /// registry whose policy denies fathom's pulls).
    pub forbid: AtomicBool,
    blob_gets: Mutex<HashMap<String, usize>>,
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// When each request arrived and what it was answered by the fault rules (`None`: forwarded).
    log: Mutex<Vec<(Instant, Option<u16>)>>,
    /// When each request arrived, its method and path.
    seen: Mutex<Vec<Seen>>,
}

/// A request as the proxy saw it arrive.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Arrival.
    pub at: Instant,
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
}

impl Rules {
    /// GETs of each blob digest so far.
    pub fn blob_gets(&self) -> HashMap<String, usize> {
        self.blob_gets.lock().unwrap().clone()
    }

    /// Requests seen (failed ones included).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// Most requests in flight at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every request's arrival, method and path, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Every request's arrival and its injected status, if any, in order.
    pub fn log(&self) -> Vec<(Instant, Option<u16>)> {
        self.log.lock().unwrap().clone()
    }
}

/// Counts a request in flight until dropped.
struct InFlight<'a>(&'a Rules);

impl<'a> InFlight<'a> {
    fn enter(rules: &'a Rules) -> InFlight<'a> {
        let now = rules.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        rules.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(rules)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running proxy.
pub struct Proxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its rules and counters.
    pub rules: Arc<Rules>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rules: Arc<Rules>,
}

impl Proxy {
    /// Starts a proxy to `upstream` (`127.0.0.1:PORT`) on the current runtime.
    pub async fn start(upstream: &str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let rules = Arc::new(Rules::default());
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            client: reqwest::Client::new(),
            rules: Arc::clone(&rules),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy {
            addr: addr.to_string(),
            rules,
            task,
        }
    }
}

async fn forward(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let rules = &shared.rules;
    rules.requests.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter(rules);
    let arrived = Instant::now();
    rules.seen.lock().unwrap().push(Seen {
        at: arrived,
        method: req.method().to_string(),
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
    });
    let delay = rules.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if rules.down.load(Ordering::SeqCst) {
        rules.log.lock().unwrap().push((arrived, Some(503)));
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"errors":[{"code":"UNAVAILABLE","message":"registry down (injected)"}]}"#,
        )
            .into_response();
    }
    if rules.forbid.load(Ordering::SeqCst) {
        rules.log.lock().unwrap().push((arrived, Some(403)));
        return (
            StatusCode::FORBIDDEN,
            r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied (injected)"}]}"#,
        )
            .into_response();
    }
    let limited = rules
        .rate_limit_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if limited {
        rules.log.lock().unwrap().push((arrived, Some(429)));
        let after = rules.retry_after_s.load(Ordering::SeqCst).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", after)],
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down (injected)"}]}"#,
        )
            .into_response();
    }
    rules.log.lock().unwrap().push((arrived, None));
    let injected = rules
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if injected {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}"#,
        )
            .into_response();
    }
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let is_blob_get = req.method() == axum::http::Method::GET && path.contains("/blobs/sha256:");
    if is_blob_get {
        if let Some(digest) = path.rsplit('/').next() {
            *rules
                .blob_gets
                .lock()
                .unwrap()
                .entry(digest.to_string())
                .or_default() += 1;
        }
        let delay = rules.blob_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
    }
    let url = format!("http://{}{path}", shared.upstream);
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut upstream = shared.client.request(method, url);
    for (name, value) in req.headers() {
        if name != "host" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    let answer = match upstream.body(body).send().await {
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
