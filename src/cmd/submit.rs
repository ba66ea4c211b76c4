//! `fathom submit REF...`: enqueue analyses (deduplicated by reference) and optionally wait for them.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fathom_queue::{Queue, QueueConfig};
use fathom_worker::store::{StatusEntry, Store};

/// Arguments of `fathom submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// Image references (`registry:REF`, or `REF`); a reference already queued or running returns its
    /// live job instead of a new one.
    #[arg(required = true)]
    pub references: Vec<String>,
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Wait until every job finished, showing progress on stderr; exits 1 if any failed.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub timeout: Duration,
    /// Attempts before a job with retryable errors is given up.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: i32,
    /// Machine-readable output: a JSON array (job ids, or with --wait the final statuses).
    #[arg(long)]
    pub json: bool,
}

/// Runs `fathom submit`.
pub fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(submit(args))
}

async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect_lazy(&args.database_url, 1)?;
    let enqueued = store.submit(&args.references, args.max_attempts).await?;
    if !args.wait {
        let mut out = std::io::stdout().lock();
        if args.json {
            let rows: Vec<serde_json::Value> = args
                .references
                .iter()
                .zip(&enqueued)
                .map(|(r, e)| serde_json::json!({"reference": r, "job_id": e.id, "created": e.created}))
                .collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        } else {
            for (r, e) in args.references.iter().zip(&enqueued) {
                let note = if e.created { "" } else { "\t(already queued)" };
                writeln!(out, "{}\t{r}{note}", e.id)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let queue = Queue::connect(
        &args.database_url,
        QueueConfig {
            pool_size: 1,
            ..Default::default()
        },
    )?;
    let entries = wait(&store, &queue, &args.references, args.timeout).await?;
    super::status::print(&entries, args.json)?;
    let failed = entries.iter().filter(|e| e.status != "analyzed").count();
    if failed > 0 {
        eprintln!("fathom: {failed} of {} images failed", entries.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn finished(e: &StatusEntry) -> bool {
    matches!(e.status.as_str(), "analyzed" | "failed" | "cancelled")
}

async fn wait(
    store: &Store,
    queue: &Queue,
    references: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<StatusEntry>> {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let mut entries = Vec::with_capacity(references.len());
        for r in references {
            entries.extend(store.status(queue, Some(r), 1).await?);
        }
        let done = entries.iter().filter(|e| finished(e)).count();
        let running = entries.iter().filter(|e| e.status == "analyzing").count();
        let line = format!(
            "fathom: {done}/{} done, {running} analyzing, {:.0} s",
            references.len(),
            started.elapsed().as_secs_f64()
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else if line.split(',').take(2).collect::<String>() != last {
            eprintln!("{line}");
        }
        last = line.split(',').take(2).collect();
        if done == references.len() {
            if tty {
                eprintln!();
            }
            return Ok(entries);
        }
        if started.elapsed() > timeout {
            anyhow::bail!(
                "gave up waiting after {}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
