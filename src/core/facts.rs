//! What the policy engine knows about a stored image: its record and analysis document from the results
//! store, its vulnerability matches and the feeds' freshness from fathom-vulns, mapped into `ImageFacts`.
//!
//! The image config, secret findings and content search matches come from the document, the file
//! inventory from the stored layer results (only the files the bundle's `files` rules can fire on, see
//! [`add_files`]). Secrets are `None` for images analyzed without secret search, and content search
//! matches for images analyzed without content search rules (or before content search existed), so the
//! rules that need them report "unavailable" (WARN) instead of passing silently.

use fathom_analyzer::ImageAnalysis;
use fathom_policy::{
    ContentMatch, Cvss, FeedStatus, ImageFacts, ImageInfo, ImageRef, Package, SecretFinding,
    Severity, VulnMatch,
};
use fathom_vulns::core::ecosystem::{distro_ecosystem, DistroRef};
use fathom_vulns::queries::{self, ImageFilter};
use fathom_vulns::store::{OnDemand, NEEDS_SQL};
use fathom_worker::store::ImageRecord;
use jiff::Timestamp;
use sqlx::PgPool;

pub(crate) mod content;
pub(crate) mod retrieved;

/// Registry, repository and tag of a parsed reference, as the mappings read them (see
/// `ImageInfo::set_reference`); all empty without one.
pub(crate) fn identity_of(reference: Option<&ImageRef>) -> (String, String, Option<String>) {
    let mut info = ImageInfo::default();
    if let Some(r) = reference {
        info.set_reference(r);
    }
    (info.registry, info.repository, info.tag)
}

/// The image's identity, platform, config facts and packages as the policy engine reads them: one builder
/// for stored (`from_document`) and standalone (`facts_local`) checks, so a bundle answers the same in both.
pub(crate) fn identity_and_packages(
    doc: &ImageAnalysis,
    manifest_digest: &str,
    config_digest: &str,
    (registry, repository, tag): (String, String, Option<String>),
) -> (ImageInfo, Vec<Package>) {
    let distro = doc.distro.as_ref();
    let image = ImageInfo {
        digest: manifest_digest.to_string(),
        // anchore's Image_Id is the config digest's hex.
        id: config_digest
            .strip_prefix("sha256:")
            .unwrap_or(config_digest)
            .to_string(),
        registry,
        repository,
        tag,
        distro: distro.map(|d| d.id.clone()),
        distro_version: distro
            .map(|d| d.version_id.clone())
            .filter(|v| !v.is_empty()),
        like_distro: distro
            .map(|d| d.id_like.join(" "))
            .filter(|v| !v.is_empty()),
        architecture: Some(doc.image.platform.architecture.clone()),
        os_type: Some(doc.image.platform.os.clone()),
        // The stored (compressed) size, what registries and anchore report as the image size.
        size: doc.image.layers.iter().map(|l| l.size).sum(),
        layer_count: doc.image.layers.len() as u64,
        config: content::image_config(&doc.image.config),
    };
    let packages = doc
        .packages
        .iter()
        .map(|p| Package {
            pkg_type: p.package.package_type.as_str().to_string(),
            name: p.package.name.clone(),
            version: p.package.version.clone(),
            paths: p.package.locations.iter().map(|l| l.path.clone()).collect(),
            licenses: p.package.licenses.clone(),
            files: Vec::new(),
        })
        .collect();
    (image, packages)
}

/// Identity, platform and packages from the store's record and document.
pub fn from_document(
    record: &ImageRecord,
    reference: Option<&ImageRef>,
    doc: &ImageAnalysis,
) -> ImageFacts {
    let (image, packages) = identity_and_packages(
        doc,
        &record.manifest_digest,
        &record.config_digest,
        identity_of(reference),
    );
    ImageFacts {
        image,
        packages,
        // Filled by `add_files`, which reads the stored layers.
        files: None,
        content_matches: content_matches(doc),
        secrets: doc.analyzer.content().secrets.then(|| secret_findings(doc)),
        // Filled by `add_retrieved`, which reads the stored layers' copies.
        retrieved_files: Vec::new(),
        malware: retrieved::malware(doc),
        vulnerabilities: None,
        feed: FeedStatus::default(),
    }
}

pub use content::add_files;
pub use retrieved::add_retrieved;

/// What a check reads of the image's vulnerability side before its verdict, in one round trip: the
/// feed state its evaluation is keyed on ([`FEED_STATE_SQL`]), whether it must be matched on demand
/// first ([`NEEDS_SQL`]), and whether it is indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// See [`FEED_STATE_SQL`].
    pub feed_state: String,
    /// Analyzed but not indexed, or with keys never matched.
    pub needs_match: bool,
    /// In the vulnerability index (so its matches, even none, are data).
    pub indexed: bool,
}

