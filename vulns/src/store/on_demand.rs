//! One image matched on demand: an image analyzed since the last fleet round is indexed and its new
//! keys matched right before its verdict (milliseconds for one image), so a policy never judges it on
//! "vulnerability data unavailable" only because the round has not reached it yet.

use sqlx::PgPool;

use super::index::index_one;
use super::matcher::{match_batch, Key, KEY_BATCH, MAX_DIRTY_SQL};
use super::FEED_LOCK;
use super::{events, notify};
use crate::error::Result;

/// Whether the image needs it: a live feed exists, and the image is analyzed but not indexed (or
/// re-analyzed since; not when its document is already known not to decode), or one of its keys was
/// never matched. Keys under names a feed change marked dirty keep their previous matches until the
/// fleet round: the image has data, only a round old. One boolean of `$1` (the digest), so a caller can
/// read it in the statement that reads what else it needs (the policy engine's check state).
pub const NEEDS_SQL: &str = r#"
SELECT EXISTS (SELECT 1 FROM fathom_vuln_feeds WHERE generation IS NOT NULL) AND (
    EXISTS (SELECT 1 FROM fathom_images i LEFT JOIN fathom_vuln_images v ON v.manifest_digest = i.manifest_digest
            WHERE i.manifest_digest = $1 AND i.status = 'analyzed' AND i.document IS NOT NULL
              AND (v.manifest_digest IS NULL OR v.analyzed_at <> i.analyzed_at)
              AND NOT EXISTS (SELECT 1 FROM fathom_vuln_undecodable u WHERE u.manifest_digest = i.manifest_digest
                              AND u.analyzed_at = i.analyzed_at))
 OR EXISTS (SELECT 1 FROM fathom_vuln_image_packages p
            JOIN fathom_vuln_keys k ON k.ecosystem = p.ecosystem AND k.name = p.name AND k.version = p.version
            WHERE p.manifest_digest = $1 AND k.matched_stamp < 0))
"#;
/// The image's keys never matched.
const KEYS_SQL: &str = r#"
SELECT DISTINCT k.ecosystem, k.name, k.version
FROM fathom_vuln_image_packages p
JOIN fathom_vuln_keys k ON k.ecosystem = p.ecosystem AND k.name = p.name AND k.version = p.version
WHERE p.manifest_digest = $1 AND k.matched_stamp < 0
ORDER BY 1, 2, 3
"#;
/// Taken for the transaction only; refused (not waited for) while a fleet round holds the lock.
const TRY_LOCK_SQL: &str = "SELECT pg_try_advisory_xact_lock($1)";

/// What [`OnDemand::match_needed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDemand {
    /// Indexed (when it was not) and its new keys matched, committed (no keys when a round got there
    /// first).
    Matched {
        /// Keys evaluated.
        keys: u64,
    },
    /// A fleet round (or `fathom vulns sync`) holds the feed lock and will match the image itself.
    Busy,
}

impl OnDemand {
    /// Indexes the analyzed image `digest` if it is not, and matches its keys never matched, in one
    /// transaction under the feed lock (so its match writes never collide with a fleet round's). For a
    /// caller that read [`NEEDS_SQL`] (in the statement reading what else it needs) and found it true.
    pub async fn match_needed(pool: &PgPool, digest: &str) -> Result<OnDemand> {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar(TRY_LOCK_SQL)
            .bind(FEED_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(OnDemand::Busy);
        }
        index_one(&mut tx, digest).await?;
        // The stamp a fleet round would give: dirty entries up to it stay for the round to consume.
        let stamp: i64 = sqlx::query_scalar(MAX_DIRTY_SQL)
            .fetch_one(&mut *tx)
            .await?;
        let keys: Vec<Key> = sqlx::query_as(KEYS_SQL)
            .bind(digest)
            .fetch_all(&mut *tx)
            .await?;
        if !keys.is_empty() {
            // As a fleet round does: the images whose matches changed are notified on commit.
            notify::begin(&mut tx).await?;
            for batch in keys.chunks(KEY_BATCH) {
                match_batch(&mut tx, batch, stamp).await?;
            }
            notify::finish(&mut tx).await?;
        }
        // The image's first match is news, written with it.
        events::emit(&mut tx, !keys.is_empty()).await?;
        tx.commit().await?;
        Ok(OnDemand::Matched {
            keys: keys.len() as u64,
        })
    }
}
