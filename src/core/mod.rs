//! The core: the external API and the queue maintenance beside it, with its `services.api` section.
//!
//! It lives in the binary, not in a crate of its own, because it is composition: the parts with logic of
//! their own are crates (the queue, the results store in `fathom-worker`, and next the policy engine,
//! vulnerability feeds and the admission webhook, each a pure core with thin IO), and the core is the HTTP
//! surface over them. Its runner is [`crate::services::core`], beside the worker's and the autoscaler's.

pub mod api;
pub mod catalog;
pub mod config;
pub mod election;
pub mod facts;
pub mod facts_local;
pub mod feeds;
pub mod forget;
pub mod inventory_sync;
pub mod oracle;
pub mod policy;
pub mod queue_gauges;
pub mod verdicts;
