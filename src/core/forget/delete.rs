//! Deleting one stored image and every row keyed by it, in one transaction that starts by locking the
//! image's row. Whatever else writes about the image takes that row's lock too, so the two never
//! interleave: a worker storing a re-analysis (its upsert), the feed cycle indexing it (`FOR KEY SHARE`
//! before it writes the index) and the layer sweeper's readers. A delete racing a re-analysis of the same
//! digest therefore leaves either nothing or the new analysis whole.
//!
//! Tables keyed by the image (every `*/migrations` was read for this list): `fathom_images`,
//! `fathom_image_references` (cascade), `fathom_vuln_images`, `fathom_vuln_image_groups` (the image's
//! links to its package groups: a handful of rows, the groups stay for the rematch round to prune),
//! `fathom_vuln_undecodable`, `fathom_policy_evaluations`, `fathom_catalog_history`, `fathom_inventory`,
//! and the submissions pinned to the digest (`fathom_submissions`, `fathom_submission_heads` of
//! `repo@digest`). Its layers stay until the sweeper finds no image using them; finished jobs stay until
//! the queue prunes them; the outbox keeps its events (and gains `dev.fathom.image.deleted`); the
//! delete of the image's row marks it changed (`fathom_vuln_changed_images`, by trigger), and the next
//! match round finds it gone and clears the mark.

use std::time::Duration;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};

/// The image's row, locked for the transaction (`None`: not stored).
const LOCK_IMAGE_SQL: &str = "SELECT index_digest, layers FROM fathom_images \
     WHERE manifest_digest = $1 FOR UPDATE";

/// The references the image was seen under, newest first, and whether it is still the newest image
/// seen under each (a tag that moved on to another digest is not).
const REFERENCES_SQL: &str = r#"
SELECT r.reference,
       NOT EXISTS (SELECT 1 FROM fathom_image_references o
                   WHERE o.reference = r.reference AND o.last_seen_at > r.last_seen_at)
FROM fathom_image_references r
WHERE r.manifest_digest = $1
ORDER BY r.last_seen_at DESC
"#;

/// Why the image may not go without force: live jobs for it (`$3`: their possible dedup keys), watched
/// tags pointing at it (`$1`: its manifest digest and the index it came from), uses seen within the
/// inventory TTL (`$2` seconds).
const BLOCKERS_SQL: &str = r#"
(SELECT 'job', format('job %s is %s for %s', id, state, payload->>'reference')
   FROM fathom_jobs
  WHERE kind = 'analyze' AND state IN ('queued', 'running') AND dedup_key = ANY($3)
  ORDER BY id LIMIT 5)
UNION ALL
(SELECT 'watched_tag', format('it is the current digest of the watched tag %s', reference)
   FROM fathom_catalog_watches
  WHERE kind = 'tag' AND digest = ANY($1)
  ORDER BY reference LIMIT 5)
UNION ALL
(SELECT 'running', format('it was seen running in %s %s/%s container %s at %s (within services.webhook.inventory_ttl)',
                          namespace, owner_kind, owner_name, container,
                          to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
   FROM fathom_inventory
  WHERE digest = ANY($1) AND last_seen > now() - make_interval(secs => $2)
  ORDER BY last_seen DESC LIMIT 5)
"#;

/// Everything keyed by the image but its references (they cascade with the image row). `$2`: the
/// submitted references pinned to the digest.
const DELETE_SQL: &str = r#"
WITH vp AS (DELETE FROM fathom_vuln_image_groups WHERE manifest_digest = $1),
     vi AS (DELETE FROM fathom_vuln_images WHERE manifest_digest = $1),
     vu AS (DELETE FROM fathom_vuln_undecodable WHERE manifest_digest = $1),
     pe AS (DELETE FROM fathom_policy_evaluations WHERE image_digest = $1),
     ch AS (DELETE FROM fathom_catalog_history WHERE digest = $1),
     inv AS (DELETE FROM fathom_inventory WHERE digest = $1),
     sub AS (DELETE FROM fathom_submissions WHERE reference = ANY($2)),
     heads AS (DELETE FROM fathom_submission_heads WHERE reference = ANY($2))
DELETE FROM fathom_images WHERE manifest_digest = $1
"#;

/// One reason an image is kept unless the delete is forced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blocker {
    /// `job`, `watched_tag` or `running`.
    pub reason: String,
    /// What exactly, for people.
    pub detail: String,
}

/// A deleted image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    /// Its manifest digest.
    pub digest: String,
    /// The references it was seen under.
    pub references: Vec<String>,
    /// Its layers (the sweeper deletes those no other image uses).
    pub layers: Vec<String>,
    /// What force overrode (empty without force).
    pub overridden: Vec<Blocker>,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Gone, with everything keyed by it.
    Deleted(Deleted),
    /// No image with this digest is stored.
    NotFound,
    /// Kept: these say why (only without force).
    Blocked(Vec<Blocker>),
}

/// How to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Delete even while a job, a watched tag or a running workload uses the image.
    pub force: bool,
    /// A use seen this recently in the inventory keeps the image (`services.webhook.inventory_ttl`).
    pub inventory_ttl: Duration,
}

/// The repository part of a reference (`host/repo:tag` and `host/repo@sha256:..` → `host/repo`).
fn repository_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    match reference.rfind(':') {
        Some(colon) if !reference[colon..].contains('/') => &reference[..colon],
        _ => reference,
    }
}

