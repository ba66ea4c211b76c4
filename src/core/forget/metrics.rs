//! The forgetting's metrics, on the core's `/metrics` beside the queue maintenance's: images deleted by
//! cause, layers swept, and each background pass's duration and errors. Every label value exists at 0
//! from the start, so dashboards and alerts see zeros rather than gaps.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Why an image was deleted, each a value of the `cause` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// `DELETE /v1/images/{digest}` with nothing in the way.
    Api,
    /// `DELETE /v1/images/{digest}?force=true` past a job, a watched tag or a running workload.
    ApiForced,
    /// `services.catalog.retention.keep_per_tag`.
    KeepPerTag,
    /// `services.catalog.retention.untagged_after`.
    Untagged,
}

impl Cause {
    /// Every cause, in label order.
    pub const ALL: [Cause; 4] = [
        Cause::Api,
        Cause::ApiForced,
        Cause::KeepPerTag,
        Cause::Untagged,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Cause::Api => "api",
            Cause::ApiForced => "api_forced",
            Cause::KeepPerTag => "retention_keep_per_tag",
            Cause::Untagged => "retention_untagged",
        }
    }

    /// The cause of a retention rule's deletion (`rule` as [`super::retention::Doomed::rule`] names it).
    pub fn of_rule(rule: &str) -> Cause {
        if rule == "keep_per_tag" {
            Cause::KeepPerTag
        } else {
            Cause::Untagged
        }
    }
}

/// A background pass, each a value of the `task` label.
pub const TASKS: [&str; 2] = ["layer_sweep", "retention"];

/// The forgetting's metrics. Cheap to clone.
#[derive(Clone)]
pub struct ForgetMetrics {
    deleted: IntCounterVec,
    swept: IntCounter,
    duration: HistogramVec,
    errors: IntCounterVec,
}

impl ForgetMetrics {
    /// Metrics registered nowhere (a service that deletes nothing in the background).
    pub fn unregistered() -> prometheus::Result<ForgetMetrics> {
        let deleted = IntCounterVec::new(
            Opts::new(
                "fathom_core_deleted_images_total",
                "Images deleted, by cause (api, api_forced, retention_keep_per_tag, retention_untagged)",
            ),
            &["cause"],
        )?;
        let swept = IntCounter::new(
            "fathom_core_swept_layers_total",
            "Cached layers the layer sweep deleted because no stored image uses them",
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fathom_core_forget_pass_duration_seconds",
                "How long each layer sweep and retention pass took, by task (layer_sweep, retention)",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["task"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "fathom_core_forget_pass_errors_total",
                "Layer sweep and retention passes that failed, by task (retried next interval)",
            ),
            &["task"],
        )?;
        for cause in Cause::ALL {
            deleted.with_label_values(&[cause.label()]);
        }
        for task in TASKS {
            duration.with_label_values(&[task]);
            errors.with_label_values(&[task]);
        }
        Ok(ForgetMetrics {
            deleted,
            swept,
            duration,
            errors,
        })
    }

    /// The metrics, registered in `registry` (the core's `/metrics`).
    pub fn register(registry: &Registry) -> prometheus::Result<ForgetMetrics> {
        let m = ForgetMetrics::unregistered()?;
        registry.register(Box::new(m.deleted.clone()))?;
        registry.register(Box::new(m.swept.clone()))?;
        registry.register(Box::new(m.duration.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }

    /// Counts one image deleted for `cause`.
    pub fn deleted(&self, cause: Cause) {
        self.deleted.with_label_values(&[cause.label()]).inc();
    }

    /// Counts `n` layers swept.
    pub fn swept(&self, n: usize) {
        self.swept.inc_by(n as u64);
    }

    /// Records one pass of `task` (one of [`TASKS`]) that took `took`, failed or not.
    pub fn pass(&self, task: &str, took: Duration, failed: bool) {
        self.duration
            .with_label_values(&[task])
            .observe(took.as_secs_f64());
        if failed {
            self.errors.with_label_values(&[task]).inc();
        }
    }
}