static CHECK_STATE_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT ({}), ({}), ({})",
        FEED_STATE_SQL.trim(),
        NEEDS_SQL.trim(),
        INDEXED_SQL
    )
});

/// Reads the image's [`CheckState`].
pub async fn check_state(pool: &PgPool, digest: &str) -> sqlx::Result<CheckState> {
    let (feed_state, needs_match, indexed) = sqlx::query_as(&CHECK_STATE_SQL)
        .bind(digest)
        .fetch_one(pool)
        .await?;
    Ok(CheckState {
        feed_state,
        needs_match,
        indexed,
    })
}

/// Data before verdicts: an analyzed image the match round has not reached yet (or whose keys were
/// never matched) is indexed and matched now, one image, so its verdict reads its vulnerabilities
/// instead of "data unavailable"; the state is read again then (a failure to read it fails the check).
/// Matching is best effort: while a round holds the feed lock it will match the image itself, and a
/// failure to match leaves the data as it was (the rules that need it are then unevaluable).
pub async fn match_on_demand(
    pool: &PgPool,
    digest: &str,
    state: CheckState,
) -> sqlx::Result<CheckState> {
    if !state.needs_match {
        return Ok(state);
    }
    match OnDemand::match_needed(pool, digest).await {
        Ok(OnDemand::Matched { keys }) => {
            tracing::debug!(digest, keys, "matched on demand before the verdict");
            return check_state(pool, digest).await;
        }
        Ok(OnDemand::Busy) => {
            tracing::debug!(digest, "not matched on demand: a feed round holds the lock");
        }
        Err(e) => tracing::warn!(error = %e, digest, "matching the image on demand failed"),
    }
    Ok(state)
}

const INDEXED_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM fathom_vuln_images WHERE manifest_digest = $1)";

/// Fills in the vulnerability side: matches when a feed has data and the image was matched (else `None`,
/// so `vulnerability_data_unavailable` fires), the oldest successful sync, and whether the image's distro
/// has a feed.
pub async fn add_vulnerabilities(
    pool: &PgPool,
    facts: &mut ImageFacts,
    indexed: bool,
) -> fathom_vulns::Result<()> {
    // Both at once: the matches are read before knowing whether a feed is live (rarely wasted).
    let (feeds, matches) = if indexed {
        let all = ImageFilter::default();
        let (feeds, matches) = tokio::try_join!(
            queries::feeds(pool),
            queries::vulns_for_image(pool, &facts.image.digest, &all)
        )?;
        (feeds, Some(matches))
    } else {
        (queries::feeds(pool).await?, None)
    };
    // A feed the source no longer offers is neither current data nor stale: a partial mirror's choice.
    let live: Vec<_> = feeds
        .iter()
        .filter(|f| f.generation.is_some() && f.offered)
        .collect();
    // The stalest feed decides: one fresh feed does not make another's data current.
    facts.feed.last_sync = live
        .iter()
        .filter_map(|f| f.last_success_at.as_deref())
        .filter_map(|t| t.parse::<Timestamp>().ok())
        .min();
    let distro_feed = facts.image.distro.as_ref().and_then(|id| {
        let version_id = facts.image.distro_version.clone().unwrap_or_default();
        distro_ecosystem(&DistroRef {
            id: id.clone(),
            version_id,
        })
    });
    facts.feed.distro_data = distro_feed.is_some_and(|eco| {
        let feed = eco.split(':').next().unwrap_or_default();
        live.iter().any(|f| f.feed == feed)
    });
    facts.vulnerabilities = matches
        .filter(|_| !live.is_empty())
        .map(|m| m.into_iter().map(vuln_match).collect());
    Ok(())
}

/// A stored (or standalone) match as the policy engine reads it.
pub fn vuln_match(m: queries::VulnMatch) -> VulnMatch {
    let severity = match m.severity.trim().to_ascii_lowercase().as_str() {
        "critical" => Severity::Critical,
        "high" | "important" => Severity::High,
        "medium" | "moderate" => Severity::Medium,
        "low" => Severity::Low,
        "negligible" | "unimportant" => Severity::Negligible,
        _ => Severity::Unknown,
    };
    let fixed = m.fix.state == "fixed";
    VulnMatch {
        id: m.id,
        aliases: m.aliases,
        package_name: m.package.name,
        package_type: m.package.package_type,
        package_version: m.package.version,
        package_path: None,
        severity,
        // Only the base score is stored; anchore writes -1 for scores it does not have.
        cvss_v3: m.cvss_score.map(|base| Cvss {
            base,
            exploitability: -1.0,
            impact: -1.0,
        }),
        vendor_cvss_v3: None,
        fix_version: if fixed {
            m.fix.versions.first().cloned()
        } else {
            None
        },
        fix_first_seen: m.fix_observed_at.and_then(|t| t.parse().ok()),
        created_at: None,
        will_not_fix: m.fix.state == "wont-fix",
        link: m.urls.into_iter().next(),
    }
}

