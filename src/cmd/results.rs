//! `fathom results DIGEST -o FORMAT`: the stored analysis of an image, in any `scan` output format.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fathom_analyzer::sbom::{self, Format};

use super::backend::BackendArgs;

/// Arguments of `fathom results`.
#[derive(clap::Args, Debug)]
pub struct ResultsArgs {
    /// Manifest digest (`sha256:...`), or a reference the image was analyzed under.
    pub image: String,
    /// Output format: json, cyclonedx-json, spdx-json or table.
    #[arg(short = 'o', long = "output", default_value = "json", value_parser = parse_format)]
    pub output: Format,
    /// Write the output to this file instead of stdout.
    #[arg(long = "file")]
    pub file: Option<PathBuf>,
    /// Where to read: the database or the API.
    #[command(flatten)]
    pub backend: BackendArgs,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Runs `fathom results`.
pub fn run(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let analysis = super::runtime()?.block_on(async {
        let backend = args.backend.connect()?;
        backend.analysis(&args.image).await
    })?;
    match &args.file {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            sbom::write(&analysis, args.output, std::io::BufWriter::new(file))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            sbom::write(&analysis, args.output, &mut out)?;
            out.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
