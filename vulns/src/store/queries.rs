//! The questions the API and the policy engine ask, each one indexed query over stored matches:
//! an image's vulnerabilities, the images carrying a vulnerability (by id or alias), feed status.

use serde::Serialize;
use sqlx::PgPool;

use crate::core::severity::Level;
use crate::error::Result;

/// Which packages of an image to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PackageScope {
    /// Every package.
    #[default]
    All,
    /// OS packages (deb, apk, rpm).
    Os,
    /// Language packages.
    NonOs,
}

impl std::str::FromStr for PackageScope {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(PackageScope::All),
            "os" => Ok(PackageScope::Os),
            "non-os" => Ok(PackageScope::NonOs),
            other => Err(format!("{other:?} is not all, os or non-os")),
        }
    }
}

/// The package a match is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchedPackage {
    /// Name as installed.
    pub name: String,
    /// Version as installed.
    pub version: String,
    /// fathom package type.
    #[serde(rename = "type")]
    pub package_type: String,
    /// Package URL.
    pub purl: String,
    /// Layer that introduced it.
    pub layer: String,
}

/// Fix facts of a match.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fix {
    /// `fixed`, `not-fixed` or `unknown`.
    pub state: String,
    /// Fixed versions above the installed one.
    pub versions: Vec<String>,
}

/// One vulnerability of one package of an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VulnMatch {
    /// Record id.
    pub id: String,
    /// Aliases (CVE ids).
    pub aliases: Vec<String>,
    /// The package.
    pub package: MatchedPackage,
    /// OSV ecosystem matched under.
    pub namespace: String,
    /// Severity label.
    pub severity: String,
    /// Highest CVSS base score.
    pub cvss_score: Option<f64>,
    /// Fix.
    pub fix: Fix,
    /// When the first fix version was first seen in a feed (RFC 3339).
    pub fix_observed_at: Option<String>,
    /// Reference URLs.
    pub urls: Vec<String>,
}

/// Filters for [`vulns_for_image`].
#[derive(Debug, Clone, Default)]
pub struct ImageFilter {
    /// Package scope.
    pub scope: PackageScope,
    /// Only matches at least this severe.
    pub min_severity: Option<Level>,
    /// Only matches with a fix.
    pub fixed_only: bool,
}

/// Packages of the image (by its index) joined to their key's matches (by primary key); everything a
/// match shows, `fix_observed_at` included, is stored on the match, so nothing else is looked up per row.
const FOR_IMAGE_SQL: &str = r#"
SELECT m.vuln_id, m.aliases, p.package_name, p.package_version, p.package_type, p.purl, p.layer_digest,
       m.ecosystem, m.severity, m.cvss_score, m.fix_state, m.fixed, m.urls,
       to_char(m.fix_observed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
FROM fathom_vuln_image_packages p
JOIN fathom_vuln_matches m ON m.ecosystem = p.ecosystem AND m.name = p.name AND m.version = p.version
WHERE p.manifest_digest = $1 AND ($2::boolean IS NULL OR p.os = $2) AND (NOT $3 OR m.fix_state = 'fixed')
ORDER BY m.cvss_score DESC NULLS LAST, m.vuln_id, p.package_name
"#;

/// Whether the image is indexed and none of its keys waits for matching (never matched, or under a name
/// a feed change marked dirty).
const MATCHED_SQL: &str = r#"
SELECT EXISTS (SELECT 1 FROM fathom_vuln_images WHERE manifest_digest = $1)
   AND NOT EXISTS (
       SELECT 1 FROM fathom_vuln_image_packages p
       JOIN fathom_vuln_keys k ON k.ecosystem = p.ecosystem AND k.name = p.name AND k.version = p.version
       WHERE p.manifest_digest = $1 AND k.matched_stamp < 0)
   AND NOT EXISTS (
       SELECT 1 FROM fathom_vuln_image_packages p
       JOIN fathom_vuln_dirty d ON d.ecosystem = p.ecosystem AND d.name = p.name
       WHERE p.manifest_digest = $1)
"#;

/// Whether every package of the image has been matched against the current feed generations (false
/// right after its analysis or a feed change, until the next [`crate::Matcher::rematch`]).
pub async fn image_matched(pool: &PgPool, manifest_digest: &str) -> Result<bool> {
    Ok(sqlx::query_scalar(MATCHED_SQL)
        .bind(manifest_digest)
        .fetch_one(pool)
        .await?)
}

type MatchRow = (
    String,
    Vec<String>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<f64>,
    String,
    Vec<String>,
    Vec<String>,
    Option<String>,
);

/// Vulnerabilities of a stored image (as of the last [`crate::Matcher::rematch`]).
pub async fn vulns_for_image(
    pool: &PgPool,
    manifest_digest: &str,
    filter: &ImageFilter,
) -> Result<Vec<VulnMatch>> {
    let os = match filter.scope {
        PackageScope::All => None,
        PackageScope::Os => Some(true),
        PackageScope::NonOs => Some(false),
    };
    let rows: Vec<MatchRow> = sqlx::query_as(FOR_IMAGE_SQL)
        .bind(manifest_digest)
        .bind(os)
        .bind(filter.fixed_only)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|r| {
            filter
                .min_severity
                .is_none_or(|min| Level::from_word(&r.8) >= min)
        })
        .map(|r| VulnMatch {
            id: r.0,
            aliases: r.1,
            package: MatchedPackage {
                name: r.2,
                version: r.3,
                package_type: r.4,
                purl: r.5,
                layer: r.6,
            },
            namespace: r.7,
            severity: r.8,
            cvss_score: r.9,
            fix: Fix {
                state: r.10,
                versions: r.11,
            },
            urls: r.12,
            fix_observed_at: r.13,
        })
        .collect())
}

