//! `fathom demo`'s vulnerability step: the demo has no network, so it writes a small OSV feed directory
//! generated in code (sample records matching packages of the sample images, labelled as such), syncs it
//! like `fathom vulns sync --from DIR`, matches the fleet, and prints what each image carries.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fathom_testkit::osv::{self, SAMPLE_FEEDS};
use fathom_vulns::queries::{self, ImageFilter};
use fathom_vulns::{Feeds, Matcher, VulnsConfig};
use fathom_worker::store::{Store, SubmissionFilter};

/// Syncs the generated feed into the demo's database and prints a per-image summary.
pub async fn run(store: &Store, references: &[String], scratch: &Path) -> anyhow::Result<()> {
    let pool = store.pool();
    fathom_vulns::migrator()
        .run(pool)
        .await
        .context("applying the feed migrations")?;
    let dir = scratch.join("osv-sample-feed");
    std::fs::create_dir_all(&dir)?;
    osv::write_sample_feed(&dir, false)?;
    eprintln!(
        "fathom demo: syncing a GENERATED SAMPLE OSV feed from {} (FATHOM-SAMPLE-* records, not real advisories: \
         the demo has no network; real deployments sync OSV's bucket)",
        dir.display()
    );
    let config = VulnsConfig {
        base_url: dir.display().to_string(),
        ecosystems: SAMPLE_FEEDS.iter().map(|s| s.to_string()).collect(),
        ..VulnsConfig::default()
    };
    let synced = Feeds::sync(pool, &config, &|_| {}).await?;
    anyhow::ensure!(
        !synced.failed(),
        "syncing the sample feed: {}",
        serde_json::to_string(&synced)?
    );
    let rematch = Matcher::rematch(pool).await?;

    let entries = store
        .submissions(&SubmissionFilter {
            references: Some(references.to_vec()),
            limit: references.len() as i64,
            ..SubmissionFilter::default()
        })
        .await?;
    println!(
        "  vulnerabilities (generated sample feed; {} images and {} distinct packages matched in {} ms):",
        rematch.images_indexed, rematch.keys_matched, rematch.wall_ms
    );
    for entry in &entries {
        let Some(digest) = &entry.digest else {
            continue;
        };
        let matches = queries::vulns_for_image(pool, digest, &ImageFilter::default()).await?;
        let mut by_severity: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &matches {
            *by_severity.entry(m.severity.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = by_severity
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        let ids: Vec<String> = matches
            .iter()
            .map(|m| format!("{} ({} {})", m.id, m.package.name, m.package.version))
            .collect();
        let name = entry
            .reference
            .rsplit(':')
            .next()
            .unwrap_or(&entry.reference);
        println!(
            "    {name:<28} {} {}{}",
            matches.len(),
            if counts.is_empty() {
                "matches".to_string()
            } else {
                format!("matches ({})", counts.join(", "))
            },
            if ids.is_empty() {
                String::new()
            } else {
                format!(": {}", ids.join(", "))
            }
        );
    }
    let glibc = osv::alias(osv::GLIBC);
    let carriers = queries::images_by_vuln(pool, &glibc, "", 10_000).await?;
    println!(
        "  fleet-wide: {glibc} (an alias of {}) is carried by {} images",
        osv::GLIBC,
        carriers.len()
    );
    Ok(())
}
