//! The hot-path statements as text, for tools that must run exactly what the queue runs (the bench's bare-SQL
//! ceiling, `EXPLAIN` by an operator). Parameters are documented on each statement's module.

pub use crate::claim::CLAIM_SQL as CLAIM;
pub use crate::enqueue::ENQUEUE_SQL as ENQUEUE;
pub use crate::inspect::STATS_SQL as STATS;
pub use crate::lease::COMPLETE_SQL as COMPLETE;
pub use crate::lease::HEARTBEAT_SQL as HEARTBEAT;
