//! `fathom submit REF...`: enqueue analyses (deduplicated by reference) and optionally wait for them.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use fathom_worker::store::{StatusEntry, SubmitOptions};

use super::backend::{Backend, BackendArgs};

/// Arguments of `fathom submit`.
#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// Image references (`registry:REF`, or `REF`); a reference already queued or running returns its
    /// live job instead of a new one.
    #[arg(required = true)]
    pub references: Vec<String>,
    /// Where to submit: the database or the API.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Wait until every job finished, showing progress on stderr; exits 1 if any failed.
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this long (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub timeout: Duration,
    /// Attempts before a job with retryable errors is given up (database only; the API uses
    /// services.api.max_attempts).
    #[arg(long, default_value_t = 5)]
    pub max_attempts: i32,
    /// Lower runs first; negative is urgent.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub priority: i16,
    /// Analyze again even if the image was analyzed before (bypasses stored results and cached layers).
    #[arg(long)]
    pub force: bool,
    /// Machine-readable output: a JSON array (job ids, or with --wait the final statuses).
    #[arg(long)]
    pub json: bool,
}

/// Runs `fathom submit`.
pub fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    super::runtime()?.block_on(submit(args))
}

async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let backend = args.backend.connect()?;
    let options = SubmitOptions {
        priority: args.priority,
        max_attempts: args.max_attempts,
        force: args.force,
        cache_key: None,
    };
    let replies = backend.submit(&args.references, &options).await?;
    if !args.wait {
        let mut out = std::io::stdout().lock();
        if args.json {
            let rows: Vec<serde_json::Value> = replies
                .iter()
                .map(|r| serde_json::json!({"reference": r.reference, "job_id": r.job_id, "created": r.created, "status": r.status}))
                .collect();
            serde_json::to_writer_pretty(&mut out, &rows)?;
            writeln!(out)?;
        } else {
            for r in &replies {
                let id = r
                    .job_id
                    .map_or_else(|| "-".to_string(), |id| id.to_string());
                let note = if r.created {
                    String::new()
                } else {
                    format!("\t(already {})", r.status)
                };
                writeln!(out, "{id}\t{}{note}", r.reference)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let references: Vec<String> = replies.into_iter().map(|r| r.reference).collect();
    let entries = wait(&backend, &references, args.timeout).await?;
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
    backend: &Backend,
    references: &[String],
    timeout: Duration,
) -> anyhow::Result<Vec<StatusEntry>> {
    let tty = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let mut entries = Vec::with_capacity(references.len());
        for r in references {
            entries.extend(backend.status(Some(r), 1).await?);
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
