//! `fathom config --config FILE`: load, overlay the environment, validate, and print the effective
//! configuration (JSON), with secrets redacted — what `fathom run` would run with, or the key at fault.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::FathomConfig;

/// Arguments of `fathom config`.
#[derive(clap::Args, Debug)]
pub struct ConfigArgs {
    /// YAML configuration file (absent: defaults plus the `FATHOM_*` environment).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// List every environment variable the configuration honours instead.
    #[arg(long)]
    pub env_keys: bool,
}

/// Runs `fathom config`.
pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    if args.env_keys {
        for key in fathom_config::env::keys(&FathomConfig::default(), crate::config::FILE_ONLY)? {
            let list = if key.list { " (comma-separated)" } else { "" };
            println!(
                "{}\t{}{list}",
                fathom_config::env::env_name(&key.key),
                key.key
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let config = FathomConfig::load(args.config.as_deref())?;
    let json = serde_json::to_string_pretty(&config.redacted())?;
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}
