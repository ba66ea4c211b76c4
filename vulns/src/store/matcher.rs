//! Fleet matching. Images are indexed once per analysis: their *visible* packages (the image document's
//! package list, the same list the per-image packages route serves: a record a later layer removed is not
//! in it) mapped to OSV keys. Then each distinct (ecosystem, name, version) of the fleet is evaluated once
//! against the current feed generations, and again only when a feed generation changes.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::core::affected::{evaluate, Verdict};
use crate::core::ecosystem::{is_os_type, match_key, DistroRef, PackageFacts};
use crate::core::osv::Affected;
use crate::core::version::Scheme;
use crate::error::{Error, Result};

/// Distinct keys evaluated per round trip.
const KEY_BATCH: i64 = 2000;
/// Largest image document accepted (decompressed).
const MAX_DOCUMENT_BYTES: u64 = 1 << 30;

/// What a rematch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RematchReport {
    /// Images (re)indexed from their documents.
    pub images_indexed: u64,
    /// Images dropped because they are no longer stored.
    pub images_removed: u64,
    /// Distinct keys evaluated.
    pub keys_matched: u64,
    /// Matches now stored for those keys.
    pub matches: u64,
    /// (key, record) pairs whose versions did not parse in the ecosystem's ordering.
    pub undecidable: u64,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
}

/// Fleet matching.
pub struct Matcher;

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    distro: Option<DocDistro>,
    #[serde(default)]
    packages: Vec<DocPackage>,
}

#[derive(Deserialize)]
struct DocDistro {
    #[serde(default)]
    id: String,
    #[serde(default)]
    version_id: String,
}

#[derive(Deserialize)]
struct DocPackage {
    name: String,
    version: String,
    package_type: String,
    #[serde(default)]
    purl: String,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    #[serde(default)]
    introduced_in: Option<DocLayer>,
}

#[derive(Deserialize)]
struct DocLayer {
    digest: String,
}

const STALE_IMAGES_SQL: &str = r#"
SELECT i.manifest_digest, i.document
FROM fathom_images i LEFT JOIN fathom_vuln_images v ON v.manifest_digest = i.manifest_digest
WHERE i.status = 'analyzed' AND i.document IS NOT NULL
  AND (v.manifest_digest IS NULL OR v.analyzed_at <> i.analyzed_at)
LIMIT 200
"#;
const REMOVED_IMAGES_SQL: &str = r#"
DELETE FROM fathom_vuln_images v
WHERE NOT EXISTS (SELECT 1 FROM fathom_images i WHERE i.manifest_digest = v.manifest_digest AND i.status = 'analyzed')
"#;
const UPSERT_IMAGE_SQL: &str = r#"
INSERT INTO fathom_vuln_images (manifest_digest, analyzed_at)
SELECT manifest_digest, analyzed_at FROM fathom_images WHERE manifest_digest = $1
ON CONFLICT (manifest_digest) DO UPDATE SET analyzed_at = EXCLUDED.analyzed_at
"#;
const INSERT_IMAGE_PACKAGES_SQL: &str = r#"
INSERT INTO fathom_vuln_image_packages (manifest_digest, ecosystem, name, version, package_type, package_name,
    package_version, purl, layer_digest, os)
SELECT $1, x->>0, x->>1, x->>2, x->>3, x->>4, x->>5, x->>6, x->>7, (x->>8)::boolean
FROM jsonb_array_elements($2::jsonb) AS x
"#;
const INSERT_KEYS_SQL: &str = r#"
INSERT INTO fathom_vuln_keys (ecosystem, name, version)
SELECT DISTINCT ecosystem, name, version FROM fathom_vuln_image_packages WHERE manifest_digest = $1
ON CONFLICT DO NOTHING
"#;
/// The feed state: the highest current generation (generations only grow, so any sync changes it).
const STAMP_SQL: &str = "SELECT coalesce(max(generation), 0) FROM fathom_vuln_feeds";
const STALE_KEYS_SQL: &str = r#"
SELECT ecosystem, name, version FROM fathom_vuln_keys WHERE matched_stamp < $1
ORDER BY ecosystem, name, version LIMIT $2
"#;
const CANDIDATES_SQL: &str = r#"
SELECT a.ecosystem, a.name, a.vuln_id, a.aliases, a.severity, a.cvss_score, a.urls, a.entry
FROM fathom_vuln_affected a
JOIN (SELECT DISTINCT e, n FROM unnest($1::text[], $2::text[]) AS k(e, n)) k ON a.ecosystem = k.e AND a.name = k.n
WHERE a.generation IN (SELECT generation FROM fathom_vuln_feeds WHERE generation IS NOT NULL)
"#;
const DELETE_MATCHES_SQL: &str = r#"
DELETE FROM fathom_vuln_matches m USING unnest($1::text[], $2::text[], $3::text[]) AS k(e, n, v)
WHERE m.ecosystem = k.e AND m.name = k.n AND m.version = k.v
"#;
const INSERT_MATCHES_SQL: &str = r#"
INSERT INTO fathom_vuln_matches (ecosystem, name, version, vuln_id, aliases, severity, cvss_score, fix_state, fixed, urls)
SELECT x->>'e', x->>'n', x->>'v', x->>'id', ARRAY(SELECT jsonb_array_elements_text(x->'aliases')), x->>'severity',
       (x->>'cvss')::float8, x->>'state', ARRAY(SELECT jsonb_array_elements_text(x->'fixed')),
       ARRAY(SELECT jsonb_array_elements_text(x->'urls'))
