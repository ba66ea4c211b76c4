//! The Postgres side: feed generations ([`sync`]), image indexing and fleet matching ([`matcher`], which
//! notifies the images whose matches changed) and the questions the API asks ([`queries`]). SQL lives next to the functions that run it; migrations in `migrations/`.

use sqlx::migrate::Migrator;

mod copy;
mod index;
pub mod matcher;
mod notify;
pub mod queries;
pub mod sync;

pub use matcher::{Matcher, RematchReport};
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
