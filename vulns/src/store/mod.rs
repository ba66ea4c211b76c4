//! The Postgres side: feed generations ([`sync`]), image indexing and fleet matching ([`matcher`], which
//! notifies the images whose matches changed) and the questions the API asks ([`queries`]). SQL lives next to the functions that run it; migrations in `migrations/`.

use sqlx::migrate::Migrator;

mod changes;
mod copy;
mod events;
mod groups;
mod index;
pub mod matcher;
mod notify;
mod on_demand;
pub mod queries;
pub mod sync;

pub use matcher::{Matcher, RematchReport};
pub use on_demand::{OnDemand, NEEDS_SQL};

/// Advisory lock key of the feed cycle, of `fathom vulns sync` and of on-demand matching ("fathomFd" as
/// bytes): whoever holds it is the only one syncing or writing matches, so match writes never collide.
pub const FEED_LOCK: i64 = 0x6661_7468_6f6d_4664;
pub use sync::{FeedReport, Feeds, Progress, SyncReport};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The crate's migrator. It shares `_sqlx_migrations` with the queue's and the worker's, so it ignores
/// versions it does not know (ours start at `20261130100000`). Needs the worker's tables.
pub fn migrator() -> Migrator {
    let mut m = Migrator {
        migrations: MIGRATIONS.migrations.clone(),
        ..Migrator::DEFAULT
    };
    m.set_ignore_missing(true);
    m
}
