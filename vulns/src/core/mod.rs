//! The pure matching core: record model, version comparison, range evaluation, severities, ecosystems.
//! Nothing here does IO, so the policy engine and the standalone scanner can use it directly.

pub mod affected;
pub mod ecosystem;
pub mod matching;
pub mod osv;
pub mod severity;
/// The per-ecosystem orderings live in their own crate, shared with the policy engine.
pub use fathom_versions as version;
