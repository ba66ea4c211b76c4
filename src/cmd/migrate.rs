//! `fathom migrate`: apply the embedded database migrations (queue, results store, vulnerability feeds, policy bundles, catalog, notifications' outbox).

use std::process::ExitCode;

/// Arguments of `fathom migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

/// Runs `fathom migrate`.
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async {
        // Each migration set once: the queue's and the store's (which carries the notifications'
        // outbox, see `fathom_worker::store::migrator`), then the core's.
        fathom_worker::store::migrate_all(&args.database_url).await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&args.database_url)
            .await?;
        fathom_vulns::migrator().run(&pool).await?;
        fathom_policy::store::migrator().run(&pool).await?;
        fathom_catalog::migrator().run(&pool).await?;
        pool.close().await;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
