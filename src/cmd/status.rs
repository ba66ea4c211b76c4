//! `fathom status [REF|DIGEST]`: where submitted images are (queued, analyzing, analyzed, failed).

use std::io::Write;
use std::process::ExitCode;

use fathom_worker::store::StatusEntry;

use super::backend::BackendArgs;

/// Arguments of `fathom status`.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// A submitted reference, or a manifest digest (`sha256:...`); all submissions when absent.
    pub target: Option<String>,
    /// Where to ask: the database or the API.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// At most this many references.
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
    /// A JSON array of {reference, digest, status, error, timings...}.
    #[arg(long)]
    pub json: bool,
}

/// Runs `fathom status`.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let entries = super::runtime()?.block_on(async {
        let backend = args.backend.connect()?;
        backend.status(args.target.as_deref(), args.limit).await
    })?;
    if entries.is_empty() {
        if let Some(target) = &args.target {
            if !args.json {
                anyhow::bail!("nothing known about {target}");
            }
        }
    }
    print(&entries, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints entries as a JSON array or an aligned table.
pub fn print(entries: &[StatusEntry], json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, entries)?;
        writeln!(out)?;
        return Ok(());
    }
    let width = entries
        .iter()
        .map(|e| e.reference.len())
        .max()
        .unwrap_or(9)
        .max(9);
    writeln!(
        out,
        "{:width$}  {:10}  {:19}  DETAIL",
        "REFERENCE", "STATUS", "DIGEST"
    )?;
    for e in entries {
        let digest = e
            .digest
            .as_deref()
            .map(|d| d.chars().take(19).collect::<String>())
            .unwrap_or_else(|| "-".into());
        let detail = match (&e.error, e.packages, e.analysis_ms) {
            (Some(err), _, _) => err.clone(),
            (None, Some(p), Some(ms)) => format!("{p} packages, {ms} ms"),
            _ => format!("attempts {}", e.attempts),
        };
        writeln!(
            out,
            "{:width$}  {:10}  {digest:19}  {detail}",
            e.reference, e.status
        )?;
    }
    Ok(())
}
