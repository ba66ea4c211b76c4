//! Which images a re-match changed, announced on [`crate::CHANNEL`]: a key's old matches are kept aside
//! when the matcher replaces them, compared with the new ones, and the digests of the images carrying a
//! key whose matches differ are notified in the matcher's transaction (so only on commit). A round that
//! changed no match notifies nothing; caches of every other image stay warm.

use sqlx::PgConnection;

use crate::error::Result;

/// Digests per notification: a payload must stay under 8000 bytes (a digest is 71).
const DIGESTS_PER_NOTE: usize = 100;
/// Past this many changed images one `*` costs the listeners less than many notifications.
const MAX_DIGESTS: usize = 1000;

/// The transaction's scratch tables: old matches of the batch being replaced, and changed keys.
const SCRATCH_SQL: [&str; 3] = [
    "CREATE TEMP TABLE IF NOT EXISTS fathom_old_matches (LIKE fathom_vuln_matches) ON COMMIT DROP",
    "CREATE TEMP TABLE IF NOT EXISTS fathom_changed_keys (ecosystem text, name text, version text) \
     ON COMMIT DROP",
    super::events::SCRATCH_SQL,
];
/// Replaces the batch keys' matches, keeping the old ones aside (`$1..$3`: the keys).
pub(crate) const DELETE_KEEPING_SQL: &str = r#"
WITH gone AS (
    DELETE FROM fathom_vuln_matches m USING unnest($1::text[], $2::text[], $3::text[]) AS k(e, n, v)
    WHERE m.ecosystem = k.e AND m.name = k.n AND m.version = k.v
    RETURNING m.*)
INSERT INTO fathom_old_matches SELECT * FROM gone
"#;
/// The batch keys whose matches differ in any field from the ones kept aside, then a clean slate.
const CHANGED_SQL: &str = r#"
WITH new AS (
    SELECT m.* FROM fathom_vuln_matches m JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(e, n, v)
        ON m.ecosystem = k.e AND m.name = k.n AND m.version = k.v),
diff AS (
    (SELECT * FROM fathom_old_matches EXCEPT ALL SELECT * FROM new)
    UNION ALL
    (SELECT * FROM new EXCEPT ALL SELECT * FROM fathom_old_matches))
INSERT INTO fathom_changed_keys SELECT DISTINCT ecosystem, name, version FROM diff
"#;
const CLEAR_OLD_SQL: &str = "TRUNCATE fathom_old_matches";
const DIGESTS_SQL: &str = r#"
SELECT DISTINCT p.manifest_digest FROM fathom_vuln_image_packages p
JOIN fathom_changed_keys c ON c.ecosystem = p.ecosystem AND c.name = p.name AND c.version = p.version
ORDER BY 1
"#;
const CHANGED_COUNT_SQL: &str =
    "SELECT count(*) FROM (SELECT DISTINCT * FROM fathom_changed_keys) c";

/// Creates the scratch tables in the matcher's transaction.
pub(crate) async fn begin(tx: &mut PgConnection) -> Result<()> {
    for sql in SCRATCH_SQL {
        sqlx::query(sql).execute(&mut *tx).await?;
    }
    Ok(())
}

/// After a batch's new matches are written and before its keys are stamped (the events' diff tells keys
/// matched before from new ones): records its keys whose matches changed.
pub(crate) async fn compare_batch(
    tx: &mut PgConnection,
    e: &[&str],
    n: &[&str],
    v: &[&str],
) -> Result<()> {
    let changed = sqlx::query(CHANGED_SQL)
        .bind(e)
        .bind(n)
        .bind(v)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // The events' diff reads the same old and new rows, only for batches where something changed.
    if changed > 0 {
        super::events::diff_batch(tx, e, n, v).await?;
    }
    sqlx::query(CLEAR_OLD_SQL).execute(&mut *tx).await?;
    Ok(())
}

/// Notifies the images whose matches changed (delivered when the transaction commits); returns how many
/// keys changed.
pub(crate) async fn finish(tx: &mut PgConnection) -> Result<u64> {
    let changed: i64 = sqlx::query_scalar(CHANGED_COUNT_SQL)
        .fetch_one(&mut *tx)
        .await?;
    if changed == 0 {
        return Ok(0);
    }
    let digests: Vec<String> = sqlx::query_scalar(DIGESTS_SQL).fetch_all(&mut *tx).await?;
    let payloads: Vec<String> = if digests.len() > MAX_DIGESTS {
        vec!["*".to_owned()]
    } else {
        digests
            .chunks(DIGESTS_PER_NOTE)
            .map(|c| c.join(" "))
            .collect()
    };
    for payload in payloads {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::CHANNEL)
            .bind(payload)
            .execute(&mut *tx)
            .await?;
    }
    Ok(u64::try_from(changed).unwrap_or(0))
}
