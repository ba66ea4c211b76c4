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
//! - [`sim`] replays load traces against the core and against a KEDA-like baseline (the bench prints it).
#![deny(missing_docs)]

mod control;
pub mod decision;
mod error;
pub mod k8s;
pub mod local;
mod metrics;
pub mod sim;
mod target;

pub use control::{status_once, Autoscaler, LoopConfig, Status};
pub use decision::{decide, Decision, DecisionState, Override, Policy, QueueSnapshot, Reason};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use target::{
    BusyMap, Observed, OverrideOp, OverrideSettings, ScaleTarget, SetOutcome, StatsSource,
};
