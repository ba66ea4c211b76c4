//! fathom's catalog: watches on tags and repositories, each tag's digest history, and the passes that
//! keep them current.
//!
//! Overview: a [`Catalog`] adds, lists, shows and removes watches ([`Watch`], [`WatchDetail`] with its
//! history) over Postgres ([`store`], migrations in `catalog/migrations/`) and a paced registry client
//! ([`Watcher`], the analyzer's `TagWatcher` behind a per-host rate). A pass ([`Catalog::pass`]) looks at
//! every watch of one [`PassKind`]: the pure [`schedule`] spreads each host's share over the interval
//! within the rate, the pure [`decide`] says what an answer means (a moved tag, a missing one, new tags
//! of a repository), and the pass records it, a new digest and its analysis in one transaction. Which
//! core runs a pass is the caller's business: [`store::begin_pass`] lets exactly one take each.
//! [`CatalogConfig`] is the `services.catalog` section; [`CatalogMetrics`] its metrics. The
//! [`inventory`] records which workloads run which digests (from admissions, through a batching
//! [`inventory::Recorder`]).
#![deny(missing_docs)]

mod catalog;
pub mod config;
pub mod decide;
mod error;
pub mod inventory;
pub mod metrics;
mod model;
mod pass;
pub mod schedule;
pub mod store;
mod watcher;

use sqlx::migrate::Migrator;

pub use catalog::{tag_reference, Catalog, RepositoryRequest, Submission, HISTORY_SHOWN};
pub use config::{CatalogConfig, RetentionConfig};
pub use error::{Error, Result};
pub use metrics::CatalogMetrics;
pub use model::{HistoryEntry, PassReport, RepositoryLook, Watch, WatchDetail};
pub use watcher::{Counts, Watcher};

/// The two kinds of pass, each on its own interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassKind {
    /// Every watched tag resolved (`services.catalog.watch_interval`).
    Tags,
    /// Every watched repository listed (`services.catalog.repository_interval`).
    Repositories,
}

impl PassKind {
    /// As stored and as the metrics' `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            PassKind::Tags => "tags",
            PassKind::Repositories => "repositories",
        }
    }
}

static CATALOG_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The catalog's migrator. It shares `_sqlx_migrations` with every other crate's, so it ignores versions
/// it does not know (the catalog's are `20261204220000` and later).
pub fn migrator() -> Migrator {
    let mut migrator = Migrator {
        migrations: CATALOG_MIGRATIONS.migrations.clone(),
        ..Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator
}
