//! The queue's one error type.

/// Everything a queue operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The hot-path driver (tokio-postgres) reported an error.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be taken from the pool.
    #[error("connection pool: {0}")]
    Pool(String),
    /// sqlx (migrations, transactional variants) reported an error.
    #[error("postgres (sqlx): {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The job's lease is no longer ours: it expired and was rescued (and maybe re-claimed) or the job
    /// was cancelled. The result must be dropped; whoever holds the lease now owns the job.
    #[error("lease lost on job {job_id}: it expired or was taken over by another worker")]
    LeaseLost {
        /// The job whose lease was lost.
        job_id: i64,
    },
    /// A database URL or option could not be understood.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The throwaway-cluster harness could not start or reach a server.
    #[error("{0}")]
    Harness(String),
}

impl Error {
    /// Whether the failure is about reaching Postgres (worth backing off and retrying), rather than about
    /// the request itself.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Pool(_) => true,
            Error::Postgres(e) => e.is_closed() || e.code().is_none(),
            Error::Sqlx(e) => matches!(
                e,
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            _ => false,
        }
    }
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => Error::Postgres(e),
            other => Error::Pool(other.to_string()),
        }
    }
}

/// Result alias of the queue crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
