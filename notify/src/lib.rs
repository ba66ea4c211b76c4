//! fathom's notifications.
//!
//! Overview: every change that someone may want to hear about writes a [`NewEvent`] into the outbox
//! ([`outbox::write`]) on the connection of the transaction that makes the change, so the event exists if
//! and only if the change committed — whichever process made it (a worker, a core, `fathom vulns sync`
//! from a laptop). The event types are [`types`]; the table is in `notify/migrations/`.
//!
//! Delivery: one core at a time ([`dispatch`]) fans each event out into a delivery per endpoint that wants
//! it ([`deliveries`], configured in [`config`]), sends it as CloudEvents structured JSON ([`envelope`])
//! signed with the endpoint's secret ([`signature`]) and retries failures with jittered backoff
//! ([`backoff`]) until the retry window passes; [`metrics`] are on the core's `/metrics`.
#![deny(missing_docs)]

pub mod backoff;
pub mod config;
pub mod data;
pub mod deliveries;
pub mod diff;
pub mod dispatch;
pub mod envelope;
pub mod log;
pub mod metrics;
pub mod outbox;
pub mod send;
pub mod signature;
pub mod types;

use sqlx::migrate::Migrator;

pub use config::{EndpointConfig, NotificationsConfig};
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
