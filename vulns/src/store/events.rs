//! The events of a match round, written in the matcher's transaction (so only when its matches commit):
//! per image whose matches changed, and per image after the first match of its analysis,
//! `dev.fathom.image.vulnerabilities.changed`; per vulnerability newly matched in the fleet,
//! `dev.fathom.vulnerability.new` (one event, paged past 1,000 images).
//!
//! Everything is read in bulk. While a batch of keys is re-matched, the rows that differ between a
//! key's old and new matches (projected on what an event shows) are kept in a scratch table — only for
//! keys that were matched before, so a new image's keys never make a diff (its first match reports it
//! whole). At the end of the round those rows are joined once to the images carrying the keys and
//! handed to the pure diff of `fathom_notify::diff`.

use std::collections::{BTreeMap, BTreeSet};

use fathom_notify::data::{Fix, ImageRef, Package, VulnEntry, VulnerabilitiesChanged, WorkloadRef};
use fathom_notify::diff::{
    diff, image_event, vulnerability_new, Carrier, NewVulnerability, IMAGES_PER_EVENT,
};
use fathom_notify::{Event, NewEvent};
use sqlx::PgConnection;

use crate::error::Result;

/// The scratch table of a round's differing match rows (`is_new`: the row as it is now, else as it was).
pub(crate) const SCRATCH_SQL: &str =
    "CREATE TEMP TABLE IF NOT EXISTS fathom_match_diff (is_new boolean, ecosystem text, name text, \
     version text, vuln_id text, aliases text[], severity text, fix_state text, fixed text[]) ON COMMIT DROP";

/// After a batch's new matches are written and before its keys are stamped: the differing rows of the
/// batch keys (`$1..$3`) that were matched before (`matched_stamp >= 0`).
const DIFF_BATCH_SQL: &str = r#"
WITH keys AS (
    SELECT k.ecosystem, k.name, k.version FROM fathom_vuln_keys k
    JOIN unnest($1::text[], $2::text[], $3::text[]) AS u(e, n, v)
      ON k.ecosystem = u.e AND k.name = u.n AND k.version = u.v
    WHERE k.matched_stamp >= 0),
new AS (
    SELECT m.ecosystem, m.name, m.version, m.vuln_id, m.aliases, m.severity, m.fix_state, m.fixed
    FROM fathom_vuln_matches m JOIN keys k ON m.ecosystem = k.ecosystem AND m.name = k.name AND m.version = k.version),
old AS (
    SELECT o.ecosystem, o.name, o.version, o.vuln_id, o.aliases, o.severity, o.fix_state, o.fixed
    FROM fathom_old_matches o JOIN keys k ON o.ecosystem = k.ecosystem AND o.name = k.name AND o.version = k.version)
INSERT INTO fathom_match_diff
SELECT false, * FROM (SELECT * FROM old EXCEPT SELECT * FROM new) o
UNION ALL
SELECT true, * FROM (SELECT * FROM new EXCEPT SELECT * FROM old) n
"#;

