//! `fathom results DIGEST -o FORMAT`: the stored analysis of an image, in any `scan` output format.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use fathom_worker::sbom::{self, Format};
use fathom_worker::store::Store;

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
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Runs `fathom results`.
pub fn run(args: ResultsArgs) -> anyhow::Result<ExitCode> {
    let analysis = super::runtime()?.block_on(async {
        let store = Store::connect_lazy(&args.database_url, 1)?;
        let digest = if args.image.starts_with("sha256:") {
            args.image.clone()
        } else {
            match store.image_by_reference(&args.image).await? {
                Some(image) => image.manifest_digest,
                None => anyhow::bail!("no analyzed image is known under {}", args.image),
            }
        };
        match store.document(&digest).await? {
            Some(doc) => Ok(doc),
            None => match store.image(&digest).await? {
                Some(image) => anyhow::bail!(
                    "{digest} failed to analyze: {}",
                    image.error.unwrap_or_default()
                ),
                None => anyhow::bail!("no analysis stored for {digest}"),
            },
        }
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
