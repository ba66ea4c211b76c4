//! Test harness (also used by `fathom demo`): throwaway PostgreSQL clusters and per-test databases.
//!
//! `DATABASE_URL` set → tests use that server. Unset → one throwaway cluster per test run, started from the
//! installed binaries and shared by every test process ([`SharedCluster`]); each test gets its own database
//! copied from a migrated template ([`TestDb`]). [`Herd`] simulates an idle fleet of many workers.

mod cluster;
mod herd;
mod shared;
mod testdb;

pub use cluster::{ClusterInfo, Durability, OwnedCluster, PgBinaries};
pub use herd::{Herd, HerdConfig, HerdCounts};
pub use shared::SharedCluster;
pub use testdb::TestDb;