/// An image carrying a vulnerability, with the packages that carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageHit {
    /// Manifest digest.
    pub manifest_digest: String,
    /// Records (ids) that matched: the id asked for, or the records it is an alias of.
    pub ids: Vec<String>,
    /// `name@version` of the matching packages.
    pub packages: Vec<String>,
}

/// The page's images first (the groups carrying a matching key, then the images linked to those
/// groups, by digest after the cursor: index reads, no aggregation), then their ids and packages over
/// every matching row of just those images — the same answer as aggregating every carrier and cutting
/// the page, at the cost of one page instead of every image carrying the vulnerability.
const BY_VULN_SQL: &str = r#"
WITH m AS (
    SELECT ecosystem, name, version, vuln_id FROM fathom_vuln_matches WHERE vuln_id = $1
    UNION
    SELECT ecosystem, name, version, vuln_id FROM fathom_vuln_matches WHERE aliases @> ARRAY[$1]
),
mp AS (
    SELECT p.group_id, m.vuln_id, p.package_name, p.package_version FROM m
    JOIN fathom_vuln_group_packages p ON p.ecosystem = m.ecosystem AND p.name = m.name AND p.version = m.version
),
page AS (
    SELECT DISTINCT ig.manifest_digest FROM fathom_vuln_image_groups ig
    WHERE ig.group_id IN (SELECT group_id FROM mp) AND ig.manifest_digest > $2
    ORDER BY 1
    LIMIT $3
)
SELECT ig.manifest_digest, array_agg(DISTINCT mp.vuln_id), array_agg(DISTINCT mp.package_name || '@' || mp.package_version)
FROM page
JOIN fathom_vuln_image_groups ig ON ig.manifest_digest = page.manifest_digest
JOIN mp ON mp.group_id = ig.group_id
GROUP BY ig.manifest_digest
ORDER BY ig.manifest_digest
"#;

/// Images carrying `id` (a record id or an alias such as a CVE id), fleet-wide, ordered by digest, after
/// the cursor `after` (a digest; empty for the first page), at most `limit`.
pub async fn images_by_vuln(
    pool: &PgPool,
    id: &str,
    after: &str,
    limit: i64,
) -> Result<Vec<ImageHit>> {
    let rows: Vec<(String, Vec<String>, Vec<String>)> = sqlx::query_as(BY_VULN_SQL)
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(manifest_digest, ids, packages)| ImageHit {
            manifest_digest,
            ids,
            packages,
        })
        .collect())
}

/// One feed's status (`GET /v1/feeds`).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct FeedStatus {
    /// Feed name.
    pub feed: String,
    /// Current generation.
    pub generation: Option<i64>,
    /// Records in it.
    pub records: i64,
    /// Entries skipped as malformed in its sync.
    pub malformed: i64,
    /// Last successful sync (RFC 3339).
    pub last_success_at: Option<String>,
    /// Last check (RFC 3339).
    pub last_checked_at: Option<String>,
    /// Last error, cleared by a success.
    pub last_error: Option<String>,
    /// Whether the source's `ecosystems.txt` listed the feed at the last check.
    pub offered: bool,
    /// `ok`, `failed` (the last check did; a generation it had stays current), `not_offered` (the
    /// source does not list the feed: a partial mirror, not a failure) or `never_synced`.
    pub status: String,
}

const FEEDS_SQL: &str = r#"
SELECT feed, generation, records, malformed,
       to_char(last_success_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_success_at,
       to_char(last_checked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS last_checked_at,
       last_error, offered,
       CASE WHEN NOT offered THEN 'not_offered' WHEN last_error IS NOT NULL THEN 'failed'
            WHEN generation IS NULL THEN 'never_synced' ELSE 'ok' END AS status
FROM fathom_vuln_feeds ORDER BY feed
"#;

/// Every feed's status.
pub async fn feeds(pool: &PgPool) -> Result<Vec<FeedStatus>> {
    Ok(sqlx::query_as(FEEDS_SQL).fetch_all(pool).await?)
}

/// The SQL of a read by name (`for_image`: `$1` digest, `$2` os, `$3` fixed only; `matched`: `$1`
/// digest; `by_vuln`: `$1` id, `$2` cursor, `$3` limit), for the store bench's EXPLAIN; empty for
/// another name.
pub fn explain_sql(name: &str) -> &'static str {
    match name {
        "for_image" => FOR_IMAGE_SQL,
        "matched" => MATCHED_SQL,
        "by_vuln" => BY_VULN_SQL,
        _ => "",
    }
}