FROM jsonb_array_elements($1::jsonb) AS x
ON CONFLICT DO NOTHING
"#;
const MARK_KEYS_SQL: &str = r#"
UPDATE fathom_vuln_keys k SET matched_stamp = $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS s(e, n, v)
WHERE k.ecosystem = s.e AND k.name = s.n AND k.version = s.v
"#;
const PRUNE_KEYS_SQL: &str = r#"
DELETE FROM fathom_vuln_keys k WHERE NOT EXISTS (SELECT 1 FROM fathom_vuln_image_packages p
    WHERE p.ecosystem = k.ecosystem AND p.name = k.name AND p.version = k.version)
"#;
const PRUNE_MATCHES_SQL: &str = r#"
DELETE FROM fathom_vuln_matches m WHERE NOT EXISTS (SELECT 1 FROM fathom_vuln_keys k
    WHERE k.ecosystem = m.ecosystem AND k.name = m.name AND k.version = m.version)
"#;

type Candidate = (
    String,
    String,
    String,
    Vec<String>,
    String,
    Option<f64>,
    Vec<String>,
    serde_json::Value,
);

/// A candidate with its entry parsed (`None`: stored entry no longer parses; skipped).
type Parsed = (Candidate, Option<Affected>);

fn decode(digest: &str, bytes: &[u8]) -> Result<Doc> {
    let err = |e: &dyn std::fmt::Display| Error::Document {
        digest: digest.to_string(),
        message: e.to_string(),
    };
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| err(&e))?;
    let limited = std::io::Read::take(decoder, MAX_DOCUMENT_BYTES);
    serde_json::from_reader(std::io::BufReader::new(limited)).map_err(|e| err(&e))
}

/// The rows an image contributes: one per visible package with an OSV key.
fn image_rows(doc: &Doc) -> Vec<serde_json::Value> {
    let distro = doc.distro.as_ref().map(|d| DistroRef {
        id: d.id.clone(),
        version_id: d.version_id.clone(),
    });
    doc.packages
        .iter()
        .filter_map(|p| {
            let facts = PackageFacts {
                package_type: &p.package_type,
                name: &p.name,
                version: &p.version,
                purl: &p.purl,
                metadata: &p.metadata,
            };
            let k = match_key(facts, distro.as_ref())?;
            let layer = p.introduced_in.as_ref().map_or("", |l| l.digest.as_str());
            Some(json!([
                k.ecosystem,
                k.name,
                k.version,
                p.package_type,
                p.name,
                p.version,
                p.purl,
                layer,
                is_os_type(&p.package_type)
            ]))
        })
        .collect()
}

