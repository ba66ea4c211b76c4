//! The images an index pass looks at: the markers a trigger on `fathom_images` writes with every change
//! (`fathom_vuln_changed_images`, migration `20261223000000`), so an idle round reads one small table
//! instead of comparing every stored image with the index, and how a pass settles them.
//!
//! A marker is settled only in the row version the pass read (its `xmin`), and only when no transaction
//! holds it: a change committed after the read, or not committed yet, writes a new version, which stays
//! for the next round.
//!
//! The invariant: whatever drops an image's index rows without changing its `fathom_images` row must
//! write a marker (a migration rebuilding the index, a reset tool), or no round looks at the image again;
//! marking an image undecodable is the one intended exception (its mark says why it is not indexed).

use sqlx::PgPool;

use crate::error::Result;

/// Markers one pass takes at most, so the pass after an upgrade (which marks every image) is bounded.
const MARKERS_PER_PASS: i64 = 20_000;

/// Images marked undecodable by another release are looked at again (this one may decode them).
const RETRY_UNDECODABLE_SQL: &str = r#"
INSERT INTO fathom_vuln_changed_images (manifest_digest)
SELECT manifest_digest FROM fathom_vuln_undecodable WHERE decoder <> $1
ON CONFLICT DO NOTHING
"#;
/// The newest changes first: a backlog never holds back an image analyzed now.
const MARKERS_SQL: &str =
    "SELECT manifest_digest, xmin::text FROM fathom_vuln_changed_images ORDER BY seq DESC LIMIT $1";
/// Deletes the markers still in the version read. One a transaction holds (a change not committed yet)
/// is skipped, not waited for: the round holds the feed lock, and that change makes a new version.
const SETTLE_SQL: &str = r#"
DELETE FROM fathom_vuln_changed_images
WHERE ctid IN (SELECT c.ctid FROM fathom_vuln_changed_images c
               JOIN unnest($1::text[], $2::text[]) AS s(digest, version)
                 ON c.manifest_digest = s.digest AND c.xmin::text = s.version
               FOR UPDATE OF c SKIP LOCKED)
"#;

/// The markers one pass read: digests, and the row versions to settle.
#[derive(Debug, Default)]
pub(super) struct Marked {
    /// The marked images' digests.
    pub digests: Vec<String>,
    versions: Vec<String>,
}

/// Reads the markers (after re-marking images another release could not decode).
pub(super) async fn marked(pool: &PgPool, decoder: &str) -> Result<Marked> {
    sqlx::query(RETRY_UNDECODABLE_SQL)
        .bind(decoder)
        .execute(pool)
        .await?;
    let rows: Vec<(String, String)> = sqlx::query_as(MARKERS_SQL)
        .bind(MARKERS_PER_PASS)
        .fetch_all(pool)
        .await?;
    let (digests, versions) = rows.into_iter().unzip();
    Ok(Marked { digests, versions })
}

impl Marked {
    /// Deletes the markers the pass dealt with, those still in the version it read.
    pub(super) async fn settle(&self, pool: &PgPool) -> Result<()> {
        if self.digests.is_empty() {
            return Ok(());
        }
        sqlx::query(SETTLE_SQL)
            .bind(&self.digests)
            .bind(&self.versions)
            .execute(pool)
            .await?;
        Ok(())
    }
}
