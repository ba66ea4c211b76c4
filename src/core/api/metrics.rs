//! Request counts and latencies by route template, method and status: the dashboards' API row.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// The API's metrics, in their own registry.
#[derive(Clone)]
pub struct ApiMetrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    /// Jobs the core's maintenance put back in the queue (or dead-lettered) after their lease expired.
    pub rescued: IntCounter,
    /// Finished jobs the core's maintenance deleted after their retention.
    pub pruned: IntCounter,
}

/// Label of requests no route matched: their paths are unbounded, so they must not become labels.
const UNMATCHED: &str = "unmatched";

/// Statuses every route's series start with: the success most routes answer, and each server error the
/// API sends (500 internal, 502 policy engine unreachable, 503 timeout or dependency down). A series born
/// with its first error at 1 hides that error from `rate()`, so the 5xx alert would miss the first error
/// of every route.
const PRIMED_STATUSES: [&str; 4] = ["200", "500", "502", "503"];

impl ApiMetrics {
    /// Registers the metrics in a fresh registry.
    pub fn new() -> prometheus::Result<ApiMetrics> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "fathom_api_requests_total",
                "API requests answered, by route template, method and status code",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fathom_api_request_duration_seconds",
                "Time to answer an API request, by route template and method",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["route", "method"],
        )?;
        let rescued = IntCounter::new(
            "fathom_core_rescued_jobs_total",
            "Jobs whose worker died, rescued by the core's queue maintenance",
        )?;
        let pruned = IntCounter::new(
            "fathom_core_pruned_jobs_total",
            "Finished jobs deleted by the core's queue maintenance after their retention",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(rescued.clone()))?;
        registry.register(Box::new(pruned.clone()))?;
        Ok(ApiMetrics {
            registry,
            requests,
            duration,
            rescued,
            pruned,
        })
    }

    /// Creates the series of these routes up front (success and every server error), so dashboards and
    /// alerts see zeros instead of absent series before the first request or the first error.
    pub fn prime(&self, routes: &[(&str, &str)]) {
        for (method, route) in routes {
            for status in PRIMED_STATUSES {
                self.requests.with_label_values(&[route, method, status]);
            }
            self.duration.with_label_values(&[route, method]);
        }
    }

    fn observe(&self, route: &str, method: &str, status: u16, started: Instant) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.duration
            .with_label_values(&[route, method])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The registry `/metrics` renders: the core's other parts (the feed cycle, the admission webhook)
    /// register theirs here so one scrape sees them all.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Response {
        crate::server::metrics_response(&self.registry)
    }
}

/// Middleware: times every request and counts its answer under the route template that matched.
pub async fn track(State(metrics): State<ApiMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    // Extension methods are unbounded too.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "OTHER",
    }
    .to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics.observe(&route, &method, status, started);
    tracing::debug!(
        %method,
        %route,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}
