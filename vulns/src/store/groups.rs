//! Package groups: the vulnerability index stores an image's visible packages once per distinct group
//! (the rows introduced by one layer), and the image as its list of groups. Images that share base
//! layers share those groups, so the index grows with unique layers, not with images; an image whose
//! upper layer hides a lower package has a group of its own for that layer (its rows differ), so every
//! image reads exactly the rows it had when each image stored its own (`fathom_vuln_image_packages` is
//! a view over the groups with the old table's columns).
//!
//! Indexing takes [`GROUPS_LOCK`] shared for its transaction and pruning takes it exclusively (or skips
//! the round), so a group an indexer is about to reference is never pruned under it.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::copy::{copy_in, next_buffer, CopyRows};
use crate::error::Result;

/// Advisory lock key between indexing (shared) and group pruning (exclusive): "fathomGr" as bytes.
const GROUPS_LOCK: i64 = 0x6661_7468_6f6d_4772;

/// One visible package with its OSV key (a row of the index).
pub(crate) struct Row {
    pub(crate) ecosystem: String,
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) package_type: String,
    pub(crate) package_name: String,
    pub(crate) package_version: String,
    pub(crate) purl: String,
    pub(crate) layer: String,
    pub(crate) os: bool,
}

impl Row {
    /// The row's canonical line: fields joined by U+001F, ended by U+001E, `os` as `t`/`f` — the same
    /// line the migration that introduced groups builds in SQL, so both hash a group alike.
    fn line(&self) -> String {
        let sep = '\u{1f}';
        format!(
            "{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}{sep}{}\u{1e}",
            self.ecosystem,
            self.name,
            self.version,
            self.package_type,
            self.package_name,
            self.package_version,
            self.purl,
            self.layer,
            if self.os { "t" } else { "f" }
        )
    }
}

/// A group's hash: sha256 over its rows' lines in byte order (duplicates kept).
pub(crate) fn group_hash(rows: &[&Row]) -> Vec<u8> {
    let mut lines: Vec<String> = rows.iter().map(|r| r.line()).collect();
    lines.sort_unstable();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
    }
    h.finalize().to_vec()
}

/// An image's rows split into groups by the layer that introduced them: (hash, rows) per group.
pub(crate) fn image_groups(rows: &[Row]) -> Vec<(Vec<u8>, Vec<&Row>)> {
    let mut by_layer: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_layer.entry(r.layer.as_str()).or_default().push(r);
    }
    by_layer
        .into_values()
        .map(|rows| (group_hash(&rows), rows))
        .collect()
}

const LOCK_SHARED_SQL: &str = "SELECT pg_advisory_xact_lock_shared($1)";
const TRY_LOCK_SQL: &str = "SELECT pg_try_advisory_xact_lock($1)";
/// New groups (an existing hash is left alone; a concurrent insert of the same hash waits for the other
/// transaction and then inserts only if that one rolled back).
const INSERT_GROUPS_SQL: &str = r#"
INSERT INTO fathom_vuln_groups (hash) SELECT unnest($1::bytea[])
ON CONFLICT (hash) DO NOTHING RETURNING id, hash
"#;
const GROUP_IDS_SQL: &str = "SELECT id, hash FROM fathom_vuln_groups WHERE hash = ANY($1)";
const COPY_GROUP_PACKAGES_SQL: &str =
    "COPY fathom_vuln_group_packages (group_id, ecosystem, name, \
    version, package_type, package_name, package_version, purl, layer_digest, os) FROM STDIN";
const INSERT_IMAGE_GROUPS_SQL: &str = r#"
INSERT INTO fathom_vuln_image_groups (manifest_digest, group_id)
SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING
"#;
/// Groups no image uses, with their packages.
const PRUNE_GROUPS_SQL: &str = r#"
WITH gone AS (
    DELETE FROM fathom_vuln_groups g
    WHERE NOT EXISTS (SELECT 1 FROM fathom_vuln_image_groups i WHERE i.group_id = g.id)
    RETURNING id),
pkgs AS (DELETE FROM fathom_vuln_group_packages p USING gone WHERE p.group_id = gone.id)
SELECT count(*) FROM gone
"#;

