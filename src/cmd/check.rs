//! `fathom check IMAGE`: evaluate an image against a policy bundle, for CI pipelines. Exit 0 on pass (GO
//! or WARN), 1 on fail (STOP), 2 when no verdict could be reached. With `--policy BUNDLE` the image is any
//! scan source, analyzed now and evaluated without a database ([`super::check_local`]); without it, a
//! stored image is evaluated through the database or the API.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use fathom_analyzer::source::registry::canonical_reference;
use fathom_policy::ImageRef;
use fathom_policy::{Evaluation, Status};

use super::backend::{Backend, BackendArgs};
use crate::core::policy::config::PolicyEngineConfig;
use crate::core::policy::{read_bundle_file, PolicyEngine};

/// Arguments of `fathom check`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Standalone or stored: with --policy, IMAGE is a `fathom scan` source \
(registry:REF, oci-dir:PATH[:REF], docker-archive:PATH) analyzed now and evaluated without a database \
(--vulns-from adds vulnerability matches; without it the vulnerabilities gate reports its data as \
unavailable). Without --policy, IMAGE is a stored image (digest or reference) evaluated through \
--database-url or --api.\n\nExit codes: 0 GO or WARN, 1 STOP, 2 error."
)]
pub struct CheckArgs {
    /// Stored: manifest digest (`sha256:...`), a reference the image was submitted under, or any
    /// reference pinned to a stored digest (`REPO[:TAG]@sha256:...`), evaluated under that reference.
    /// With --policy: a scan source (`registry:REF`, `oci-dir:PATH[:REF]`, `docker-archive:PATH`).
    pub image: String,
    /// Standalone: analyze IMAGE now and evaluate this bundle file (JSON or YAML); no database or API.
    #[arg(long, value_name = "BUNDLE", conflicts_with_all = ["bundle", "policy_id"])]
    pub policy: Option<PathBuf>,
    /// Standalone: match vulnerabilities from this OSV feed source (base URL, `file://` or directory).
    #[arg(long = "vulns-from", value_name = "URL_OR_DIR", requires = "policy")]
    pub vulns_from: Option<String>,
    /// Output: `table` (anchore-cli's check detail) or `json` (the whole evaluation).
    #[arg(short = 'o', long = "output", value_parser = ["table", "json"], conflicts_with = "json")]
    pub output: Option<String>,
    /// Standalone: where and how to pull IMAGE.
    #[command(flatten)]
    pub pull: super::scan::PullArgs,
    /// Evaluate this bundle file (JSON or YAML) instead of a stored one (needs the database).
    #[arg(long, conflicts_with = "policy_id")]
    pub bundle: Option<PathBuf>,
    /// A stored bundle's id (default: the active bundle, else the built-in default bundle).
    #[arg(long)]
    pub policy_id: Option<String>,
    /// Same as `-o json`.
    #[arg(long)]
    pub json: bool,
    /// Where to read: the database or the API.
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Runs `fathom check`; its errors are exit code 2, so they never read as a STOP.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let result = super::runtime().and_then(|rt| {
        if args.policy.is_some() {
            rt.block_on(super::check_local::evaluate(&args))
        } else {
            rt.block_on(evaluate(&args))
        }
    });
    let evaluation = match result {
        Ok(e) => e,
        Err(err) => {
            eprintln!("fathom check: {err:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json || args.output.as_deref() == Some("json") {
        serde_json::to_writer_pretty(&mut out, &evaluation)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &evaluation)?;
    }
    out.flush()?;
    Ok(match evaluation.status {
        Status::Pass => ExitCode::SUCCESS,
        Status::Fail => ExitCode::from(1),
    })
}

/// The digest and the reference (`None` for a digest) of what was asked about.
async fn resolve(backend: &Backend, image: &str) -> anyhow::Result<(String, Option<String>)> {
    if image.starts_with("sha256:") {
        return Ok((image.to_string(), None));
    }
    let text = image.strip_prefix("registry:").unwrap_or(image);
    let reference = canonical_reference(text)
        .map_err(|e| anyhow::anyhow!("{image:?} is not an image reference or digest: {e}"))?;
    // Pinned: the digest is the image, the reference what the policy selects on, whatever it was
    // submitted under.
    if let Some(digest) = ImageRef::parse(&reference).ok().and_then(|r| r.digest) {
        return Ok((digest, Some(reference)));
    }
    let entry = backend
        .status(Some(&reference), 1)
        .await?
        .into_iter()
        .next()
        .with_context(|| format!("nothing is known about {reference}"))?;
    let digest = entry.digest.with_context(|| {
        format!(
            "{reference} is {}: nothing analyzed to check yet",
            entry.status
        )
    })?;
    Ok((digest, Some(entry.reference)))
}

async fn evaluate(args: &CheckArgs) -> anyhow::Result<Evaluation> {
    let backend = args.backend.connect()?;
    let (digest, tag) = resolve(&backend, &args.image).await?;
    match &backend {
        Backend::Database(store) => {
            let engine = PolicyEngine::new(
                store.clone(),
                PolicyEngineConfig {
                    cache: false,
                    ..PolicyEngineConfig::default()
                },
            )?;
            let bundle = match &args.bundle {
                Some(path) => Arc::new(read_bundle_file(path)?),
                None => engine
                    .bundle(args.policy_id.as_deref())
                    .await
                    .map_err(|e| anyhow::anyhow!(e.message))?,
            };
            let checked = engine
                .check(&digest, tag.as_deref(), &bundle)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
            Ok(Arc::unwrap_or_clone(checked.evaluation))
        }
        Backend::Api(api) => {
            if args.bundle.is_some() {
                anyhow::bail!(
                    "--bundle is evaluated here and needs --database-url; through --api, upload it \
                     (POST /v1/policies) and pass --policy-id"
                );
            }
            let mut query = Vec::new();
            if let Some(tag) = tag {
                query.push(("tag", tag));
            }
            if let Some(id) = &args.policy_id {
                query.push(("policy_id", id.clone()));
            }
            api.get_json(&format!("/v1/images/{digest}/check"), &query, "check")
                .await
        }
    }
}

/// anchore-cli's `evaluate check --detail` shape: a header, then Gate / Trigger / Detail / Action rows.
fn print_table(out: &mut impl Write, e: &Evaluation) -> std::io::Result<()> {
    writeln!(out, "Image Digest: {}", e.image_digest)?;
    writeln!(out, "Full Tag: {}", e.repo_tag)?;
    writeln!(out, "Bundle: {} ({})", e.bundle_id, e.bundle_digest)?;
    writeln!(out, "Status: {}", word(e.status))?;
    writeln!(out, "Final Action: {}", word(e.final_action))?;
    writeln!(out, "Final Action Reason: {}", word(e.final_action_reason))?;
    if e.rows.is_empty() {
        return Ok(());
    }
    let mut lines = vec![[
        "Gate".to_string(),
        "Trigger".to_string(),
        "Detail".to_string(),
        "Action".to_string(),
    ]];
    for r in &e.rows {
        let action = match &r.whitelisted {
            Some(w) => format!(
                "{} (whitelisted: {})",
                word(r.gate_action),
                w.matched_rule_id
            ),
            None => word(r.gate_action),
        };
        lines.push([
            r.gate.to_string(),
            r.trigger.to_string(),
            r.check_output.to_string(),
            action,
        ]);
    }
    let widths: Vec<usize> = (0..3)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    writeln!(out)?;
    for l in &lines {
        writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            l[0],
            l[1],
            l[2],
            l[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        )?;
    }
    Ok(())
}

/// A unit enum as its JSON spells it (`pass`, `STOP`, `policy_evaluation`).
fn word(value: impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}
