//! `fathom scan SOURCE`: analyze one image and print its SBOM.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use fathom_analyzer::content::clamd::{ClamdAddress, MalwareOptions};
use fathom_analyzer::content::{ContentOptions, ContentRule, ContentSearcher};
use fathom_analyzer::sbom::{self, Format};
use fathom_analyzer::source::auth::Credentials;
use fathom_analyzer::source::registry::RegistryOptions;
use fathom_analyzer::{Analyzer, AnalyzerOptions, ImageAnalysis, ImageSource, NoCache};

/// Arguments of `fathom scan`.
#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Image source: `registry:REF` (default), `oci-dir:PATH[:REF]` or `docker-archive:PATH`.
    pub source: String,
    /// Output format: json, cyclonedx-json, spdx-json or table.
    #[arg(short = 'o', long = "output", default_value = "json", value_parser = parse_format)]
    pub output: Format,
    /// Write the output to this file instead of stdout.
    #[arg(long = "file")]
    pub file: Option<PathBuf>,
    /// Where and how to pull the image.
    #[command(flatten)]
    pub pull: PullArgs,
    /// Layers fetched and analyzed at once (default: number of CPUs, at least 2).
    #[arg(long)]
    pub layers_in_flight: Option<usize>,
    /// Packages only: no file inventory digests, secret search or copyright licenses.
    #[arg(long)]
    pub no_content: bool,
    /// No secret search.
    #[arg(long)]
    pub no_secrets: bool,
    /// No licenses from Debian copyright files.
    #[arg(long)]
    pub no_licenses: bool,
    /// No sha256 of files in the inventory.
    #[arg(long)]
    pub no_file_digests: bool,
    /// Leave the file inventory (`files.entries`) out of the JSON output.
    #[arg(long)]
    pub no_file_entries: bool,
    /// Match vulnerabilities without a database: an OSV feed source (base URL, `file://` or directory laid
    /// out like OSV's bucket: `ecosystems.txt`, `<ECOSYSTEM>/all.zip`). Only the ecosystems the image has
    /// packages in are downloaded, and only records naming its packages are kept. Adds `vulnerabilities`
    /// to json and cyclonedx-json; makes the table list ID, PACKAGE, INSTALLED, FIXED IN, SEVERITY.
    #[arg(long = "vulns-from", value_name = "URL_OR_DIR")]
    pub vulns_from: Option<String>,
}

/// How a command that analyzes an image now pulls it: `scan` and standalone `check` share these flags.
#[derive(clap::Args, Debug, Clone)]
pub struct PullArgs {
    /// Platform to pick from a multi-arch image (OS/ARCH[/VARIANT]).
    #[arg(long, default_value = "linux/amd64")]
    pub platform: String,
    /// Registry (HOST:PORT) to reach over plain HTTP; repeatable or comma-separated.
    #[arg(
        long = "insecure-registry",
        env = "FATHOM_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure_registries: Vec<String>,
    /// Content search rule (repeatable): files whose contents match REGEX (Rust regex syntax, `^`/`$` per
    /// line) are reported under NAME, for the `files.content_regex_match` policy gate. Text files up to
    /// 1 MiB are searched, binary files skipped.
    #[arg(long = "content-search", value_name = "NAME=REGEX", value_parser = parse_content_rule)]
    pub content_search: Vec<ContentRule>,
    /// Keep the matched text (first 256 bytes) with each `--content-search` match.
    #[arg(long = "content-search-store-match", requires = "content_search")]
    pub content_search_store_match: bool,
    /// Scan every file up to 100 MiB for malware with ClamAV's clamd at ADDR (`host:port`,
    /// `tcp://host:port` or `unix:/path`), for the `malware` policy gate; clamd unreachable, slower than
    /// 60 s for a file or answering garbage fails the command.
    #[arg(long = "clamd", value_name = "ADDR", value_parser = parse_clamd)]
    pub clamd: Option<ClamdAddress>,
}

fn parse_clamd(s: &str) -> Result<ClamdAddress, String> {
    s.parse()
}

/// `NAME=REGEX` of `--content-search`; the pattern is compiled with the other rules.
fn parse_content_rule(s: &str) -> Result<ContentRule, String> {
    match s.split_once('=') {
        Some((name, pattern)) if !name.trim().is_empty() && !pattern.is_empty() => {
            Ok(ContentRule {
                name: name.trim().to_string(),
                pattern: pattern.to_string(),
                store_match: false,
            })
        }
        _ => Err(format!(
            "want NAME=REGEX (e.g. PASSWORD='password\\s*='), got {s:?}"
        )),
    }
}

