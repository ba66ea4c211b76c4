//! The catalog's errors, each mapping to one answer of the watch routes.

/// Everything the catalog can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference or repository that does not parse, or names the wrong thing (a digest never moves).
    #[error("{0}")]
    InvalidReference(String),
    /// A request field with a bad value (an include pattern that does not compile), named.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field at fault (`include`, `exclude`).
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The registry says the tag or repository does not exist, or no such watch.
    #[error("{0}")]
    NotFound(String),
    /// The registry could not be asked, or refused (its answer included).
    #[error("{0}")]
    Registry(String),
    /// Postgres (through sqlx).
    #[error("catalog store: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying the catalog's migrations failed.
    #[error("catalog migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The results store (submissions of the analyses a watch queues).
    #[error("{0}")]
    Store(#[from] fathom_worker::store::StoreError),
}

impl Error {
    /// Whether Postgres could not be reached (worth retrying shortly).
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Sqlx(e) => fathom_queue::is_unreachable(e),
            Error::Store(e) => e.is_connection(),
            _ => false,
        }
    }
}

/// Result alias of the catalog.
pub type Result<T, E = Error> = std::result::Result<T, E>;
