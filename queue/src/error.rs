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
    /// A connection closed under us (the LISTEN connection, which reconnects).
    #[error("connection closed: {0}")]
    Disconnected(String),
    /// A database URL or option could not be understood.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the failure is about reaching Postgres (worth backing off and retrying), rather than about
    /// the request itself.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Pool(_) | Error::Disconnected(_) => true,
            Error::Postgres(e) => {
                e.is_closed() || e.code().is_none_or(|c| is_unreachable_code(c.code()))
            }
            Error::Sqlx(e) => is_unreachable(e),
            _ => false,
        }
    }
}

/// Whether a sqlx error means Postgres could not be reached (worth backing off and retrying), as opposed
/// to a bad statement or data. The one rule for the queue and the results store.
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_unreachable_code(&c)),
        _ => false,
    }
}

/// SQLSTATEs of a server going away: 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect
/// now, and the 08xxx connection exceptions.
fn is_unreachable_code(code: &str) -> bool {
    code.starts_with("57P") || code.starts_with("08")
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
