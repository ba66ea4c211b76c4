//! Feed IO: where OSV bulk data comes from ([`fetch`]: HTTP with conditional requests, or a directory),
//! and reading a downloaded `all.zip` record by record with bounded memory ([`reader`]).

pub mod fetch;
pub mod reader;

/// Feed settings: the `services.feeds` section.
pub type FeedConfig = crate::config::VulnsConfig;

pub use fetch::{Fetched, Source, Validators};
pub use reader::{read_zip, ReadStats};
