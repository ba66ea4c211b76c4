//! fathom's job queue on PostgreSQL.
//!
//! Overview: [`Queue`] is the hot-path handle (a tiny tokio-postgres pool with prepared statements, or
//! unnamed statements behind PgBouncer). Producers [`Queue::enqueue_many`] [`NewJob`]s (deduplicated by key);
//! workers [`Queue::claim`] batches with `FOR UPDATE SKIP LOCKED`, each job leased to them with a fencing
//! [`Lease`] token that [`Queue::heartbeat`] extends and [`Queue::complete`] / [`Queue::fail`] /
//! [`Queue::release`] must present. Expired leases are rescued by any worker ([`Queue::rescue_expired`]).
//! [`Waker`] turns LISTEN/NOTIFY into wake-ups with a polling fallback; worker processes join a [`Fleet`]
//! whose members wake one per job and take turns polling, and claim on their listening connection
//! ([`Queue::with_listener`]). [`Queue::stats`] feeds the
//! autoscaler. Outages: [`Queue::defer`] parks a job for a resource without charging an attempt and
//! [`Queue::resume`] releases the group; [`Queue::requeue`] brings finished jobs back. [`Subscription`] LISTENs for other crates (cache invalidation). [`tx`] runs enqueue and complete inside a caller's sqlx transaction. [`migrate()`] applies
//! the schema.
#![deny(missing_docs)]

mod claim;
mod enqueue;
mod error;
mod fleet;
mod home;
mod inspect;
mod lease;
mod listener;
mod maintain;
mod migrate;
mod model;
mod notify;
mod queue;
mod recover;
pub mod sql;
mod subscribe;
pub mod tx;

pub use error::{is_unreachable, Error, Result};
pub use fleet::{Fleet, MEMBERS_CHANNEL};
pub use migrate::{migrate, migrator};
pub use model::{
    ClaimedJob, Enqueued, FailOutcome, Failure, HeartbeatOutcome, JobRecord, JobState, Lease,
    NewJob, QueueStats, RecentWork, Work, RECENT_WINDOW,
};
pub use notify::{Wake, Waker, CHANNEL, MAX_HOPS, POLL_GAP};
pub use queue::{Queue, QueueConfig, StatementMode, IDLE_TIMEOUT};
pub use recover::Requeue;
pub use subscribe::{Event, Subscription, PING};
