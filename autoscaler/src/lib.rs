//! fathom's autoscaler: sizes the analyzer fleet from the queue's depth.
//!
//! Overview:
//! - [`decision`] is the pure core: [`decide`] turns a [`QueueSnapshot`], the current replica count, a
//!   [`Policy`] and an [`Override`] into a [`Decision`], keeping its history in a caller-owned
//!   [`DecisionState`].
//! - [`sim`] replays load traces against that core and against a KEDA-like baseline (the bench prints it).
#![deny(missing_docs)]

pub mod decision;
mod error;
pub mod k8s;
pub mod local;
pub mod sim;
mod target;

pub use decision::{decide, Decision, DecisionState, Override, Policy, QueueSnapshot, Reason};
pub use error::{Error, Result};
pub use target::{
    BusyMap, Observed, OverrideOp, OverrideSettings, ScaleTarget, SetOutcome, StatsSource,
};
