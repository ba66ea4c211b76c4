//! `fathom migrate`: apply the embedded database migrations (queue, then results store).

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
    super::runtime()?.block_on(fathom_worker::store::migrate_all(&args.database_url))?;
    Ok(ExitCode::SUCCESS)
}
