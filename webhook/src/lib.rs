//! fathom's Kubernetes admission webhook (`services.webhook`).
//!
//! Overview: [`WebhookServer`] (or [`serve`]) is the HTTPS shell: it reads an AdmissionReview from
//! `POST /validate` and hands it to [`Admission`], the pure core, which extracts the images of Pods and
//! pod templates ([`images`]), picks a [`Mode`] by the first matching selector, and asks an
//! [`ImageOracle`] (fathom's store, registry client, policy engine and queue, wired in by the core) about
//! each image, answering within [`WebhookConfig::timeout`] or by [`FailurePolicy`] (unless a verdict it
//! computed for the same image within [`WebhookConfig::stale_if_error`] can answer). Selectors on
//! namespace labels get them from a [`NamespaceSource`] ([`KubeNamespaces`]: the Kubernetes API),
//! cached per namespace. [`certs`] makes a
//! self-signed CA and serving certificate for clusters without cert-manager (and a client CA and
//! certificate for `client_ca_file`). With `pin_digests`, `POST /mutate` ([`Admission::mutate`]) checks
//! the same way and pins each admitted tag to the digest checked. Each admitted container's image is
//! handed to [`ImageOracle::record_use`] ([`inventory::Sighting`]) for fathom's inventory of what runs;
//! with `inventory_sync`, [`KubePods`] lists the cluster's Pods as sightings too.
#![deny(missing_docs)]

mod admission;
mod answer;
mod cache;
pub mod certs;
mod check;
mod client_ca;
mod cluster;
mod config;
mod error;
pub mod images;
pub mod inventory;
mod limit;
mod metrics;
mod namespaces;
mod oracle;
mod pin;
mod platforms;
pub mod pods;
pub mod review;
mod selector;
mod server;
mod stale;
mod tls;
mod verdict;

pub use admission::{Admission, Answer};
pub use check::Reason;
pub use cluster::{KubeNamespaces, Labels, NamespaceSource};
pub use config::{
    FailurePolicy, Mode, SelectorConfig, Settings, Unevaluable, Unmapped, WebhookConfig,
};
pub use error::{Error, Result};
pub use metrics::Metrics;
pub use oracle::{
    AnalysisState, Finding, ImageId, ImageOracle, IndexPlatforms, OracleError, Outcome,
    PlatformImage, Resolved, Verdict,
};
pub use pods::KubePods;
pub use selector::{Selector, Selectors, Subject};
pub use server::{serve, WebhookServer};
pub use tls::CertReloader;
