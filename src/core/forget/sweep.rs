//! The layer sweeper: deletes cached layers (with their package, secret and content search rows, which
//! cascade) that no stored image references, walking `fathom_layers` in key order a small batch per
//! transaction.
//!
//! Never a layer a job is using: a layer stored since the oldest running analysis was claimed, or less
//! than `grace` ago, is left alone (a running job stores its layers before the image that references
//! them), and so is one with a live claim (a worker is computing it). A job that read an old layer from the cache locks the rows of its layers when it
//! stores its image (`FOR KEY SHARE`); the sweeper locks candidates `FOR UPDATE SKIP LOCKED` and checks
//! again in a new statement before deleting, leaving a tombstone, so a job whose layer went meanwhile
//! finds the tombstone and retries ([`fathom_worker::store::StoreError::LayerSwept`]).

use std::time::Duration;

use sqlx::PgPool;

/// Layers examined per transaction.
pub const BATCH: i64 = 200;

/// The next window of layer keys after the cursor.
const WINDOW_SQL: &str = r#"
SELECT digest, cache_key FROM fathom_layers
WHERE (digest, cache_key) > ($1, $2)
ORDER BY digest, cache_key
LIMIT $3
"#;

/// Unreferenced, unclaimed, old enough layers in the window (`$1..$4`), locked; rows a job holds are
/// skipped.
const CANDIDATES_SQL: &str = r#"
SELECT l.digest, l.cache_key FROM fathom_layers l
WHERE (l.digest, l.cache_key) > ($1, $2) AND (l.digest, l.cache_key) <= ($3, $4)
  AND l.analyzed_at < now() - make_interval(secs => $5)
  AND l.analyzed_at < coalesce((SELECT min(j.claimed_at) FROM fathom_jobs j
                                WHERE j.state = 'running' AND j.kind = 'analyze'), 'infinity')
  AND NOT EXISTS (SELECT 1 FROM fathom_images i
                  WHERE i.layers @> ARRAY[l.digest] AND i.cache_key = l.cache_key)
  AND NOT EXISTS (SELECT 1 FROM fathom_layer_claims c
                  WHERE c.digest = l.digest AND c.cache_key = l.cache_key AND c.expires_at > now())
FOR UPDATE OF l SKIP LOCKED
"#;

/// Deletes the locked candidates still unreferenced (a fresh snapshot: an image committed since the
/// candidates were read keeps its layers) and leaves their tombstones.
const DELETE_SQL: &str = r#"
WITH gone AS (
    DELETE FROM fathom_layers l USING unnest($1::text[], $2::text[]) AS c(d, k)
    WHERE l.digest = c.d AND l.cache_key = c.k
      AND NOT EXISTS (SELECT 1 FROM fathom_images i
                      WHERE i.layers @> ARRAY[l.digest] AND i.cache_key = l.cache_key)
      AND NOT EXISTS (SELECT 1 FROM fathom_layer_claims lc
                      WHERE lc.digest = l.digest AND lc.cache_key = l.cache_key AND lc.expires_at > now())
    RETURNING l.digest, l.cache_key)
INSERT INTO fathom_layer_tombstones (digest, cache_key)
SELECT digest, cache_key FROM gone
ON CONFLICT (digest, cache_key) DO UPDATE SET swept_at = now()
RETURNING digest
"#;

/// Package parts of image documents (`fathom_image_package_parts`) no image names any more, older
/// than the grace, locked; a part an image being stored is touching is skipped (its save locks it and
/// restarts its grace), and a part deleted under a save is inserted again by that save.
const PART_CANDIDATES_SQL: &str = r#"
SELECT p.hash, p.cache_key FROM fathom_image_package_parts p
WHERE p.stored_at < now() - make_interval(secs => $1)
  AND NOT EXISTS (SELECT 1 FROM fathom_images i WHERE i.package_parts @> ARRAY[p.hash])
LIMIT $2
FOR UPDATE OF p SKIP LOCKED
"#;
const DELETE_PARTS_SQL: &str = r#"
DELETE FROM fathom_image_package_parts p USING unnest($1::bytea[], $2::text[]) AS c(h, k)
WHERE p.hash = c.h AND p.cache_key = c.k
  AND NOT EXISTS (SELECT 1 FROM fathom_images i WHERE i.package_parts @> ARRAY[p.hash])
"#;

/// Tombstones outlive any job attempt that could have read their layer.
const FORGET_TOMBSTONES_SQL: &str =
    "DELETE FROM fathom_layer_tombstones WHERE swept_at < now() - interval '1 day'";

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Layers looked at.
    pub examined: u64,
    /// Layers deleted (digests).
    pub deleted: Vec<String>,
    /// Package parts deleted because no image names them (a deleted layer's parts go with it and are
    /// not counted).
    pub parts_deleted: u64,
}

/// Sweeps the whole layer cache once, `batch` layers per transaction.
pub async fn sweep(pool: &PgPool, grace: Duration, batch: i64) -> sqlx::Result<SweepReport> {
    let mut report = SweepReport::default();
    let mut cursor = (String::new(), String::new());
    loop {
        let window: Vec<(String, String)> = sqlx::query_as(WINDOW_SQL)
            .bind(&cursor.0)
            .bind(&cursor.1)
            .bind(batch.max(1))
            .fetch_all(pool)
            .await?;
        let Some(last) = window.last().cloned() else {
            break;
        };
        report.examined += window.len() as u64;
        let mut tx = pool.begin().await?;
        let candidates: Vec<(String, String)> = sqlx::query_as(CANDIDATES_SQL)
            .bind(&cursor.0)
            .bind(&cursor.1)
            .bind(&last.0)
            .bind(&last.1)
            .bind(grace.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
        if !candidates.is_empty() {
            let (digests, keys): (Vec<String>, Vec<String>) = candidates.into_iter().unzip();
            let gone: Vec<String> = sqlx::query_scalar(DELETE_SQL)
                .bind(&digests)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?;
            report.deleted.extend(gone);
        }
        tx.commit().await?;
        if (window.len() as i64) < batch {
            break;
        }
        cursor = last;
    }
    report.parts_deleted = sweep_parts(pool, grace, batch).await?;
    sqlx::query(FORGET_TOMBSTONES_SQL).execute(pool).await?;
    Ok(report)
}

/// Deletes package parts no image names (a deleted or re-analyzed image's own parts of a layer other
/// images still use), `batch` per transaction; how many went.
async fn sweep_parts(pool: &PgPool, grace: Duration, batch: i64) -> sqlx::Result<u64> {
    let mut deleted = 0;
    loop {
        let mut tx = pool.begin().await?;
        let candidates: Vec<(Vec<u8>, String)> = sqlx::query_as(PART_CANDIDATES_SQL)
            .bind(grace.as_secs_f64())
            .bind(batch.max(1))
            .fetch_all(&mut *tx)
            .await?;
        if candidates.is_empty() {
            return Ok(deleted);
        }
        let full = candidates.len() as i64 >= batch.max(1);
        let (hashes, keys): (Vec<Vec<u8>>, Vec<String>) = candidates.into_iter().unzip();
        let gone = sqlx::query(DELETE_PARTS_SQL)
            .bind(&hashes)
            .bind(&keys)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        deleted += gone;
        if !full || gone == 0 {
            return Ok(deleted);
        }
    }
}
