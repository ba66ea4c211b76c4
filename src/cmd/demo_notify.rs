//! `fathom demo`'s notifications step: a local receiver on loopback (sample data: a demo secret, a demo
//! endpoint) gets every event the demo's changes wrote into the outbox — the analyses, the sample feed's
//! matches, the moved tag — delivered by the same dispatcher the core runs, and prints them with whether
//! each `fathom-signature` verified.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fathom_notify::config::{EndpointConfig, NotificationsConfig};
use fathom_notify::dispatch::Dispatcher;
use fathom_notify::metrics::NotifyMetrics;
use fathom_notify::send::Target;
use fathom_worker::store::Store;
use tokio::sync::watch;

/// The demo endpoint's secret: sample data, printed nowhere, known only to this process.
const DEMO_SECRET: &str = "fathom-demo-sample-secret";

type Received = Arc<Mutex<Vec<(bool, serde_json::Value)>>>;

async fn take(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let header = headers
        .get(fathom_notify::signature::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let verified =
        fathom_notify::signature::verify(DEMO_SECRET.as_bytes(), header, &body, now, 300).is_ok();
    let event = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if let Ok(mut r) = received.lock() {
        r.push((verified, event));
    }
    StatusCode::NO_CONTENT
}

/// Delivers the outbox to a local receiver and prints what arrived.
pub async fn run(url: &str, store: &Store) -> anyhow::Result<()> {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(take))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let endpoint = EndpointConfig {
        name: "demo-receiver".into(),
        url: format!("http://{addr}/hook"),
        events: Vec::new(),
        secret_env: "FATHOM_DEMO_RECEIVER_SECRET".into(),
        headers: BTreeMap::new(),
        timeout: Duration::from_secs(5),
    };
    let target = Target::new(&endpoint, "demo", |_| Some(DEMO_SECRET.to_string()))?;
    let config = NotificationsConfig {
        source: "urn:fathom:demo".into(),
        endpoints: vec![endpoint],
        poll_interval: Duration::from_millis(200),
        ..NotificationsConfig::default()
    };
    let owed: i64 = sqlx::query_scalar("SELECT count(*) FROM notify_events")
        .fetch_one(store.pool())
        .await
        .context("reading the outbox")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatcher = Dispatcher::new(
        store.pool().clone(),
        config,
        vec![target],
        NotifyMetrics::unregistered()?,
    );
    let task = tokio::spawn(dispatcher.run(url.to_string(), stop_rx));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let got = received.lock().map_or(0, |r| r.len()) as i64;
        if got >= owed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let _ = task.await;
    server.abort();
    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    let verified = received.iter().filter(|(ok, _)| *ok).count();
    println!(
        "  notifications (a SAMPLE local receiver at http://{addr}/hook with a demo secret): {} of {owed} events \
         delivered in {:.1}s, {verified} signatures verified",
        received.len(),
        started.elapsed().as_secs_f64()
    );
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in &received {
        *by_type
            .entry(e["type"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    for (kind, n) in &by_type {
        let first = received
            .iter()
            .find(|(_, e)| e["type"].as_str() == Some(kind.as_str()))
            .map(|(_, e)| e);
        let subject = first.and_then(|e| e["subject"].as_str()).unwrap_or("");
        let mut data = first.map(|e| e["data"].to_string()).unwrap_or_default();
        if data.len() > 160 {
            let cut = (0..=160)
                .rev()
                .find(|i| data.is_char_boundary(*i))
                .unwrap_or(0);
            data.truncate(cut);
            data.push('…');
        }
        println!("    {kind}: {n} (e.g. {subject}: {data})");
    }
    Ok(())
}
