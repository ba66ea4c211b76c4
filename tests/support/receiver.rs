//! A real HTTP receiver of notifications on loopback: each path is an endpoint whose behaviour a test
//! sets (answer 2xx, answer a status, hang, redirect, answer slowly), and every request it takes is
//! recorded with whether its `fathom-signature` verified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How an endpoint answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// 200 (recorded as received).
    Ok,
    /// This status, not recorded as received.
    Status(u16),
    /// Never answers.
    Hang,
    /// 302 to another path of this receiver.
    Redirect(String),
    /// 200 after this long.
    Slow(Duration),
}

/// One request that was answered 2xx.
#[derive(Debug, Clone)]
pub struct Got {
    /// The path (endpoint) it came to.
    pub endpoint: String,
    /// The CloudEvent.
    pub event: Value,
    /// Whether `fathom-signature` verified with the receiver's secret.
    pub verified: Result<(), String>,
    /// The request's `content-type`.
    pub content_type: String,
}

struct Shared {
    secret: Vec<u8>,
    modes: Mutex<HashMap<String, Mode>>,
    got: Mutex<Vec<Got>>,
    attempts: Mutex<HashMap<String, usize>>,
}

/// The receiver; it serves until the test process ends.
#[derive(Clone)]
pub struct Receiver {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    shared: Arc<Shared>,
}

impl Receiver {
    /// Starts a receiver verifying signatures with `secret` (every path answers [`Mode::Ok`] until set).
    pub async fn start(secret: &str) -> Receiver {
        let shared = Arc::new(Shared {
            secret: secret.as_bytes().to_vec(),
            modes: Mutex::default(),
            got: Mutex::default(),
            attempts: Mutex::default(),
        });
        let app = axum::Router::new()
            .route("/{name}", axum::routing::post(take))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, shared }
    }

    /// `http://ADDR/name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Sets how `name` answers from now on.
    pub fn set(&self, name: &str, mode: Mode) {
        self.shared
            .modes
            .lock()
            .unwrap()
            .insert(name.to_string(), mode);
    }

    /// Everything `name` took (answered 2xx) so far, in arrival order.
    pub fn got(&self, name: &str) -> Vec<Got> {
        self.shared
            .got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.endpoint == name)
            .cloned()
            .collect()
    }

    /// Requests `name` saw, whatever it answered.
    pub fn attempts(&self, name: &str) -> usize {
        self.shared
            .attempts
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `name` took `n` distinct event ids; panics after `within`.
    pub async fn wait_for(&self, name: &str, n: usize, within: Duration) -> Vec<Got> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let got = self.got(name);
            let mut ids: Vec<&str> = got.iter().filter_map(|g| g.event["id"].as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} took {} of {n} events within {within:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn take(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *shared
        .attempts
        .lock()
        .unwrap()
        .entry(name.clone())
        .or_default() += 1;
    let mode = shared
        .modes
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .unwrap_or(Mode::Ok);
    match mode {
        Mode::Status(code) => return StatusCode::from_u16(code).unwrap().into_response(),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK.into_response();
        }
        Mode::Redirect(to) => {
            return (StatusCode::FOUND, [("location", format!("/{to}"))]).into_response();
        }
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Ok => {}
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = headers
        .get(fathom_notify::signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let verified = fathom_notify::signature::verify(&shared.secret, header, &body, now, 300)
        .map_err(|e| e.to_string());
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    shared.got.lock().unwrap().push(Got {
        endpoint: name,
        event,
        verified,
        content_type,
    });
    StatusCode::NO_CONTENT.into_response()
}
