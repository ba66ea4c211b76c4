//! fathom's notifications.
//!
//! Overview: every change that someone may want to hear about writes a [`NewEvent`] into the outbox
//! ([`outbox::write`]) on the connection of the transaction that makes the change, so the event exists if
//! and only if the change committed — whichever process made it (a worker, a core, `fathom vulns sync`
//! from a laptop). The event types are [`types`]; the table is in `notify/migrations/`.
#![deny(missing_docs)]

pub mod data;
pub mod diff;
pub mod outbox;
pub mod types;

use sqlx::migrate::Migrator;

pub use data::Event;
pub use outbox::{write, write_many, NewEvent};

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The notifications' migrator. It shares `_sqlx_migrations` with every other crate's, so it ignores
/// versions it does not know (the notifications' are `20261215000000` and later).
pub fn migrator() -> Migrator {
    let mut migrator = Migrator {
        migrations: MIGRATIONS.migrations.clone(),
        ..Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator
}
