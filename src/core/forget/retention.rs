//! Retention (`services.catalog.retention`): which stored images the rules delete, and deleting them.
//!
//! - `keep_per_tag`: per watched tag, its history's newest `keep_per_tag` digests stay; an older one
//!   goes unless another watched tag keeps it (a multi-platform tag's history names the index: its
//!   platform images go or stay together).
//! - `untagged_after`: an image that is no reference's newest image (references pinned to a digest do
//!   not count) and no watched tag's current digest, analyzed longer ago than this, goes.
//!
//! Either way an image is deleted like `DELETE /v1/images/{digest}` without force, so one with a live
//! job, a watched tag on it or a use within the inventory TTL stays (and is reported as kept). A pass
//! deletes at most `max_per_pass` images.

use std::time::Duration;

use fathom_catalog::RetentionConfig;
use serde::Serialize;
use sqlx::PgPool;

use super::delete::{blockers, delete_image, Blocker, Outcome, Rules};

/// Digests of watched tags' histories past their newest `$1`, kept by no tag, with each tag and rank.
const PAST_KEEP_SQL: &str = r#"
WITH per AS (
    SELECT h.watch_id, h.digest, max(h.last_seen) AS seen
    FROM fathom_catalog_history h JOIN fathom_catalog_watches w ON w.id = h.watch_id AND w.kind = 'tag'
    GROUP BY h.watch_id, h.digest),
ranked AS (
    SELECT watch_id, digest, row_number() OVER (PARTITION BY watch_id ORDER BY seen DESC, digest) AS n
    FROM per),
kept AS (SELECT r.digest FROM ranked r WHERE r.n <= $1
         UNION SELECT w.digest FROM fathom_catalog_watches w WHERE w.kind = 'tag' AND w.digest IS NOT NULL)
SELECT DISTINCT ON (r.digest) r.digest, w.reference, r.n
FROM ranked r JOIN fathom_catalog_watches w ON w.id = r.watch_id
WHERE r.n > $1 AND NOT EXISTS (SELECT 1 FROM kept k WHERE k.digest = r.digest)
ORDER BY r.digest, r.n
"#;

/// Stored images a history digest stands for: the manifest itself, or the platforms of an index.
const IMAGES_OF_SQL: &str = "SELECT manifest_digest FROM fathom_images \
     WHERE manifest_digest = ANY($1) OR index_digest = ANY($1) ORDER BY manifest_digest";

/// Images no reference or watched tag points at any more, analyzed more than `$1` seconds ago, oldest
/// first, at most `$2`.
const UNTAGGED_SQL: &str = r#"
SELECT i.manifest_digest, to_char(i.analyzed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
FROM fathom_images i
WHERE i.analyzed_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (
      SELECT 1 FROM fathom_image_references r
      WHERE r.manifest_digest = i.manifest_digest AND position('@' IN r.reference) = 0
        AND NOT EXISTS (SELECT 1 FROM fathom_image_references o
                        WHERE o.reference = r.reference AND o.last_seen_at > r.last_seen_at))
  AND NOT EXISTS (SELECT 1 FROM fathom_catalog_watches w
                  WHERE w.kind = 'tag' AND w.digest IN (i.manifest_digest, i.index_digest))
ORDER BY i.analyzed_at, i.manifest_digest
LIMIT $2
"#;

/// An image a rule would delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Doomed {
    /// Its manifest digest.
    pub digest: String,
    /// `keep_per_tag` or `untagged_after`.
    pub rule: &'static str,
    /// Why, for people.
    pub why: String,
}

/// What a pass did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Deleted (or, dry, would be deleted).
    pub deleted: Vec<Doomed>,
    /// Selected by a rule but kept, with what keeps each.
    pub kept: Vec<(Doomed, Vec<Blocker>)>,
}

/// The images the rules select now, at most `max_per_pass`.
pub async fn plan(pool: &PgPool, rules: &RetentionConfig) -> sqlx::Result<Vec<Doomed>> {
    let most = rules.max_per_pass as usize;
    let mut out: Vec<Doomed> = Vec::new();
    if rules.keep_per_tag > 0 {
        let past: Vec<(String, String, i64)> = sqlx::query_as(PAST_KEEP_SQL)
            .bind(i64::from(rules.keep_per_tag))
            .fetch_all(pool)
            .await?;
        for (digest, tag, rank) in past {
            if out.len() >= most {
                break;
            }
            let images: Vec<String> = sqlx::query_scalar(IMAGES_OF_SQL)
                .bind(vec![digest.clone()])
                .fetch_all(pool)
                .await?;
            for image in images {
                if out.len() < most && !out.iter().any(|d| d.digest == image) {
                    out.push(Doomed {
                        why: format!(
                            "{digest} is the {} newest digest of the watched tag {tag}; keep_per_tag is {}",
                            ordinal(rank),
                            rules.keep_per_tag
                        ),
                        digest: image,
                        rule: "keep_per_tag",
                    });
                }
            }
        }
    }
    if !rules.untagged_after.is_zero() && out.len() < most {
        let rows: Vec<(String, String)> = sqlx::query_as(UNTAGGED_SQL)
            .bind(rules.untagged_after.as_secs_f64())
            .bind(most as i64)
            .fetch_all(pool)
            .await?;
        for (digest, analyzed) in rows {
            if out.len() < most && !out.iter().any(|d| d.digest == digest) {
                out.push(Doomed {
                    digest,
                    rule: "untagged_after",
                    why: format!(
                        "no tag or watch points at it and it was analyzed at {analyzed}, more than untagged_after ({}) ago",
                        humantime::format_duration(rules.untagged_after)
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Applies the rules once: deletes what they select (unforced), or with `dry_run` only says what would
/// go and what would be kept.
pub async fn prune(
    pool: &PgPool,
    rules: &RetentionConfig,
    inventory_ttl: Duration,
    dry_run: bool,
) -> sqlx::Result<PruneReport> {
    let mut report = PruneReport::default();
    for doomed in plan(pool, rules).await? {
        let outcome = if dry_run {
            match blockers(pool, &doomed.digest, inventory_ttl).await? {
                None => Outcome::NotFound,
                Some(b) if b.is_empty() => {
                    report.deleted.push(doomed);
                    continue;
                }
                Some(b) => Outcome::Blocked(b),
            }
        } else {
            let rules = Rules {
                force: false,
                inventory_ttl,
            };
            delete_image(pool, &doomed.digest, rules).await?
        };
        match outcome {
            Outcome::Deleted(_) => report.deleted.push(doomed),
            Outcome::Blocked(b) => report.kept.push((doomed, b)),
            // Deleted by someone else meanwhile: nothing left to do.
            Outcome::NotFound => {}
        }
    }
    Ok(report)
}

fn ordinal(n: i64) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, r) if r != 11 => "st",
        (2, r) if r != 12 => "nd",
        (3, r) if r != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101]
            .iter()
            .map(|n| super::ordinal(*n))
            .collect();
        assert_eq!(
            got,
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]
        );
    }
}
