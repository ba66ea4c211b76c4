//! The service runners, side by side: each wires one role from the composed configuration (pools,
//! waker, health endpoint, signals) and runs it until shutdown. `fathom run` starts the enabled ones.

pub mod autoscaler;
mod autoscaler_http;
pub mod core;
pub mod policy_engine;
pub mod webhook;
pub mod worker;
