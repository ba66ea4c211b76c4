//! `fathom vulns sync|feeds|image|images`: sync OSV feeds into Postgres and re-match the fleet, list feed
//! state, and answer "what does this image carry?" and "which images carry this vulnerability?".

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fathom_vulns::queries::{self, ImageFilter, PackageScope};
use fathom_vulns::{Feeds, Matcher, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::postgres::PgPoolOptions;
use sqlx::Connection;

use crate::config::FathomConfig;

/// Arguments of `fathom vulns`.
#[derive(clap::Args, Debug)]
pub struct VulnsArgs {
    /// YAML configuration file (`services.feeds`, `database.url`); `FATHOM_*` overrides apply.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// PostgreSQL connection URL (else `database.url`).
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: VulnsCommand,
}

/// `fathom vulns` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum VulnsCommand {
    /// Fetch every configured OSV feed (conditionally: an unchanged feed costs one request), store it
    /// as a new generation, then match the whole fleet again. Waits for a core's running feed round
    /// (both take the same Postgres advisory lock).
    Sync {
        /// Feed base URL or directory laid out like OSV's bucket (`ecosystems.txt`, `<ECOSYSTEM>/all.zip`);
        /// default `services.feeds.base_url`.
        #[arg(long)]
        from: Option<String>,
        /// Ecosystems to sync (comma-separated); default `services.feeds.ecosystems`.
        #[arg(long, value_delimiter = ',')]
        ecosystems: Vec<String>,
    },
    /// Feed generations, record counts and the last sync's error per feed.
    Feeds,
    /// Vulnerabilities of a stored image (by manifest digest).
    Image {
        /// Manifest digest (`sha256:...`).
        digest: String,
        /// `all`, `os` or `non-os`.
        #[arg(long = "type", default_value = "all")]
        scope: String,
        /// Only matches with a fix.
        #[arg(long)]
        fixed_only: bool,
    },
    /// Images carrying a vulnerability (OSV id or a CVE alias).
    Images {
        /// `CVE-2024-1234`, `GHSA-...`, `DSA-...`.
        id: String,
        /// Most images to list.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

/// Runs `fathom vulns`.
pub fn run(args: VulnsArgs) -> anyhow::Result<ExitCode> {
    let config = FathomConfig::load(args.config.as_deref())?;
    let url = config.database_url(args.database_url.clone())?;
    super::runtime()?.block_on(async move {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .context("connecting to PostgreSQL")?;
        match args.command {
            VulnsCommand::Sync { from, ecosystems } => {
                let mut feeds = config.services.feeds.clone();
                if let Some(from) = from {
                    feeds.base_url = from;
                }
                if !ecosystems.is_empty() {
                    feeds.ecosystems = ecosystems;
                }
                sync(&pool, &url, &feeds, args.json).await
            }
            VulnsCommand::Feeds => {
                let feeds = queries::feeds(&pool).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&feeds)?);
                } else {
                    for f in feeds {
                        println!("{}", serde_json::to_string(&f)?);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            VulnsCommand::Image {
                digest,
                scope,
                fixed_only,
            } => {
                let scope: PackageScope =
                    scope.parse().map_err(|e| anyhow::anyhow!("--type: {e}"))?;
                let filter = ImageFilter {
                    scope,
                    fixed_only,
                    ..ImageFilter::default()
                };
                let matches = queries::vulns_for_image(&pool, &digest, &filter).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&matches)?);
                } else {
                    println!(
                        "{:<22} {:<30} {:<24} {:<10} FIX",
                        "ID", "PACKAGE", "VERSION", "SEVERITY"
                    );
                    for m in &matches {
                        let v = serde_json::to_value(m)?;
                        println!(
                            "{:<22} {:<30} {:<24} {:<10} {}",
                            v["id"].as_str().unwrap_or(""),
                            v["package"]["name"].as_str().unwrap_or(""),
                            v["package"]["version"].as_str().unwrap_or(""),
                            v["severity"].as_str().unwrap_or(""),
                            v["fix"]["versions"]
                                .as_array()
                                .map(|a| a
                                    .iter()
                                    .filter_map(|x| x.as_str())
                                    .collect::<Vec<_>>()
                                    .join(","))
                                .unwrap_or_default(),
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            VulnsCommand::Images { id, limit } => {
                let hits = queries::images_by_vuln(&pool, &id, "", limit).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&hits)?);
                } else {
                    for h in &hits {
                        println!("{}", serde_json::to_string(h)?);
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
}

/// Syncs with a spinner on a terminal and one line per feed when piped, then re-matches the fleet.
async fn sync(
    pool: &sqlx::PgPool,
    url: &str,
    feeds: &fathom_vulns::VulnsConfig,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let progress = |p: Progress<'_>| match (&bar, p) {
        (Some(bar), Progress::Checking(feed)) => bar.set_message(format!("{feed}: checking")),
        (Some(bar), Progress::Records(feed, n)) => bar.set_message(format!("{feed}: {n} records")),
        (Some(bar), Progress::Done(r)) => bar.println(serde_json::to_string(r).unwrap_or_default()),
        (None, Progress::Done(r)) if !json => {
            eprintln!("{}", serde_json::to_string(r).unwrap_or_default())
        }
        _ => {}
    };
    // The core's feed cycle takes the same lock: one syncer and matcher at a time, fleet-wide.
    let mut lock = sqlx::PgConnection::connect(url)
        .await
        .context("connecting for the feed lock")?;
    if !crate::core::feeds::try_lock(&mut lock).await? {
        if let Some(bar) = &bar {
            bar.set_message("waiting for a core's feed round to finish");
        }
        crate::core::feeds::lock(&mut lock).await?;
    }
    let report = Feeds::sync(pool, feeds, &progress).await?;
    if let Some(bar) = &bar {
        bar.set_message("matching the fleet");
    }
    let rematch = Matcher::rematch(pool).await?;
    // Closing the session releases the lock.
    lock.close().await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"feeds": report.feeds, "rematch": rematch})
            )?
        );
    } else {
        println!("{}", serde_json::to_string(&rematch)?);
    }
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
