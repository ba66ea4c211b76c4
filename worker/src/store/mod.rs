//! The results store on PostgreSQL (sqlx): images by manifest digest, packages per layer, the layer cache
//! and the compressed analysis documents. All of the store's SQL lives in this module.
//!
//! Layout (see `worker/migrations/`): `fathom_layers` holds one zstd-compressed [`LayerResult`] per
//! (layer digest, catalogers key) and is the [`LayerCache`]; `fathom_layer_packages` lists each layer's
//! packages for queries; `fathom_images` holds an image as its ordered layers plus the analysis document (its package list in
//! parts shared per layer, `fathom_image_package_parts`: see [`parts`]);
//! `fathom_image_references` the references it was seen under; `fathom_submissions` ties a submitted
//! reference to the queue job answering it.
//!
//! [`LayerResult`]: fathom_analyzer::layer::LayerResult
//! [`LayerCache`]: fathom_analyzer::cache::LayerCache

mod codec;
mod content;
mod estimate;
mod images;
mod layers;
mod parts;
mod platforms;
mod retrieved;
mod status;

pub(crate) use codec::{compress, decompress, decompress_bytes, ZSTD_LEVEL};

use std::time::{Duration, SystemTime};

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use content::{page, FilePage, FileQuery};
pub use images::{
    add_reference_in, references_in, save_analysis_in, save_failure_in, ImageRecord, ImageStatus,
    Timings,
};
pub use layers::{PackageHit, PackageQuery};
pub use platforms::PlatformSubmission;
pub use status::{
    submit_estimated_in, submit_in, uncached_bytes_in, unsubmitted_entry, Cursor, StatusEntry,
    SubmissionFilter, SubmitOptions, Submitted, ANALYZE_KIND, STATUSES,
};

/// Channel on which committed changes to stored images and their references are announced (migration
/// `20261203150500_image_notify`): the space-separated digests, `*` when too many to list.
pub const IMAGES_CHANNEL: &str = "fathom_images";

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres (through sqlx) reported an error.
    #[error("results store: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Applying the store's migrations failed.
    #[error("results store migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The queue (used to join submissions with their jobs) reported an error.
    #[error("{0}")]
    Queue(#[from] fathom_queue::Error),
    /// A stored document could not be encoded or decoded.
    #[error("results store document {what}: {message}")]
    Document {
        /// Which document (`image sha256:...`, `layer sha256:...`).
        what: String,
        /// What went wrong.
        message: String,
    },
    /// A layer the analysis read from the cache was deleted by the layer sweeper before the image was
    /// stored (no image referenced it then): the job is retried and analyzes the layer again.
    #[error("layer {digest} was swept from the layer cache while the job ran; retrying")]
    LayerSwept {
        /// The swept layer.
        digest: String,
    },
    /// The database URL could not be understood.
    #[error("invalid database URL: {0}")]
    Url(String),
}

impl StoreError {
    /// Whether the failure is about reaching Postgres (worth backing off and retrying).
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Sqlx(e) => is_connection_error(e),
            StoreError::Queue(e) => e.is_connection(),
            _ => false,
        }
    }

    /// Whether a concurrent transaction got in the way (deadlock or serialization failure, SQLSTATE
    /// 40P01/40001): the same request is worth retrying as it is.
    pub fn is_conflict(&self) -> bool {
        let code = match self {
            StoreError::Sqlx(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
            StoreError::Queue(fathom_queue::Error::Sqlx(sqlx::Error::Database(db))) => {
                db.code().map(|c| c.into_owned())
            }
            StoreError::Queue(fathom_queue::Error::Postgres(e)) => {
                e.code().map(|c| c.code().to_string())
            }
            _ => None,
        };
        matches!(code.as_deref(), Some("40P01" | "40001"))
    }
}

/// Whether a sqlx error means Postgres could not be reached: the queue's rule, so both agree.
pub(crate) use fathom_queue::is_unreachable as is_connection_error;

/// Result alias of the store.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

static STORE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The store's migrator. It shares `_sqlx_migrations` with the queue's, so it ignores versions it does not
/// know (the store's versions are distinct: `20261125100000_...` and later).
///
/// It carries the notifications' outbox (`fathom-notify`'s migrations) too: the worker writes its events
/// (`dev.fathom.image.analyzed`, and through a trigger `analysis_failed`) in the transactions that store
/// results and finish jobs, so wherever the store exists, the outbox does.
pub fn migrator() -> Migrator {
    let mut migrations: Vec<sqlx::migrate::Migration> = STORE_MIGRATIONS.migrations.to_vec();
    migrations.extend(fathom_notify::migrator().migrations.iter().cloned());
    migrations.sort_by_key(|m| m.version);
    let mut migrator = Migrator {
        migrations: std::borrow::Cow::Owned(migrations),
        ..Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator
}

/// Applies the queue's and the store's migrations (safe to run concurrently from many pods: sqlx holds an
/// advisory lock around each run and every statement is idempotent).
pub async fn migrate_all(database_url: &str) -> Result<()> {
    fathom_queue::migrate(database_url).await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(database_url)?)
        .await?;
    migrator().run(&pool).await?;
    pool.close().await;
    Ok(())
}

fn connect_options(database_url: &str) -> Result<PgConnectOptions> {
    let options: PgConnectOptions = database_url
        .parse()
        .map_err(|e: sqlx::Error| StoreError::Url(e.to_string()))?;
    Ok(options.application_name("fathom-store"))
}

/// How long a pooled connection may sit unused before it is pinged on its way out of the pool.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Handle on the results store. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// Names this handle's layer claims, so it only ever withdraws its own.
    claim_owner: std::sync::Arc<str>,
}

impl Store {
    /// A lazily connecting pool of at most `max_connections` (keep it tiny on workers). Never fails because
    /// the server is down; the first query will.
    pub fn connect_lazy(database_url: &str, max_connections: u32) -> Result<Store> {
        Store::connect_lazy_idle(database_url, max_connections, fathom_queue::IDLE_TIMEOUT)
    }

    /// [`Store::connect_lazy`] closing connections unused for `idle_timeout` (`database.idle_timeout`).
    pub fn connect_lazy_idle(
        database_url: &str,
        max_connections: u32,
        idle_timeout: Duration,
    ) -> Result<Store> {
        // Closed when unused (sqlx checks every `idle_timeout`, so none stays idle past twice it): an
        // idle worker holds only its listener.
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .idle_timeout(Some(idle_timeout))
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings a connection when it goes back to the pool and, by default, again when it is
            // taken out: three round trips per statement. A connection handed back moments ago was
            // answered moments ago, so only one that sat idle is pinged before use (a server restarted
            // while it slept is then noticed before a request's statement fails on it).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(connect_options(database_url)?);
        let claim_owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()).into();
        Ok(Store { pool, claim_owner })
    }

    /// The pool, for transactions that span the store and the queue ([`fathom_queue::tx`]).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Checks that the server answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn document_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Document {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// Seconds since the epoch (as `extract(epoch ...)` returns them) to a [`SystemTime`].
pub(crate) fn from_epoch(secs: f64) -> SystemTime {
    if secs.is_finite() && secs >= 0.0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs)
    } else {
        SystemTime::UNIX_EPOCH
    }
}
