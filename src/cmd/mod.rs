//! One module per subcommand: clap arguments live here and are converted into each crate's config.

pub mod migrate;
pub mod scan;