/// Records the batch's differing rows (run only when the batch changed some key's matches).
pub(crate) async fn diff_batch(
    tx: &mut PgConnection,
    e: &[&str],
    n: &[&str],
    v: &[&str],
) -> Result<()> {
    sqlx::query(DIFF_BATCH_SQL)
        .bind(e)
        .bind(n)
        .bind(v)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Images whose analysis is indexed, not reported yet and fully matched (no key waiting for its first
/// match), while some feed has data: their first match is news.
const FIRST_SQL: &str = r#"
SELECT v.manifest_digest FROM fathom_vuln_images v
WHERE NOT v.reported
  AND EXISTS (SELECT 1 FROM fathom_vuln_feeds WHERE generation IS NOT NULL)
  AND NOT EXISTS (
      SELECT 1 FROM fathom_vuln_image_packages p
      JOIN fathom_vuln_keys k ON k.ecosystem = p.ecosystem AND k.name = p.name AND k.version = p.version
      WHERE p.manifest_digest = v.manifest_digest AND k.matched_stamp < 0)
ORDER BY 1
"#;
const MARK_REPORTED_SQL: &str =
    "UPDATE fathom_vuln_images SET reported = true WHERE manifest_digest = ANY($1)";
/// First images read per statement.
const FIRST_BATCH: usize = 200;
/// The most severe matches of the images `$1`, at most `$2` each, with each image's total.
const FIRST_MATCHES_SQL: &str = r#"
SELECT digest, vuln_id, aliases, package_name, package_version, package_type, severity, fix_state, fixed, total
FROM (
    SELECT p.manifest_digest AS digest, m.vuln_id, m.aliases, p.package_name, p.package_version,
           p.package_type, m.severity, m.fix_state, m.fixed,
           count(*) OVER (PARTITION BY p.manifest_digest) AS total,
           row_number() OVER (PARTITION BY p.manifest_digest ORDER BY
               array_position(ARRAY['unknown','negligible','low','medium','high','critical'], m.severity) DESC NULLS LAST,
               m.vuln_id, p.package_name, p.package_version) AS n
    FROM fathom_vuln_image_packages p
    JOIN fathom_vuln_matches m ON m.ecosystem = p.ecosystem AND m.name = p.name AND m.version = p.version
    WHERE p.manifest_digest = ANY($1)) x
WHERE n <= $2
"#;
/// The round's differing rows on the reported images carrying them.
const IMAGE_DIFF_SQL: &str = r#"
SELECT p.manifest_digest, d.is_new, d.vuln_id, d.aliases, p.package_name, p.package_version, p.package_type,
       d.severity, d.fix_state, d.fixed
FROM fathom_match_diff d
JOIN fathom_vuln_image_packages p ON p.ecosystem = d.ecosystem AND p.name = d.name AND p.version = d.version
JOIN fathom_vuln_images v ON v.manifest_digest = p.manifest_digest AND v.reported
"#;
/// Vulnerabilities matched now by some key and by no key before the round: every current match of
/// theirs is a new row of the round (no old row anywhere, no carried-over match).
const NEW_VULNS_SQL: &str = r#"
WITH cand AS (SELECT vuln_id FROM fathom_match_diff WHERE is_new
              EXCEPT SELECT vuln_id FROM fathom_match_diff WHERE NOT is_new)
SELECT c.vuln_id FROM cand c
WHERE NOT EXISTS (
    SELECT 1 FROM fathom_vuln_matches m
    WHERE m.vuln_id = c.vuln_id AND NOT EXISTS (
        SELECT 1 FROM fathom_match_diff d
        WHERE d.is_new AND d.vuln_id = m.vuln_id AND d.ecosystem = m.ecosystem AND d.name = m.name
          AND d.version = m.version))
"#;
/// The reported images carrying the vulnerabilities `$1`.
const CARRIERS_SQL: &str = r#"
SELECT DISTINCT d.vuln_id, d.aliases, d.severity, p.manifest_digest
FROM fathom_match_diff d
JOIN fathom_vuln_image_packages p ON p.ecosystem = d.ecosystem AND p.name = d.name AND p.version = d.version
JOIN fathom_vuln_images v ON v.manifest_digest = p.manifest_digest AND v.reported
WHERE d.is_new AND d.vuln_id = ANY($1)
"#;
const REFERENCES_SQL: &str = "SELECT manifest_digest, reference FROM fathom_image_references \
     WHERE manifest_digest = ANY($1) ORDER BY 1, 2";
/// The inventory belongs to the catalog's migrations, which a vulnerability-only database may lack.
const HAS_INVENTORY_SQL: &str = "SELECT to_regclass('fathom_inventory') IS NOT NULL";
const WORKLOADS_SQL: &str = "SELECT digest, namespace, owner_kind, owner_name, container \
     FROM fathom_inventory WHERE digest = ANY($1) ORDER BY 1, 2, 3, 4, 5";

/// (digest, is_new, id, aliases, package name, version, type, severity, fix state, fixed)
type DiffRow = (
    String,
    bool,
    String,
    Vec<String>,
    String,
    String,
    String,
    String,
    String,
    Vec<String>,
);
/// (digest, id, aliases, package name, version, type, severity, fix state, fixed, image total)
type FirstRow = (
    String,
    String,
    Vec<String>,
    String,
    String,
    String,
    String,
    String,
    Vec<String>,
    i64,
);

#[allow(clippy::too_many_arguments)]
fn entry(
    id: String,
    aliases: Vec<String>,
    name: String,
    version: String,
    package_type: String,
    severity: String,
    state: String,
    versions: Vec<String>,
) -> VulnEntry {
    VulnEntry {
        id,
        aliases,
        package: Package {
            name,
            version,
            package_type,
        },
        severity,
        fix: Fix { state, versions },
    }
}

/// What the round's events need to know of each image: references and workloads.
struct Context {
    references: BTreeMap<String, Vec<String>>,
    workloads: BTreeMap<String, Vec<WorkloadRef>>,
}

impl Context {
    async fn load(tx: &mut PgConnection, digests: &[String]) -> Result<Context> {
        let mut references: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut workloads: BTreeMap<String, Vec<WorkloadRef>> = BTreeMap::new();
        if digests.is_empty() {
            return Ok(Context {
                references,
                workloads,
            });
        }
        let rows: Vec<(String, String)> = sqlx::query_as(REFERENCES_SQL)
            .bind(digests)
            .fetch_all(&mut *tx)
            .await?;
        for (d, r) in rows {
            references.entry(d).or_default().push(r);
        }
        let has_inventory: bool = sqlx::query_scalar(HAS_INVENTORY_SQL)
            .fetch_one(&mut *tx)
            .await?;
        if has_inventory {
            let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(WORKLOADS_SQL)
                .bind(digests)
                .fetch_all(&mut *tx)
                .await?;
            for (d, namespace, kind, name, container) in rows {
                workloads.entry(d).or_default().push(WorkloadRef {
                    namespace,
                    kind,
                    name,
                    container,
                });
            }
        }
        Ok(Context {
            references,
            workloads,
        })
    }

    fn image(&self, digest: &str) -> ImageRef {
        ImageRef {
            digest: digest.to_string(),
            references: self.references.get(digest).cloned().unwrap_or_default(),
        }
    }

    fn workloads(&self, digest: &str) -> Vec<WorkloadRef> {
        self.workloads.get(digest).cloned().unwrap_or_default()
    }
}

/// Writes the round's events; `matched`: keys were matched (the scratch tables exist). Returns how many
/// events were written. An idle round costs one indexed query (images waiting for their first report).
pub(crate) async fn emit(tx: &mut PgConnection, matched: bool) -> Result<u64> {
    let mut written = 0;
    let first: Vec<String> = sqlx::query_scalar(FIRST_SQL).fetch_all(&mut *tx).await?;
    if matched {
        written += changed_images(tx).await?;
        written += new_vulnerabilities(tx).await?;
    }
    for chunk in first.chunks(FIRST_BATCH) {
        written += first_matches(tx, chunk).await?;
    }
    Ok(written)
}

async fn changed_images(tx: &mut PgConnection) -> Result<u64> {
    let rows: Vec<DiffRow> = sqlx::query_as(IMAGE_DIFF_SQL).fetch_all(&mut *tx).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut per_image: BTreeMap<String, (Vec<VulnEntry>, Vec<VulnEntry>)> = BTreeMap::new();
    for (digest, is_new, id, aliases, name, version, ptype, severity, state, fixed) in rows {
        let e = entry(id, aliases, name, version, ptype, severity, state, fixed);
        let sides = per_image.entry(digest).or_default();
        if is_new {
            sides.1.push(e);
        } else {
            sides.0.push(e);
        }
    }
    let digests: Vec<String> = per_image.keys().cloned().collect();
    let ctx = Context::load(tx, &digests).await?;
    let events: Vec<NewEvent> = per_image
        .into_iter()
        .filter_map(|(digest, (old, new))| {
            image_event(
                ctx.image(&digest),
                ctx.workloads(&digest),
                false,
                diff(old, new),
                VulnerabilitiesChanged::LISTED,
            )
        })
        .map(|e| e.event())
        .collect();
    Ok(fathom_notify::write_many(tx, &events).await?)
}

async fn new_vulnerabilities(tx: &mut PgConnection) -> Result<u64> {
    let ids: Vec<String> = sqlx::query_scalar(NEW_VULNS_SQL)
        .fetch_all(&mut *tx)
        .await?;
    if ids.is_empty() {
        return Ok(0);
    }
    let rows: Vec<(String, Vec<String>, String, String)> = sqlx::query_as(CARRIERS_SQL)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
    let digests: Vec<String> = rows
        .iter()
        .map(|r| r.3.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let ctx = Context::load(tx, &digests).await?;
    let mut vulns: BTreeMap<String, NewVulnerability> = BTreeMap::new();
    for (id, aliases, severity, digest) in rows {
        let v = vulns.entry(id.clone()).or_insert_with(|| NewVulnerability {
            id,
            aliases,
            severities: vec![],
            carriers: vec![],
        });
        v.severities.push(severity);
        v.carriers.push(Carrier {
            image: ctx.image(&digest),
            workloads: ctx.workloads(&digest),
        });
    }
    let events: Vec<NewEvent> = vulns
        .into_values()
        .flat_map(|v| vulnerability_new(v, IMAGES_PER_EVENT))
        .map(|e| e.event())
        .collect();
    Ok(fathom_notify::write_many(tx, &events).await?)
}

async fn first_matches(tx: &mut PgConnection, digests: &[String]) -> Result<u64> {
    let rows: Vec<FirstRow> = sqlx::query_as(FIRST_MATCHES_SQL)
        .bind(digests)
        .bind(VulnerabilitiesChanged::LISTED as i64)
        .fetch_all(&mut *tx)
        .await?;
    let mut per_image: BTreeMap<String, (Vec<VulnEntry>, usize)> =
        digests.iter().map(|d| (d.clone(), (vec![], 0))).collect();
    for (digest, id, aliases, name, version, ptype, severity, state, fixed, total) in rows {
        let e = entry(id, aliases, name, version, ptype, severity, state, fixed);
        let slot = per_image.entry(digest).or_default();
        slot.0.push(e);
        slot.1 = usize::try_from(total).unwrap_or(usize::MAX);
    }
    let ctx = Context::load(tx, digests).await?;
    let events: Vec<NewEvent> = per_image
        .into_iter()
        .filter_map(|(digest, (added, total))| {
            let mut e = image_event(
                ctx.image(&digest),
                ctx.workloads(&digest),
                true,
                diff(vec![], added),
                VulnerabilitiesChanged::LISTED,
            )?;
            // The rows were cut in SQL: the count is the image's total.
            e.counts.added = total.max(e.added.len());
            e.truncated = e.counts.added > e.added.len();
            Some(e.event())
        })
        .collect();
    let written = fathom_notify::write_many(tx, &events).await?;
    sqlx::query(MARK_REPORTED_SQL)
        .bind(digests)
        .execute(&mut *tx)
        .await?;
    Ok(written)
}
