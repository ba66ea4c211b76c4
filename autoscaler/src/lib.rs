//! fathom's autoscaler: sizes the analyzer fleet from the queue's depth.
//!
//! Overview:
//! - [`decision`] is the pure core: [`decide`] turns a [`QueueSnapshot`], the current replica count, a
//!   [`Policy`] and an [`Override`] into a [`Decision`], keeping its history in a caller-owned
//!   [`DecisionState`].
//! - [`ScaleTarget`] is what gets scaled: [`k8s::KubeTarget`] (a Deployment via its scale subresource, with
//!   annotation overrides, pod deletion costs and Lease leader election) or [`local::LocalTarget`] (worker
//!   processes on this machine). [`StatsSource`] is the queue, implemented by the caller.
//! - [`Autoscaler`] is the control loop over one target and one source: rounds on a poll interval or a
//!   nudge, [`Metrics`] into a caller-given Prometheus registry, the last round as a [`Status`].
//! - [`sim`] replays load traces against the core and against a KEDA baseline modelled at its documented defaults (and a `useCachedMetrics` variant) (the bench prints it).
//!
//! Wiring, as the binary does it (the queue side is the caller's):
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use fathom_autoscaler::local::{LocalConfig, LocalTarget, WorkerCommand};
//! use fathom_autoscaler::{Autoscaler, BusyMap, LoopConfig, Metrics, QueueSnapshot, StatsSource};
//!
//! struct Queue; // stands for fathom-queue's handle
//! impl StatsSource for Queue {
//!     async fn snapshot(&self) -> fathom_autoscaler::Result<QueueSnapshot> {
//!         Ok(QueueSnapshot::default()) // from the queue's stats()
//!     }
//!     async fn busy(&self) -> fathom_autoscaler::Result<BusyMap> {
//!         Ok(BusyMap::new()) // running jobs grouped by lease owner
//!     }
//! }
//!
//! # async fn wire() -> fathom_autoscaler::Result<()> {
//! let registry = prometheus::Registry::new();
//! let target = LocalTarget::new(LocalConfig {
//!     command: WorkerCommand { program: "fathom".into(), args: vec!["worker".into()], env: vec![] },
//!     id_prefix: "local-worker".into(),
//!     drain_timeout: Duration::from_secs(120),
//!     override_file: "/var/lib/fathom/override.json".into(),
//!     metrics_host: Some([127, 0, 0, 1].into()), // each worker its own /metrics port
//! });
//! let autoscaler = Autoscaler::new(target, Queue, LoopConfig::default(), Some(Metrics::register(&registry)?))?;
//! let nudge = Arc::new(tokio::sync::Notify::new()); // notify_one() on every LISTEN/NOTIFY wake-up
//! let stopped = autoscaler.run(nudge, async { let _ = tokio::signal::ctrl_c().await; }).await;
//! stopped.target().stop_all().await;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub mod config;
mod control;
pub mod decision;
mod error;
pub mod k8s;
pub mod local;
mod metrics;
pub mod sim;
mod target;

pub use config::{AutoscalerServiceConfig, AutoscalerTarget};
pub use control::{status_once, Autoscaler, LoopConfig, Status};
pub use decision::{decide, Decision, DecisionState, Override, Policy, QueueSnapshot, Reason};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use target::{
    BusyMap, Observed, OverrideOp, OverrideSettings, ScaleTarget, SetOutcome, StatsSource,
};
