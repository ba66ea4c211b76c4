//! The catalog's metrics, registered once beside the API's: requests by host and kind (zeros from the
//! start for every watched host), watches by kind, and each pass kind's last completion, duration and
//! interval (the alert compares them).

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::PassKind;

/// Request kinds, each a value of the `kind` label.
pub const REQUEST_KINDS: [&str; 3] = ["head", "manifest", "tags"];

/// Watch kinds, each a value of the `kind` label of `fathom_catalog_watches`.
pub const WATCH_KINDS: [&str; 2] = ["tag", "repository"];

/// The catalog's metrics. Cheap to clone.
#[derive(Clone)]
pub struct CatalogMetrics {
    requests: IntCounterVec,
    watches: IntGaugeVec,
    last_pass: GaugeVec,
    pass_duration: GaugeVec,
    interval: GaugeVec,
    changes: IntCounterVec,
}

impl CatalogMetrics {
    /// Metrics not registered anywhere (the CLI's catalog, tests).
    pub fn unregistered() -> prometheus::Result<CatalogMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "fathom_catalog_requests_total",
                "Registry requests of the catalog's watchers, by host and kind (head, manifest, tags)",
            ),
            &["host", "kind"],
        )?;
        let watches = IntGaugeVec::new(
            Opts::new(
                "fathom_catalog_watches",
                "Watches, by kind (tag, repository)",
            ),
            &["kind"],
        )?;
        let last_pass = GaugeVec::new(
            Opts::new(
                "fathom_catalog_last_pass_timestamp_seconds",
                "When the last pass of each kind (tags, repositories) completed, by whichever core (0: never)",
            ),
            &["kind"],
        )?;
        let pass_duration = GaugeVec::new(
            Opts::new(
                "fathom_catalog_pass_duration_seconds",
                "How long the last pass of each kind took",
            ),
            &["kind"],
        )?;
        let interval = GaugeVec::new(
            Opts::new(
                "fathom_catalog_pass_interval_seconds",
                "The configured interval of each pass kind (services.catalog.watch_interval, repository_interval)",
            ),
            &["kind"],
        )?;
        let changes = IntCounterVec::new(
            Opts::new(
                "fathom_catalog_changes_total",
                "What passes found, by outcome (moved, first, missing, failing, added)",
            ),
            &["outcome"],
        )?;
        for kind in WATCH_KINDS {
            watches.with_label_values(&[kind]);
        }
        for outcome in ["moved", "first", "missing", "failing", "added"] {
            changes.with_label_values(&[outcome]);
        }
        Ok(CatalogMetrics {
            requests,
            watches,
            last_pass,
            pass_duration,
            interval,
            changes,
        })
    }

    /// Registers the metrics in `registry`, with the configured intervals.
    pub fn register(
        registry: &Registry,
        config: &crate::CatalogConfig,
    ) -> prometheus::Result<CatalogMetrics> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.watches.clone()))?;
        registry.register(Box::new(m.last_pass.clone()))?;
        registry.register(Box::new(m.pass_duration.clone()))?;
        registry.register(Box::new(m.interval.clone()))?;
        registry.register(Box::new(m.changes.clone()))?;
        // Without the loop there are no passes to be late: no interval series, so the alert stays quiet.
        if config.enabled {
            for kind in [PassKind::Tags, PassKind::Repositories] {
                m.interval
                    .with_label_values(&[kind.as_str()])
                    .set(config.interval(kind).as_secs_f64());
                m.last_pass.with_label_values(&[kind.as_str()]);
                m.pass_duration.with_label_values(&[kind.as_str()]);
            }
        }
        Ok(m)
    }

    /// Creates the request series of `host` (zeros until its first request).
    pub fn host(&self, host: &str) {
        for kind in REQUEST_KINDS {
            self.requests.with_label_values(&[host, kind]);
        }
    }

    pub(crate) fn request(&self, host: &str, kind: &str) {
        self.requests.with_label_values(&[host, kind]).inc();
    }

    pub(crate) fn change(&self, outcome: &str, n: u64) {
        self.changes.with_label_values(&[outcome]).inc_by(n);
    }

    /// Sets the gauges from the database's [`crate::store::State`] (every core does, so any replica's
    /// scrape is right).
    pub fn refresh(&self, state: &crate::store::State) {
        self.watches.with_label_values(&["tag"]).set(state.tags);
        self.watches
            .with_label_values(&["repository"])
            .set(state.repositories);
        for (kind, completed, duration, _) in &state.passes {
            self.last_pass.with_label_values(&[kind]).set(*completed);
            self.pass_duration.with_label_values(&[kind]).set(*duration);
        }
    }
}