/// Writes the images' groups (new ones with their packages) and links each image to its groups, inside
/// the caller's transaction (whose earlier statements dropped the images' previous links).
pub(crate) async fn write_groups(tx: &mut PgConnection, images: &[(&str, &[Row])]) -> Result<()> {
    sqlx::query(LOCK_SHARED_SQL)
        .bind(GROUPS_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut groups: HashMap<Vec<u8>, Vec<&Row>> = HashMap::new();
    let mut links: Vec<(&str, Vec<u8>)> = vec![];
    for (digest, rows) in images {
        for (hash, rows) in image_groups(rows) {
            links.push((digest, hash.clone()));
            groups.entry(hash).or_insert(rows);
        }
    }
    if links.is_empty() {
        return Ok(());
    }
    let hashes: Vec<&[u8]> = groups.keys().map(Vec::as_slice).collect();
    let new: Vec<(i64, Vec<u8>)> = sqlx::query_as(INSERT_GROUPS_SQL)
        .bind(&hashes)
        .fetch_all(&mut *tx)
        .await?;
    let mut buffers: Vec<CopyRows> = vec![];
    for (id, hash) in &new {
        for r in groups.get(hash).map(Vec::as_slice).unwrap_or_default() {
            let id = id.to_string();
            next_buffer(&mut buffers)
                .text(&id)
                .text(&r.ecosystem)
                .text(&r.name)
                .text(&r.version)
                .text(&r.package_type)
                .text(&r.package_name)
                .text(&r.package_version)
                .text(&r.purl)
                .text(&r.layer)
                .bool(r.os)
                .end_row();
        }
    }
    if !buffers.is_empty() {
        copy_in(&mut *tx, COPY_GROUP_PACKAGES_SQL, buffers).await?;
    }
    let ids: HashMap<Vec<u8>, i64> = sqlx::query_as::<_, (i64, Vec<u8>)>(GROUP_IDS_SQL)
        .bind(&hashes)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(id, hash)| (hash, id))
        .collect();
    let (mut digests, mut group_ids) = (vec![], vec![]);
    for (digest, hash) in &links {
        if let Some(id) = ids.get(hash) {
            digests.push(*digest);
            group_ids.push(*id);
        }
    }
    sqlx::query(INSERT_IMAGE_GROUPS_SQL)
        .bind(&digests)
        .bind(&group_ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Deletes groups no image uses (after images were removed or re-indexed), unless an indexer holds
/// the groups lock (the next round prunes them); how many went.
pub(crate) async fn prune_groups(pool: &sqlx::PgPool) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let locked: bool = sqlx::query_scalar(TRY_LOCK_SQL)
        .bind(GROUPS_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok(0);
    }
    let gone: i64 = sqlx::query_scalar(PRUNE_GROUPS_SQL)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(u64::try_from(gone).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, layer: &str) -> Row {
        Row {
            ecosystem: "npm".into(),
            name: name.into(),
            version: "1.0.0".into(),
            package_type: "npm".into(),
            package_name: name.into(),
            package_version: "1.0.0".into(),
            purl: format!("pkg:npm/{name}@1.0.0"),
            layer: layer.into(),
            os: false,
        }
    }

    #[test]
    fn groups_split_by_layer_and_hash_regardless_of_row_order() {
        let a = [row("x", "l1"), row("y", "l1"), row("z", "l2")];
        let b = [row("y", "l1"), row("x", "l1")];
        let ga = image_groups(&a);
        let gb = image_groups(&b);
        assert_eq!(ga.len(), 2);
        assert_eq!(gb.len(), 1);
        assert_eq!(ga[0].0, gb[0].0, "the same rows of a layer are one group");
        // A hidden package changes the layer's group.
        let c = [row("x", "l1"), row("z", "l2")];
        assert_ne!(image_groups(&c)[0].0, ga[0].0);
        // Duplicates count.
        let d = [row("x", "l1"), row("x", "l1"), row("y", "l1")];
        assert_ne!(image_groups(&d)[0].0, ga[0].0);
    }
}
