//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the autoscaler.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy setting the decision cannot honour.
    #[error("invalid autoscaler policy: {field} {why}")]
    InvalidPolicy {
        /// The offending field.
        field: &'static str,
        /// Why it is rejected.
        why: String,
    },
    /// The statistics source (the queue) failed.
    #[error("reading queue statistics: {0}")]
    Stats(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A Kubernetes API call failed.
    #[error("kubernetes: {action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An object read from the cluster lacks a field we need or has an unusable value.
    #[error("kubernetes: {object}: {why}")]
    BadObject {
        /// The object, e.g. `deployment default/analyzer`.
        object: String,
        /// What is wrong with it.
        why: String,
    },
    /// Optimistic-concurrency retries ran out: others kept writing the same object.
    #[error("kubernetes: {object}: still conflicting after {attempts} attempts")]
    Conflict {
        /// The object written.
        object: String,
        /// How many writes were tried.
        attempts: u32,
    },
    /// An override annotation or file holds a value we cannot read.
    #[error("override in {place}: {why}")]
    BadOverride {
        /// The annotation or file holding it.
        place: String,
        /// What is wrong.
        why: String,
    },
    /// Spawning, signalling or reaping a local worker process failed.
    #[error("local worker {what}: {source}")]
    Process {
        /// What was being done, naming the worker.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the local override file failed.
    #[error("override file {}: {source}", path.display())]
    OverrideFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Registering a metric failed (e.g. the name is already taken in the registry).
    #[error("registering autoscaler metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Error {
    /// Wraps a statistics source's own error (e.g. the queue's) for [`crate::StatsSource`] impls.
    pub fn stats(e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::Stats(Box::new(e))
    }

    /// Every value [`kind`](Self::kind) returns, so the error counter can start each series at zero.
    pub const KINDS: [&'static str; 9] = [
        "invalid_policy",
        "stats",
        "kube",
        "bad_object",
        "conflict",
        "bad_override",
        "process",
        "override_file",
        "metrics",
    ];

    /// A low-cardinality label naming the kind of error, for the decision-errors counter.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::InvalidPolicy { .. } => "invalid_policy",
            Error::Stats(_) => "stats",
            Error::Kube { .. } => "kube",
            Error::BadObject { .. } => "bad_object",
            Error::Conflict { .. } => "conflict",
            Error::BadOverride { .. } => "bad_override",
            Error::Process { .. } => "process",
            Error::OverrideFile { .. } => "override_file",
            Error::Metrics(_) => "metrics",
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
