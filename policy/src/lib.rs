//! fathom's policy engine core: anchore-compatible v1_0 policy bundles evaluated over image facts.
//!
//! Overview:
//! - [`Bundle::from_json`] / [`Bundle::from_yaml`] read a bundle (anchore's v1_0 format, with the
//!   allowlist/denylist synonyms), validate all of it (every problem named by its JSON path) and compile it
//!   into a [`ValidatedBundle`]: regexes compiled once, whitelists indexed, a [`ValidatedBundle::digest`] to
//!   key caches on. [`default_bundle`] is the built-in bundle.
//! - [`ImageFacts`] is what the engine knows about one image: identity and config, packages, files,
//!   content and secret findings, vulnerability matches and feed freshness. The caller maps its store into it.
//! - `store` (feature `store`): bundles kept in Postgres, one of them active; `history` (same feature): a
//!   summary of every evaluation, the newest N per image.
//! - [`evaluate`] takes the bundle, the facts and the clock and returns an [`Evaluation`]: anchore's final
//!   action and reason, matched mapping and image rules, per-policy decisions and the result table.
//!
//! ```
//! use fathom_policy::{default_bundle, evaluate, ImageFacts, Status};
//!
//! let bundle = default_bundle();
//! let mut facts = ImageFacts::default();
//! facts.image.registry = "docker.io".into();
//! facts.image.repository = "library/alpine".into();
//! facts.image.tag = Some("3.20".into());
//! facts.vulnerabilities = Some(Vec::new());
//! facts.feed.distro_data = true;
//! facts.feed.last_sync = Some(jiff::Timestamp::now());
//! facts.image.config.healthcheck = Some("CMD true".into());
//! let result = evaluate(bundle, &facts, jiff::Timestamp::now());
//! assert_eq!(result.status, Status::Pass);
//! ```
#![deny(missing_docs)]

mod catalog;
mod default;
mod error;
mod evaluate;
pub mod facts;
mod gates;
#[cfg(feature = "store")]
pub mod history;
mod load;
mod matching;
pub mod model;
mod params;
mod result;
#[cfg(feature = "store")]
pub mod store;
pub mod stored;
mod support;
mod validated;

pub use default::{default_bundle, DEFAULT_BUNDLE_JSON};
pub use error::{Error, Result, ValidationError};
pub use evaluate::evaluate;
pub use facts::{
    ContentMatch, Cvss, DockerfileMode, FeedStatus, FileEntry, FileType, ImageConfig, ImageFacts,
    ImageInfo, Package, PackageFile, SecretFinding, Severity, VulnMatch,
};
pub use fathom_reference::ImageRef;
pub use matching::glob;
pub use model::{Action, Bundle};
pub use result::{
    Evaluation, PolicyDecision, Reason, Row, Status, Table, WhitelistRef, TABLE_HEADER,
};
pub use stored::{parse_passwd, MalwareFinding, MalwareScan, PasswdEntries, RetrievedFile};
pub use support::gates_markdown;
pub use validated::ValidatedBundle;
