//! `fathom policy validate FILE`: check a policy bundle before uploading it, every problem with its path.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::core::policy::parse_bundle;

/// Arguments of `fathom policy`.
#[derive(clap::Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand, Debug)]
enum PolicyCommand {
    /// Validate a bundle file (JSON or YAML): exit 0 when valid, 1 with every problem, 2 if unreadable.
    Validate {
        /// The bundle file.
        file: PathBuf,
        /// Print `{"valid", "id", "digest", "rules", "problems": [{path, message}]}`.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `fathom policy`.
pub fn run(args: PolicyArgs) -> anyhow::Result<ExitCode> {
    let PolicyCommand::Validate { file, json } = args.command;
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "fathom policy validate: cannot read {}: {e}",
                file.display()
            );
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let name = file.display();
    let code = match parse_bundle(&text) {
        Ok(bundle) => {
            if json {
                let v = serde_json::json!({"valid": true, "id": bundle.id(), "digest": bundle.digest(),
                    "rules": bundle.rule_count(), "problems": []});
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "{name}: valid bundle {:?} ({} rules, {})",
                    bundle.id(),
                    bundle.rule_count(),
                    bundle.digest()
                )?;
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            if json {
                let v = serde_json::json!({"valid": false, "problems": problems});
                writeln!(out, "{v}")?;
            } else {
                writeln!(
                    out,
                    "{name}: invalid bundle, {} problem(s):",
                    problems.len()
                )?;
                for p in &problems {
                    writeln!(out, "  {}: {}", p.path, p.message)?;
                }
            }
            ExitCode::from(1)
        }
    };
    out.flush()?;
    Ok(code)
}
