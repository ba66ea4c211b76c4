//! `fathom scan SOURCE --vulns-from URL_OR_DIR`: load only the feed records naming the image's packages,
//! match them in memory ([`fathom_vulns::local`]) and add the matches to the json, CycloneDX and table
//! outputs. No database: `fix_observed_at` is always null (there is no history of earlier feeds).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use fathom_analyzer::sbom::{self, Format};
use fathom_analyzer::ImageAnalysis;
use fathom_vulns::core::ecosystem::{DistroRef, PackageFacts};
use fathom_vulns::local::{match_keys, LoadProgress, LocalFeed, LocalMatches, ScanPackage};
use fathom_vulns::queries::VulnMatch;
use fathom_vulns::VulnsConfig;
use serde_json::{json, Value};

/// A feed loaded for one image and the image's matches.
pub struct Standalone {
    /// Where the feed came from.
    pub source: String,
    /// The records kept.
    pub feed: LocalFeed,
    /// The matches.
    pub matches: LocalMatches,
}

fn distro(analysis: &ImageAnalysis) -> Option<DistroRef> {
    analysis.distro.as_ref().map(|d| DistroRef {
        id: d.id.clone(),
        version_id: d.version_id.clone(),
    })
}

fn packages(analysis: &ImageAnalysis) -> Vec<ScanPackage<'_>> {
    analysis
        .packages
        .iter()
        .map(|p| ScanPackage {
            facts: PackageFacts {
                package_type: p.package.package_type.as_str(),
                name: &p.package.name,
                version: &p.package.version,
                purl: &p.package.purl,
                metadata: &p.package.metadata,
            },
            layer: &p.introduced_in.digest,
        })
        .collect()
}

/// Loads the feeds the image needs from `from` and matches it. Shows a spinner on a terminal.
pub async fn load(analysis: &ImageAnalysis, from: &str) -> anyhow::Result<Standalone> {
    let config = VulnsConfig {
        base_url: from.to_string(),
        ..VulnsConfig::default()
    };
    config
        .validate("--vulns-from")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let distro = distro(analysis);
    let packages = packages(analysis);
    let (_, wanted) = match_keys(&packages, distro.as_ref());
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let progress = |p: LoadProgress<'_>| {
        let Some(bar) = &bar else { return };
        match p {
            LoadProgress::Listing => {
                bar.set_message(format!("vulnerability feeds: listing {from}"))
            }
            LoadProgress::Downloading(f) => {
                bar.set_message(format!("vulnerability feeds: downloading {f}"))
            }
            LoadProgress::Downloaded(f, n, total) => bar.set_message(match total {
                Some(t) => format!(
                    "vulnerability feeds: downloading {f}: {} of {}",
                    human_bytes(n),
                    human_bytes(t)
                ),
                None => format!("vulnerability feeds: downloading {f}: {}", human_bytes(n)),
            }),
            LoadProgress::Reading(f, bytes) => bar.set_message(format!(
                "vulnerability feeds: reading {f} ({})",
                human_bytes(bytes)
            )),
            LoadProgress::Done(f) => bar.println(format!(
                "fathom: feed {}: {} of {} records name a package of this image",
                f.feed, f.kept, f.records
            )),
            LoadProgress::Missing(f) => bar.println(format!(
                "fathom: feed {f}: not listed by {from}; its packages are not matched"
            )),
        }
    };
    let feed = LocalFeed::load(&config, &wanted, &progress).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let feed = feed.with_context(|| format!("loading vulnerability feeds from {from}"))?;
    let matches = feed.match_packages(&packages, distro.as_ref());
    if matches.undecidable > 0 {
        tracing::warn!(
            undecidable = matches.undecidable,
            "some versions could not be compared in their ecosystem's ordering"
        );
    }
    Ok(Standalone {
        source: from.to_string(),
        feed,
        matches,
    })
}

fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// Writes the SBOM in `format` with the matches added.
pub fn write(
    analysis: &ImageAnalysis,
    format: Format,
    found: &Standalone,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let vulns: Vec<&VulnMatch> = found.matches.matches.iter().map(|m| &m.vuln).collect();
    match format {
        Format::Table => return Ok(table(&vulns, &mut out)?),
        Format::SpdxJson => anyhow::bail!(
            "--vulns-from writes json, cyclonedx-json or table; SPDX 2.3 has no place for vulnerabilities"
        ),
        Format::Json => {
            let mut doc = serde_json::to_value(analysis)?;
            doc["vulnerabilities"] = serde_json::to_value(&vulns)?;
            doc["vulnerability_feeds"] = json!({
                "source": found.source,
                "loaded_at": humantime::format_rfc3339_seconds(found.feed.loaded_at).to_string(),
                "feeds": found.feed.feeds,
                "missing": found.feed.missing,
            });
            serde_json::to_writer_pretty(&mut out, &doc)?;
        }
        Format::CycloneDxJson => {
            let mut bytes = Vec::new();
            sbom::write(analysis, format, &mut bytes)?;
            let mut doc: Value = serde_json::from_slice(&bytes)?;
            doc["vulnerabilities"] = Value::Array(cyclonedx(&found.matches));
            serde_json::to_writer_pretty(&mut out, &doc)?;
        }
    }
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// CycloneDX 1.5 `vulnerabilities`: one entry per record id, `affects` naming the components' bom-refs
/// (`pkg-N`, the SBOM writer's numbering of the same package list).
fn cyclonedx(matches: &LocalMatches) -> Vec<Value> {
    let mut by_id: BTreeMap<&str, Vec<(usize, &VulnMatch)>> = BTreeMap::new();
    let mut order = Vec::new();
    for m in &matches.matches {
        let list = by_id.entry(m.vuln.id.as_str()).or_default();
        if list.is_empty() {
            order.push(m.vuln.id.as_str());
        }
        list.push((m.package, &m.vuln));
    }
    order
        .into_iter()
        .map(|id| {
            let list = &by_id[id];
            let first = list[0].1;
            let severity = match first.severity.as_str() {
                "negligible" => "info",
                s @ ("low" | "medium" | "high" | "critical") => s,
                _ => "unknown",
            };
            let mut rating = json!({"severity": severity, "method": "other",
                "source": {"name": first.namespace}});
            if let Some(score) = first.cvss_score {
                rating["score"] = json!(score);
            }
            let affects: Vec<Value> = list
                .iter()
                .map(|(i, m)| {
                    let mut versions =
                        vec![json!({"version": m.package.version, "status": "affected"})];
                    versions.extend(
                        m.fix
                            .versions
                            .iter()
                            .map(|v| json!({"version": v, "status": "unaffected"})),
                    );
                    json!({"ref": format!("pkg-{i}"), "versions": versions})
                })
                .collect();
            let mut v = json!({
                "bom-ref": format!("vuln-{id}"),
                "id": id,
                "source": {"name": first.namespace},
                "ratings": [rating],
                "affects": affects,
            });
            if !first.aliases.is_empty() {
                v["references"] = Value::Array(
                    first
                        .aliases
                        .iter()
                        .map(|a| json!({"id": a, "source": alias_source(a)}))
                        .collect(),
                );
            }
            if !first.urls.is_empty() {
                v["advisories"] =
                    Value::Array(first.urls.iter().map(|u| json!({"url": u})).collect());
            }
            let fixes: Vec<String> = list
                .iter()
                .filter(|(_, m)| !m.fix.versions.is_empty())
                .map(|(_, m)| format!("{} {}", m.package.name, m.fix.versions.join(", ")))
                .collect();
            if !fixes.is_empty() {
                v["recommendation"] = json!(format!("Upgrade to {}", fixes.join("; ")));
            }
            v
        })
        .collect()
}

/// Where an alias is published: CVE ids at NVD, GHSA ids in GitHub's database, the rest at OSV.
fn alias_source(id: &str) -> Value {
    if id.starts_with("CVE-") {
        json!({"name": "NVD", "url": format!("https://nvd.nist.gov/vuln/detail/{id}")})
    } else if id.starts_with("GHSA-") {
        json!({"name": "GitHub", "url": format!("https://github.com/advisories/{id}")})
    } else {
        json!({"name": "OSV", "url": format!("https://osv.dev/vulnerability/{id}")})
    }
}

/// ID / PACKAGE / INSTALLED / FIXED IN / SEVERITY, aligned.
fn table(vulns: &[&VulnMatch], out: &mut impl Write) -> std::io::Result<()> {
    let header = ["ID", "PACKAGE", "INSTALLED", "FIXED IN", "SEVERITY"];
    let rows: Vec<[String; 5]> = vulns
        .iter()
        .map(|m| {
            let fixed = match m.fix.state.as_str() {
                "fixed" => m.fix.versions.join(", "),
                "unknown" => "?".to_string(),
                _ => String::new(),
            };
            [
                m.id.clone(),
                m.package.name.clone(),
                m.package.version.clone(),
                fixed,
                m.severity.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: [&str; 5]| {
        writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        )
    };
    line(header)?;
    for r in &rows {
        line([&r[0], &r[1], &r[2], &r[3], &r[4]])?;
    }
    out.flush()
}
