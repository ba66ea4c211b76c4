//! The queue's schema migrations, embedded in the binary.

use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

use crate::error::Result;

static QUEUE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The queue's migrator. Other schemas (the results store) share the `_sqlx_migrations` table with distinct
/// versions, so each migrator ignores versions it does not know.
pub fn migrator() -> Migrator {
    let mut migrator = Migrator {
        migrations: QUEUE_MIGRATIONS.migrations.clone(),
        ..Migrator::DEFAULT
    };
    migrator.set_ignore_missing(true);
    migrator
}

/// Applies the queue's migrations. Safe to run from many processes at once at start-up: sqlx takes a
/// Postgres advisory lock around the run, and every statement is idempotent besides.
pub async fn migrate(database_url: &str) -> Result<()> {
    // A one-connection pool rather than a bare connection: `Migrator::run` on `&mut PgConnection` makes
    // the future non-`Send` (sqlx's Acquire lifetimes), which callers spawning it cannot accept.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(database_url)
        .await?;
    migrator().run(&pool).await?;
    pool.close().await;
    Ok(())
}
