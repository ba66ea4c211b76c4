//! One module per subcommand: clap arguments live here and are converted into each crate's config.

pub mod autoscaler;
pub mod backend;
pub mod check;
mod check_local;
pub mod client;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
mod demo_gate;
#[cfg(feature = "demo")]
mod demo_notify;
#[cfg(feature = "demo")]
mod demo_policy;
#[cfg(feature = "demo")]
mod demo_registry;
#[cfg(feature = "demo")]
pub mod demo_vulns;
#[cfg(feature = "demo")]
mod demo_watch;
pub mod images;
pub mod migrate;
pub mod notifications;
pub mod policy;
pub mod queue;
pub mod queue_retry;
pub mod results;
pub mod run;
pub mod scale;
pub mod scan;
pub mod scan_vulns;
pub mod status;
pub mod submit;
pub mod vulns;
pub mod watch;
pub mod webhook;
pub mod worker;

/// A multi-threaded runtime for subcommands that talk to Postgres or serve.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
