//! `fathom migrate`: apply the embedded database migrations.

use std::process::ExitCode;

/// Arguments of `fathom migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

/// Runs `fathom migrate`.
pub fn run(_args: MigrateArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("migrate is not implemented yet")
}
