//! fathom's test support, used by every crate's tests and benches and by `fathom demo`: realistic sample
//! images described in code ([`samples`]), in-process image builders (OCI layouts, docker archives,
//! registry pushes: [`image`], [`push`]), a local registry shared by all test processes of a run
//! ([`registry`]), child-process measurement ([`measure`], [`floor`]), SBOM validators ([`validate`]) and
//! throwaway PostgreSQL clusters with a database per test ([`pg`]), a simulated idle fleet of many
//! workers for herd tests ([`herd`]), and a sample OSV feed matching the sample images ([`osv`]).
//!
//! A crate of its own so that no production library carries test support in its public API: libraries
//! take it as a dev-dependency; the binary only for `fathom demo` (cargo feature `demo`).
#![deny(missing_docs)]

pub mod clamd;
pub mod floor;
pub mod herd;
pub mod image;
pub mod measure;
pub mod net;
pub mod osv;
pub mod pg;
pub mod push;
pub mod registry;
pub mod samples;
pub mod validate;

pub use image::{BuiltImage, BuiltLayer, Compress, LayoutEntry};
pub use net::free_port;
pub use push::Pusher;

/// Result alias of the test harness.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the harness could not provide what a test asked for (binaries missing, cluster start failed, ...).
/// The message says what to install or what went wrong, with the server log when there is one.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The throwaway PostgreSQL cluster or a test database could not be provided.
    #[error("test harness: {0}")]
    Harness(String),
    /// A database statement of the harness failed.
    #[error("test harness database: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying a migration set to the template database failed.
    #[error("test harness migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A queue operation of a simulated fleet failed.
    #[error("test harness queue: {0}")]
    Queue(#[from] fathom_queue::Error),
    /// A file or process operation failed.
    #[error("test harness io: {0}")]
    Io(#[from] std::io::Error),
}
