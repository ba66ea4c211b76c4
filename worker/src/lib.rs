//! fathom's analyzer worker service: the job loop, leases, the results store and worker metrics.
//!
//! Overview: [`job::Worker`] claims analysis jobs from the queue (`fathom-queue`), runs the engine
//! (`fathom-analyzer`) with the Postgres layer cache of [`store::Store`], stores each result and completes
//! its job in one transaction. [`config`] is the worker's part of the configuration file
//! (`services.analyzer`, `registry`); [`metrics`] its Prometheus metrics. The binary wires the health
//! endpoint and signals around it.
#![deny(missing_docs)]

pub mod config;
pub mod content_config;
pub mod job;
pub mod metrics;
pub mod store;
