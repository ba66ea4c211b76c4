//! The connection flags `fathom images`, `watch`, `events` and `notifications` share: a configuration
//! file, the database, or the core's API with its token, and JSON output. Global, so they may follow
//! the subcommand (`fathom watch list --api URL`).

use std::path::PathBuf;

use anyhow::Context;

use super::backend::ApiClient;
use crate::config::FathomConfig;

/// Where a command reads and writes: the database (`--database-url`, else the configuration's
/// `database.url`) or, with `--api`, the core's API.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// YAML configuration file (`database.url` and the sections the command reads); `FATHOM_*`
    /// overrides apply.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// PostgreSQL connection URL (else `database.url`; unused with --api).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Go through the core's API at this base URL (e.g. http://fathom-core:8228) instead of the
    /// database.
    #[arg(long, env = "FATHOM_API_URL", global = true)]
    pub api: Option<String>,
    /// Bearer token for --api.
    #[arg(long, env = "FATHOM_API_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientArgs {
    /// The client of the API, when `--api` was given.
    pub fn api(&self) -> anyhow::Result<Option<ApiClient>> {
        self.api
            .as_deref()
            .map(|url| ApiClient::new(url, self.token.clone()))
            .transpose()
    }

    /// The configuration (`--config`, else defaults and `FATHOM_*` overrides).
    pub fn load(&self) -> anyhow::Result<FathomConfig> {
        Ok(FathomConfig::load(self.config.as_deref())?)
    }

    /// The configuration and a small pool on its database.
    pub async fn database(&self) -> anyhow::Result<(FathomConfig, sqlx::PgPool)> {
        let config = self.load()?;
        let url = config.database_url(self.database_url.clone())?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .context("connecting to PostgreSQL")?;
        Ok((config, pool))
    }
}
