//! The crate's error type: what can stop the webhook from starting or serving.

use std::path::PathBuf;

/// Errors of configuration, TLS material, binding and metrics registration. Admission decisions never
/// fail: a bad request or an oracle outage becomes an AdmissionReview answer, not an `Error`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration key holds a value the webhook cannot use (the key is in full, e.g.
    /// `services.webhook.timeout`, as every section of fathom's configuration reports it).
    #[error("{}: {}", .0.key, .0.message)]
    Config(fathom_config::ConfigError),
    /// The serving certificate or key cannot be read or used.
    #[error("TLS material {path}: {message}")]
    Tls {
        /// The certificate or key file.
        path: PathBuf,
        /// Why it was refused.
        message: String,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The configured address.
        address: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// A metric could not be registered (usually: registered twice in one registry).
    #[error("registering webhook metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// No Kubernetes client could be configured for what `key` turns on (namespace label lookups,
    /// the Pod lister).
    #[error("{key}: no Kubernetes API client ({message}); set services.webhook.kubeconfig, run in a pod \
             with a service account, or set {key}: false")]
    Kube {
        /// The key that needs the client (`services.webhook.namespace_labels`, `…inventory_sync`).
        key: &'static str,
        /// Why there is none.
        message: String,
    },
    /// The Kubernetes API did not list Pods for `services.webhook.inventory_sync`.
    #[error(
        "services.webhook.inventory_sync: listing pods: {0} (the core's service account needs \
             `list pods` cluster-wide: deploy/overlays/inventory-sync)"
    )]
    PodList(String),
    /// Generating certificates failed.
    #[error("generating certificates: {0}")]
    Certs(#[from] rcgen::Error),
}

impl Error {
    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config(fathom_config::ConfigError::new(key, message))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
