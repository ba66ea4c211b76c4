//! `fathom check SOURCE --policy BUNDLE [--vulns-from URL_OR_DIR]`: analyze the source now, build the
//! policy engine's facts in memory ([`crate::core::facts_local`]), match vulnerabilities from a feed loaded
//! for this image only, and evaluate. No database, no API.

use fathom_analyzer::ImageSource;
use fathom_policy::Evaluation;

use super::check::CheckArgs;
use crate::core::facts_local::{self, ContentRan};
use crate::core::policy::read_bundle_file;

/// Evaluates `args.policy` against `args.image` analyzed now; any failure is an error (exit 2).
pub async fn evaluate(args: &CheckArgs) -> anyhow::Result<Evaluation> {
    let Some(path) = &args.policy else {
        anyhow::bail!("a standalone check needs --policy BUNDLE");
    };
    // The bundle first: a bad bundle should not cost a download.
    let bundle = read_bundle_file(path)?;
    let source: ImageSource = args.image.parse()?;
    let mut options = args.pull.analyzer_options()?;
    // The files and secret_scans gates read the inventory and the findings.
    options.content.enabled = true;
    options.content.secrets.enabled = true;
    options.content.entries_in_document = true;
    let content = ContentRan {
        files: true,
        secrets: true,
    };
    let analysis = super::scan::analyze(&source, options).await?;
    let found = match &args.vulns_from {
        Some(from) => Some(super::scan_vulns::load(&analysis, from).await?),
        None => None,
    };
    let facts = facts_local::from_analysis(
        &analysis,
        content,
        found.as_ref().map(|f| (&f.feed, &f.matches)),
    );
    drop(analysis);
    Ok(fathom_policy::evaluate(
        &bundle,
        &facts,
        jiff::Timestamp::now(),
    ))
}
