//! Standalone matching, no database: load only the feed records naming packages of one image
//! ([`LocalFeed::load`]: the needed ecosystems' zips streamed and filtered as they are read), then match
//! that image in memory ([`LocalFeed::match_packages`]) with the fleet matcher's semantics
//! ([`crate::core::matching`]), answering in the API's shape ([`crate::queries::VulnMatch`]).

mod load;
mod scan;

pub use load::{LoadProgress, LoadedFeed, LocalFeed, Wanted};
pub use scan::{match_keys, LocalMatch, LocalMatches, ScanPackage};