impl PullArgs {
    /// Analyzer options for these flags (platform, plain-HTTP registries, the registry credentials of
    /// the environment, content search rules); the other content options stay at their defaults.
    pub(crate) fn analyzer_options(&self) -> anyhow::Result<AnalyzerOptions> {
        let credentials = Credentials::from_env().map_err(anyhow::Error::msg)?;
        let rules: Vec<ContentRule> = self
            .content_search
            .iter()
            .map(|r| ContentRule {
                store_match: self.content_search_store_match,
                ..r.clone()
            })
            .collect();
        // Compiled now, so a bad pattern is refused before anything is downloaded.
        ContentSearcher::new(&rules)
            .map_err(|e| anyhow::anyhow!("--content-search: {}", e.message))?;
        Ok(AnalyzerOptions {
            content: ContentOptions {
                content_search: rules,
                // The worker's defaults (`services.analyzer.malware.*`).
                malware: self.clamd.clone().map(|clamd| MalwareOptions {
                    clamd,
                    max_file_size: 100 << 20,
                    timeout: std::time::Duration::from_secs(60),
                }),
                ..Default::default()
            },
            platform: self.platform.parse()?,
            registry: RegistryOptions {
                insecure: insecure_registries(self.insecure_registries.clone()),
                credentials,
                ..Default::default()
            },
            ..Default::default()
        })
    }
}

/// The flag (or `FATHOM_INSECURE_REGISTRIES`), plus `FATHOM_REGISTRY_INSECURE`, the name the config file's
/// `registry.insecure` key takes in the environment: the same variables work for `scan` and for workers.
pub(crate) fn insecure_registries(from_flag: Vec<String>) -> Vec<String> {
    let from_key = std::env::var("FATHOM_REGISTRY_INSECURE").unwrap_or_default();
    from_flag
        .into_iter()
        .chain(from_key.split(',').map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .collect()
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Analyzes `source`, with a one-line progress note on a terminal.
pub(crate) async fn analyze(
    source: &ImageSource,
    options: AnalyzerOptions,
) -> anyhow::Result<ImageAnalysis> {
    let analyzer = Analyzer::new(fathom_analyzer::catalog::default_catalogers(), options);
    let progress = std::io::stderr().is_terminal();
    if progress {
        eprint!("fathom: scanning {source} …");
    }
    let started = Instant::now();
    let analysis = analyzer.analyze(source, &NoCache).await;
    if progress {
        eprint!("\r\x1b[2K");
    }
    let analysis = analysis?;
    if progress {
        eprintln!(
            "fathom: {} packages in {} layers, {:.2} s",
            analysis.packages.len(),
            analysis.layers.len(),
            started.elapsed().as_secs_f64()
        );
    }
    for warning in &analysis.warnings {
        tracing::warn!("{warning}");
    }
    Ok(analysis)
}

/// Runs `fathom scan`.
pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let source: ImageSource = args.source.parse()?;
    let mut options = args.pull.analyzer_options()?;
    if let Some(n) = args.layers_in_flight {
        options.layers_in_flight = n.max(1);
    }
    if args.no_content && !args.pull.content_search.is_empty() {
        anyhow::bail!("--content-search runs in the content pass; drop --no-content to use it");
    }
    if args.no_content && args.pull.clamd.is_some() {
        anyhow::bail!("--clamd scans in the content pass; drop --no-content to use it");
    }
    let content = &mut options.content;
    content.enabled = !args.no_content;
    content.secrets.enabled = !args.no_secrets;
    content.licenses = !args.no_licenses;
    if args.no_file_digests {
        content.file_digest_max_bytes = 0;
    }
    content.entries_in_document = !args.no_file_entries;
    if args.vulns_from.is_some() && args.output == Format::SpdxJson {
        anyhow::bail!("--vulns-from writes json, cyclonedx-json or table; SPDX 2.3 has no place for vulnerabilities");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let analysis = runtime.block_on(analyze(&source, options))?;
    let found = match &args.vulns_from {
        Some(from) => Some(runtime.block_on(super::scan_vulns::load(&analysis, from))?),
        None => None,
    };
    let write = |out: &mut dyn Write| -> anyhow::Result<()> {
        match &found {
            Some(found) => super::scan_vulns::write(&analysis, args.output, found, out),
            None => Ok(sbom::write(&analysis, args.output, out)?),
        }
    };
    match &args.file {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write(&mut std::io::BufWriter::new(file))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            write(&mut out)?;
            out.flush()?;
        }
    }
    // The process exits next: freeing tens of thousands of inventory entries one by one would only
    // delay the exit (1–2 % of a large image's scan).
    std::mem::forget(found);
    std::mem::forget(analysis);
    Ok(ExitCode::SUCCESS)
}