/// The analysis's secret findings as the `secret_scans` gate reads them (stored and standalone checks).
pub(crate) fn secret_findings(doc: &ImageAnalysis) -> Vec<SecretFinding> {
    doc.secrets
        .iter()
        .map(|s| SecretFinding {
            path: s.path.clone(),
            line: s.line,
            regex_name: s.rule.clone(),
        })
        .collect()
}

/// The analysis's content search matches as the `files.content_regex_match` gate reads them, each with
/// its rule's pattern (a policy's `regex_name` may give either); `None` when content search did not run.
pub(crate) fn content_matches(doc: &ImageAnalysis) -> Option<Vec<ContentMatch>> {
    let report = doc.content_search.as_ref()?;
    Some(
        report
            .matches
            .iter()
            .map(|m| ContentMatch {
                path: m.path.clone(),
                regex_name: Some(m.rule.clone()),
                regex: report
                    .rules
                    .iter()
                    .find(|r| r.name == m.rule)
                    .map(|r| r.pattern.clone())
                    .unwrap_or_default(),
            })
            .collect(),
    )
}

/// The stored data an image's evaluation depends on, as one string: each feed's generation and last
/// sync, when the image was indexed and the generations its packages were matched at, when it was
/// analyzed and the references it was seen under. Equal strings mean equal facts, matches and
/// freshness, so cached evaluations are keyed on it (a re-analysis or a newly seen tag changes it even
/// before the next re-match indexes the image).
pub(crate) const FEED_STATE_SQL: &str = r#"
SELECT coalesce((SELECT string_agg(feed || '=' || generation || '@' || coalesce(to_char(last_success_at, 'YYYYMMDDHH24MISS'), ''), ',' ORDER BY feed)
                   FROM fathom_vuln_feeds WHERE generation IS NOT NULL), '')
    || ';' || coalesce((SELECT to_char(analyzed_at, 'YYYYMMDDHH24MISSUS') FROM fathom_vuln_images WHERE manifest_digest = $1), '-')
    || ';' || coalesce((SELECT min(k.matched_stamp) || '-' || max(k.matched_stamp)
                          FROM fathom_vuln_image_packages p
                          JOIN fathom_vuln_keys k ON k.ecosystem = p.ecosystem AND k.name = p.name AND k.version = p.version
                         WHERE p.manifest_digest = $1), '-')
    || ';' || coalesce((SELECT to_char(analyzed_at, 'YYYYMMDDHH24MISSUS') FROM fathom_images WHERE manifest_digest = $1), '-')
    || ';' || coalesce((SELECT count(*) || '@' || coalesce(to_char(max(last_seen_at), 'YYYYMMDDHH24MISSUS'), '')
                          FROM fathom_image_references WHERE manifest_digest = $1), '-')
"#;

#[cfg(test)]
mod tests {
    use super::identity_of;
    use fathom_policy::ImageRef;

    fn split(text: &str) -> (String, String, Option<String>) {
        identity_of(Some(&ImageRef::parse(text).unwrap()))
    }

    #[test]
    fn references_split_into_registry_repository_and_tag() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let want = |r: &str, repo: &str, tag: Option<&str>| {
            (r.to_string(), repo.to_string(), tag.map(str::to_string))
        };
        assert_eq!(
            split("docker.io/library/debian:12"),
            want("docker.io", "library/debian", Some("12"))
        );
        assert_eq!(
            split("127.0.0.1:5000/team/app:1.0"),
            want("127.0.0.1:5000", "team/app", Some("1.0"))
        );
        assert_eq!(
            split(&format!("127.0.0.1:5000/team/app@{digest}")),
            want("127.0.0.1:5000", "team/app", None)
        );
        // The tag of `repo:tag@digest` is the tag, not part of the repository (a blacklist bypass).
        assert_eq!(
            split(&format!("docker.io/lib/nginx:1.25@{digest}")),
            want("docker.io", "lib/nginx", Some("1.25"))
        );
        assert_eq!(
            split("127.0.0.1:5000/team/app"),
            want("127.0.0.1:5000", "team/app", Some("latest"))
        );
        assert_eq!(identity_of(None), (String::new(), String::new(), None));
    }
}