/// Submitted references pinned to `digest` in the repositories it was seen in.
fn pinned(digest: &str, references: &[String]) -> Vec<String> {
    let mut out: Vec<String> = references
        .iter()
        .map(|r| format!("{}@{digest}", repository_of(r)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The dedup keys a live analysis job of this very image can have, as submitted and forced: each
/// reference it is still the newest image of (`current`; a job of a tag that moved on analyzes the
/// tag's newer digest, not this one) and each pinned reference.
fn job_keys(current: &[String], pinned: &[String]) -> Vec<String> {
    current
        .iter()
        .chain(pinned)
        .flat_map(|r| [r.clone(), format!("{r}#force")])
        .collect()
}

/// Why the image (`digests`: its manifest digest and the index it came from) may not be deleted unforced.
pub async fn blockers_in(
    conn: &mut PgConnection,
    digests: &[String],
    job_keys: &[String],
    inventory_ttl: Duration,
) -> sqlx::Result<Vec<Blocker>> {
    let rows: Vec<(String, String)> = sqlx::query_as(BLOCKERS_SQL)
        .bind(digests)
        .bind(inventory_ttl.as_secs_f64())
        .bind(job_keys)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(reason, detail)| Blocker { reason, detail })
        .collect())
}

/// The image's row (locked with `lock`) and what its blockers are looked up by.
struct Found {
    layers: Vec<String>,
    references: Vec<String>,
    pinned: Vec<String>,
    blockers: Vec<Blocker>,
}

async fn find_in(
    conn: &mut PgConnection,
    digest: &str,
    lock: bool,
    inventory_ttl: Duration,
) -> sqlx::Result<Option<Found>> {
    let sql = if lock {
        LOCK_IMAGE_SQL.to_string()
    } else {
        LOCK_IMAGE_SQL.replace(" FOR UPDATE", "")
    };
    let row: Option<(Option<String>, Vec<String>)> = sqlx::query_as(&sql)
        .bind(digest)
        .fetch_optional(&mut *conn)
        .await?;
    let Some((index_digest, layers)) = row else {
        return Ok(None);
    };
    let seen: Vec<(String, bool)> = sqlx::query_as(REFERENCES_SQL)
        .bind(digest)
        .fetch_all(&mut *conn)
        .await?;
    let current: Vec<String> = seen
        .iter()
        .filter(|(_, current)| *current)
        .map(|(r, _)| r.clone())
        .collect();
    let references: Vec<String> = seen.into_iter().map(|(r, _)| r).collect();
    let pinned = pinned(digest, &references);
    let mut digests = vec![digest.to_string()];
    digests.extend(index_digest);
    let keys = job_keys(&current, &pinned);
    let blockers = blockers_in(conn, &digests, &keys, inventory_ttl).await?;
    Ok(Some(Found {
        layers,
        references,
        pinned,
        blockers,
    }))
}

/// What keeps the image `digest` from being deleted unforced (`None`: not stored), without deleting it.
pub async fn blockers(
    pool: &PgPool,
    digest: &str,
    inventory_ttl: Duration,
) -> sqlx::Result<Option<Vec<Blocker>>> {
    let mut conn = pool.acquire().await?;
    Ok(find_in(&mut conn, digest, false, inventory_ttl)
        .await?
        .map(|f| f.blockers))
}

/// Deletes the image `digest` (a checked `sha256:<hex>`) and everything keyed by it, in one transaction
/// with its `dev.fathom.image.deleted` event, unless something keeps it and `rules.force` is off.
pub async fn delete_image(pool: &PgPool, digest: &str, rules: Rules) -> sqlx::Result<Outcome> {
    let mut tx = pool.begin().await?;
    let Some(found) = find_in(&mut tx, digest, true, rules.inventory_ttl).await? else {
        return Ok(Outcome::NotFound);
    };
    if !rules.force && !found.blockers.is_empty() {
        return Ok(Outcome::Blocked(found.blockers));
    }
    sqlx::query(DELETE_SQL)
        .bind(digest)
        .bind(&found.pinned)
        .execute(&mut *tx)
        .await?;
    let deleted = Deleted {
        digest: digest.to_string(),
        references: found.references,
        layers: found.layers,
        overridden: found.blockers,
    };
    let data = serde_json::json!({
        "digest": deleted.digest,
        "references": deleted.references,
        "forced": rules.force,
        "overridden": deleted.overridden,
    });
    fathom_notify::write(
        &mut tx,
        &fathom_notify::NewEvent::new(fathom_notify::types::IMAGE_DELETED, digest, data),
    )
    .await?;
    tx.commit().await?;
    Ok(Outcome::Deleted(deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_references_keep_the_repository_and_drop_tag_or_digest() {
        let d = "sha256:aa";
        let refs = [
            "127.0.0.1:5000/app:1".to_string(),
            "127.0.0.1:5000/app@sha256:bb".to_string(),
            "docker.io/library/alpine:3".to_string(),
            "host:5000/plain".to_string(),
        ];
        assert_eq!(
            pinned(d, &refs),
            [
                "127.0.0.1:5000/app@sha256:aa",
                "docker.io/library/alpine@sha256:aa",
                "host:5000/plain@sha256:aa",
            ]
        );
        let keys = job_keys(&refs[..1], &pinned(d, &refs[..1]));
        assert_eq!(
            keys,
            [
                "127.0.0.1:5000/app:1",
                "127.0.0.1:5000/app:1#force",
                "127.0.0.1:5000/app@sha256:aa",
                "127.0.0.1:5000/app@sha256:aa#force",
            ]
        );
    }
}
