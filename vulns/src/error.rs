//! The crate's error type.

/// Errors of feed syncing, matching and queries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is invalid; names the key.
    #[error("{key}: {message}")]
    Config {
        /// Config key (`services.feeds.base_url`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A feed could not be fetched or read; names the ecosystem.
    #[error("feed {ecosystem}: {message}")]
    Feed {
        /// Ecosystem (or `ecosystems.txt`).
        ecosystem: String,
        /// What went wrong.
        message: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored image document could not be read.
    #[error("image {digest}: document: {message}")]
    Document {
        /// Manifest digest.
        digest: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn feed(ecosystem: &str, message: impl std::fmt::Display) -> Error {
        Error::Feed {
            ecosystem: ecosystem.to_string(),
            message: message.to_string(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