impl Matcher {
    /// Indexes new or re-analyzed images, drops removed ones, and evaluates every distinct key not yet
    /// matched against the current feed generations. Safe to run repeatedly; cheap when nothing changed.
    pub async fn rematch(pool: &PgPool) -> Result<RematchReport> {
        let started = Instant::now();
        let mut report = RematchReport {
            images_removed: sqlx::query(REMOVED_IMAGES_SQL)
                .execute(pool)
                .await?
                .rows_affected(),
            ..RematchReport::default()
        };
        loop {
            let stale: Vec<(String, Vec<u8>)> =
                sqlx::query_as(STALE_IMAGES_SQL).fetch_all(pool).await?;
            if stale.is_empty() {
                break;
            }
            for (digest, bytes) in stale {
                let d = digest.clone();
                let doc = tokio::task::spawn_blocking(move || decode(&d, &bytes))
                    .await
                    .map_err(|e| Error::Document {
                        digest: digest.clone(),
                        message: e.to_string(),
                    })??;
                let rows = image_rows(&doc);
                let mut tx = pool.begin().await?;
                sqlx::query("DELETE FROM fathom_vuln_images WHERE manifest_digest = $1")
                    .bind(&digest)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(UPSERT_IMAGE_SQL)
                    .bind(&digest)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(INSERT_IMAGE_PACKAGES_SQL)
                    .bind(&digest)
                    .bind(serde_json::Value::Array(rows))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(INSERT_KEYS_SQL)
                    .bind(&digest)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                report.images_indexed += 1;
            }
        }
        if report.images_removed > 0 || report.images_indexed > 0 {
            sqlx::query(PRUNE_KEYS_SQL).execute(pool).await?;
            sqlx::query(PRUNE_MATCHES_SQL).execute(pool).await?;
        }

        let stamp: i64 = sqlx::query_scalar(STAMP_SQL).fetch_one(pool).await?;
        loop {
            let keys: Vec<(String, String, String)> = sqlx::query_as(STALE_KEYS_SQL)
                .bind(stamp)
                .bind(KEY_BATCH)
                .fetch_all(pool)
                .await?;
            if keys.is_empty() {
                break;
            }
            let (e, n, v): (Vec<String>, Vec<String>, Vec<String>) =
                keys.iter()
                    .cloned()
                    .fold((vec![], vec![], vec![]), |(mut e, mut n, mut v), k| {
                        e.push(k.0);
                        n.push(k.1);
                        v.push(k.2);
                        (e, n, v)
                    });
            let candidates: Vec<Candidate> = sqlx::query_as(CANDIDATES_SQL)
                .bind(&e)
                .bind(&n)
                .fetch_all(pool)
                .await?;
            let (matches, undecidable) =
                tokio::task::spawn_blocking(move || evaluate_batch(&keys, candidates))
                    .await
                    .map_err(|e| Error::Document {
                        digest: "-".into(),
                        message: format!("matching task: {e}"),
                    })?;
            report.keys_matched += e.len() as u64;
            report.matches += matches.len() as u64;
            report.undecidable += undecidable;
            let mut tx = pool.begin().await?;
            sqlx::query(DELETE_MATCHES_SQL)
                .bind(&e)
                .bind(&n)
                .bind(&v)
                .execute(&mut *tx)
                .await?;
            if !matches.is_empty() {
                sqlx::query(INSERT_MATCHES_SQL)
                    .bind(serde_json::Value::Array(matches))
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(MARK_KEYS_SQL)
                .bind(&e)
                .bind(&n)
                .bind(&v)
                .bind(stamp)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        report.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

/// Evaluates keys against the candidate affected entries of their (ecosystem, name).
fn evaluate_batch(
    keys: &[(String, String, String)],
    candidates: Vec<Candidate>,
) -> (Vec<serde_json::Value>, u64) {
    let mut by_name: HashMap<(String, String), Vec<Parsed>> = HashMap::new();
    for c in candidates {
        let entry = serde_json::from_value::<Affected>(c.7.clone()).ok();
        by_name
            .entry((c.0.clone(), c.1.clone()))
            .or_default()
            .push((c, entry));
    }
    let mut out = vec![];
    let mut undecidable = 0;
    for (eco, name, version) in keys {
        let Some(list) = by_name.get(&(eco.clone(), name.clone())) else {
            continue;
        };
        let scheme = Scheme::for_ecosystem(eco);
        // A record may list the same package in several entries: keep one match per record.
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (c, entry) in list {
            let Some(entry) = entry else { continue };
            match evaluate(entry, scheme, version) {
                Verdict::Affected { state, fixed } => {
                    if seen.contains_key(c.2.as_str()) {
                        continue;
                    }
                    seen.insert(&c.2, out.len());
                    out.push(json!({"e": eco, "n": name, "v": version, "id": c.2, "aliases": c.3, "severity": c.4,
                        "cvss": c.5, "state": state.as_str(), "fixed": fixed, "urls": c.6}));
                }
                Verdict::Undecidable => undecidable += 1,
                Verdict::Clear => {}
            }
        }
    }
    (out, undecidable)
}
