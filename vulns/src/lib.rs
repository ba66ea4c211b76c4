//! fathom's vulnerability data and matching.
//!
//! Overview: [`core`] is pure (no IO): the OSV record model ([`core::osv::Record`]), one version
//! comparator per ecosystem ([`core::version`]), range evaluation ([`core::affected`]), severities and
//! CVSS base scores ([`core::severity`]) and the mapping from fathom packages to OSV ecosystems
//! ([`core::ecosystem`]). [`feed`] fetches OSV bulk zips (conditional HTTP, streamed to disk) and reads
//! them record by record. [`store`] keeps feed generations in Postgres ([`Feeds::sync`]), matches each
//! distinct (ecosystem, name, version) of the fleet once ([`Matcher::rematch`]), and answers per-image
//! and per-vulnerability questions ([`queries`]). [`local`] matches one image without a database, loading
//! only the feed records naming its packages (`fathom scan --vulns-from`, `fathom check --policy`).
#![deny(missing_docs)]

pub mod config;
pub mod core;
mod error;
pub mod feed;
pub mod local;
pub mod store;

/// Channel on which committed changes to matches and feed freshness are announced: `*` for the whole
/// fleet when a feed's current data, last success or offer moved (migration
/// `20261210000002_vulns_notify_changes`), else the space-separated digests of re-indexed images and of
/// images whose matches a re-match changed. A poll or a re-match that changed nothing announces nothing.
pub const CHANNEL: &str = "fathom_vulns";

pub use config::VulnsConfig;
pub use error::{Error, Result};
pub use feed::FeedConfig;
pub use store::{
    migrator, queries, FeedReport, Feeds, Matcher, Progress, RematchReport, SyncReport,
};
