//! `fathom queue stats`: the queue's depth and age (the autoscaler's input) and dead jobs by last error
//! kind, for people and scripts; `fathom queue retry` ([`super::queue_retry`]).

use std::io::Write;
use std::process::ExitCode;

use fathom_queue::{Queue, QueueConfig};

/// Arguments of `fathom queue`.
#[derive(clap::Args, Debug)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(clap::Subcommand, Debug)]
enum QueueCommand {
    /// Counts by state, oldest ready job's age, and running jobs per worker.
    Stats {
        /// PostgreSQL connection URL.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Requeues dead or failed jobs, keeping their history.
    Retry(super::queue_retry::RetryArgs),
}

/// Runs `fathom queue`.
pub fn run(args: QueueArgs) -> anyhow::Result<ExitCode> {
    let (database_url, json) = match args.command {
        QueueCommand::Stats { database_url, json } => (database_url, json),
        QueueCommand::Retry(retry) => return super::queue_retry::run(retry),
    };
    let (stats, owners, dead_by_kind) = super::runtime()?.block_on(async {
        let queue = Queue::connect(
            &database_url,
            QueueConfig {
                pool_size: 1,
                ..Default::default()
            },
        )?;
        anyhow::Ok((
            queue.stats().await?,
            queue.lease_owners().await?,
            queue.dead_by_kind().await?,
        ))
    })?;
    let mut out = std::io::stdout().lock();
    if json {
        let mut value = serde_json::to_value(&stats)?;
        value["workers"] = serde_json::to_value(&owners)?;
        value["dead_by_kind"] = serde_json::to_value(&dead_by_kind)?;
        serde_json::to_writer_pretty(&mut out, &value)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "ready      {}", stats.ready)?;
    writeln!(out, "scheduled  {}", stats.scheduled)?;
    writeln!(out, "running    {}", stats.running)?;
    writeln!(out, "succeeded  {}", stats.succeeded)?;
    writeln!(out, "failed     {}", stats.failed)?;
    writeln!(out, "dead       {}", stats.dead)?;
    for (kind, n) in &dead_by_kind {
        writeln!(out, "  {kind}  {n}")?;
    }
    writeln!(out, "cancelled  {}", stats.cancelled)?;
    writeln!(out, "oldest ready age  {:.1} s", stats.oldest_ready_age_s)?;
    for (worker, jobs) in &owners {
        writeln!(out, "worker {worker}  {jobs} running")?;
    }
    Ok(ExitCode::SUCCESS)
}
