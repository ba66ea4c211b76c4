//! `fathom images rm DIGEST [--force]` and `fathom images prune [--dry-run]`: forget stored images, by
//! hand or by the configured retention rules (`services.catalog.retention`). `rm` works on the database
//! or through the API (`--api`); `prune` on the database with the configuration's rules, or through the
//! API with the core's.

use std::process::ExitCode;

use reqwest::Method;
use serde_json::Value;

use super::client::ClientArgs;
use crate::core::forget::delete::{delete_image, Outcome, Rules};
use crate::core::forget::retention::prune;

/// Arguments of `fathom images`: the configuration (`database.url`, `services.catalog.retention`,
/// `services.webhook.inventory_ttl`), the database or the API, and the subcommand.
#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Where to work: the database, or the core's API.
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

/// `fathom images` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum ImagesCommand {
    /// Delete a stored image (record, references, vulnerability index, checks, inventory rows); its
    /// layers go with the next layer sweep unless another image uses them.
    Rm {
        /// The image's manifest digest (`sha256:...`).
        digest: String,
        /// Delete even while a job, a watched tag or a running workload uses it.
        #[arg(long)]
        force: bool,
    },
    /// Apply `services.catalog.retention` once: delete what the rules select (never what a job, a watched
    /// tag or a running workload uses).
    Prune {
        /// Only list what would be deleted and why (and what would be kept).
        #[arg(long)]
        dry_run: bool,
    },
}

/// Runs `fathom images`. Exit 0 done; 1 when `rm` found the image in use (without --force), unknown, or
/// failed.
pub fn run(args: ImagesArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(async move {
        match &args.command {
            ImagesCommand::Rm { digest, force } => rm(&args, digest, *force).await,
            ImagesCommand::Prune { dry_run } => prune_cmd(&args, *dry_run).await,
        }
    })
}

fn check_digest(digest: &str) -> anyhow::Result<()> {
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    anyhow::ensure!(
        ok,
        "{digest:?} is not an image digest: give the manifest digest, sha256:<64 lowercase hex digits> (fathom status REF shows it)"
    );
    Ok(())
}

async fn rm(args: &ImagesArgs, digest: &str, force: bool) -> anyhow::Result<ExitCode> {
    check_digest(digest)?;
    if let Some(api) = args.client.api()? {
        let query = [("force", force.to_string())];
        let path = format!("/v1/images/{digest}");
        api.call(Method::DELETE, &path, &query, None, "images rm")
            .await?;
        println!("deleted {digest}");
        return Ok(ExitCode::SUCCESS);
    }
    let (config, pool) = args.client.database().await?;
    let rules = Rules {
        force,
        inventory_ttl: config.services.webhook.inventory_ttl,
    };
    match delete_image(&pool, digest, rules).await? {
        Outcome::Deleted(d) => {
            if args.client.json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!("deleted {digest}");
                for b in &d.overridden {
                    println!("  (forced past: {})", b.detail);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::NotFound => {
            eprintln!("images rm: no image {digest} is stored");
            Ok(ExitCode::from(1))
        }
        Outcome::Blocked(blockers) => {
            eprintln!(
                "images rm: {}",
                crate::core::api::blocked_message(digest, &blockers)
                    .replace("force=true", "--force")
            );
            Ok(ExitCode::from(1))
        }
    }
}

async fn prune_cmd(args: &ImagesArgs, dry_run: bool) -> anyhow::Result<ExitCode> {
    let report: Value = if let Some(api) = args.client.api()? {
        // The core's rules (its configuration), applied by the core.
        let query = [("dry_run", dry_run.to_string())];
        api.call(
            Method::POST,
            "/v1/images/prune",
            &query,
            None,
            "images prune",
        )
        .await?
    } else {
        let (config, pool) = args.client.database().await?;
        let rules = &config.services.catalog.retention;
        if !rules.enabled() {
            eprintln!(
                "images prune: no retention rule is on (services.catalog.retention.keep_per_tag, untagged_after); nothing to do"
            );
            return Ok(ExitCode::SUCCESS);
        }
        let report = prune(&pool, rules, config.services.webhook.inventory_ttl, dry_run).await?;
        serde_json::to_value(&report)?
    };
    if args.client.json {
        println!("{report}");
    } else {
        print_report(&report, dry_run);
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of a [`crate::core::forget::retention::PruneReport`] (as JSON: the API's answer or the
/// database's report), one line per image.
fn print_report(report: &Value, dry_run: bool) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let verb = if dry_run { "would delete" } else { "deleted" };
    let deleted = report["deleted"].as_array().map_or(&[][..], Vec::as_slice);
    let kept = report["kept"].as_array().map_or(&[][..], Vec::as_slice);
    for d in deleted {
        println!(
            "{verb} {} ({}): {}",
            text(&d["digest"]),
            text(&d["rule"]),
            text(&d["why"])
        );
    }
    for pair in kept {
        let (d, blockers) = (&pair[0], &pair[1]);
        let why: Vec<String> = blockers
            .as_array()
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|b| text(&b["detail"]))
            .collect();
        println!(
            "{} {} ({}): {}",
            if dry_run { "would keep" } else { "kept" },
            text(&d["digest"]),
            text(&d["rule"]),
            why.join("; ")
        );
    }
    if deleted.is_empty() && kept.is_empty() {
        println!("nothing to delete");
    }
}
