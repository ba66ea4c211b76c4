//! Indexing stored images for matching: an image's *visible* packages (the image document's package list,
//! the same list the per-image packages route serves: a record a later layer removed is not in it) mapped
//! to OSV keys. Many images per transaction: each batch of images is indexed whole or not at all.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use sqlx::PgPool;

use super::changes;
use super::groups::{prune_groups, write_groups, Row};
use crate::core::ecosystem::{is_os_type, match_key, DistroRef, PackageFacts};
use crate::error::{Error, Result};

/// Images read and indexed per transaction.
const IMAGE_BATCH: i64 = 200;
/// Largest image document accepted (decompressed).
const MAX_DOCUMENT_BYTES: u64 = 1 << 30;

#[derive(Deserialize)]
struct Doc {
    #[serde(default)]
    distro: Option<DocDistro>,
    #[serde(default)]
    packages: Vec<DocPackage>,
    /// The rest of the package list, in parts stored per layer (`worker/src/store/parts.rs`).
    #[serde(default)]
    package_parts: Option<DocParts>,
}

#[derive(Deserialize)]
struct DocParts {
    parts: Vec<DocPart>,
}

#[derive(Deserialize)]
struct DocPart {
    hash: String,
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

/// Analyzed images among `$3` not indexed yet or re-analyzed since, with the analysis time they carry.
const STALE_IMAGES_SQL: &str = r#"
SELECT i.manifest_digest, i.analyzed_at::text, i.document, coalesce(x.hashes, '{}'), coalesce(x.bodies, '{}')
FROM fathom_images i LEFT JOIN fathom_vuln_images v ON v.manifest_digest = i.manifest_digest
LEFT JOIN LATERAL (SELECT array_agg(p.hash) AS hashes, array_agg(p.body) AS bodies
                   FROM fathom_image_package_parts p
                   WHERE p.hash = ANY(i.package_parts) AND p.cache_key = i.cache_key) x ON true
WHERE i.status = 'analyzed' AND i.document IS NOT NULL
  AND i.manifest_digest = ANY($3::text[])
  AND (v.manifest_digest IS NULL OR v.analyzed_at <> i.analyzed_at)
  AND NOT EXISTS (SELECT 1 FROM fathom_vuln_undecodable u WHERE u.manifest_digest = i.manifest_digest
                  AND u.analyzed_at = i.analyzed_at AND u.decoder = $2)
LIMIT $1
"#;
/// Forgets undecodable marks of images no longer stored.
const REMOVED_UNDECODABLE_SQL: &str = r#"
DELETE FROM fathom_vuln_undecodable u
WHERE NOT EXISTS (SELECT 1 FROM fathom_images i WHERE i.manifest_digest = u.manifest_digest AND i.status = 'analyzed')
"#;
/// Marks images whose document did not decode under this release.
const MARK_UNDECODABLE_SQL: &str = r#"
INSERT INTO fathom_vuln_undecodable (manifest_digest, analyzed_at, decoder, error)
SELECT d, a::timestamptz, $3, e FROM unnest($1::text[], $2::text[], $4::text[]) AS x(d, a, e)
ON CONFLICT (manifest_digest) DO UPDATE SET analyzed_at = EXCLUDED.analyzed_at, decoder = EXCLUDED.decoder,
    error = EXCLUDED.error, seen_at = now()
"#;
/// Which release decoded (or failed to decode) a document: a new release tries undecodable ones again.
const DECODER: &str = env!("CARGO_PKG_VERSION");
/// Drops images among `$1` no longer stored (analyzed) with their packages; returns how many images.
const REMOVED_IMAGES_SQL: &str = r#"
WITH gone AS (
    DELETE FROM fathom_vuln_images v
    WHERE v.manifest_digest = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM fathom_images i WHERE i.manifest_digest = v.manifest_digest AND i.status = 'analyzed')
    RETURNING manifest_digest),
links AS (DELETE FROM fathom_vuln_image_groups g USING gone WHERE g.manifest_digest = gone.manifest_digest)
SELECT count(*) FROM gone
"#;
/// Forgets the undecodable marks of images indexed now.
const DECODED_SQL: &str = "DELETE FROM fathom_vuln_undecodable WHERE manifest_digest = ANY($1)";
/// Drops the images' previous index.
const DELETE_IMAGES_SQL: &str = "DELETE FROM fathom_vuln_images WHERE manifest_digest = ANY($1)";
const DELETE_LINKS_SQL: &str =
    "DELETE FROM fathom_vuln_image_groups WHERE manifest_digest = ANY($1)";
const INSERT_IMAGES_SQL: &str = r#"
INSERT INTO fathom_vuln_images (manifest_digest, analyzed_at)
SELECT d, a::timestamptz FROM unnest($1::text[], $2::text[]) AS x(d, a)
"#;
const INSERT_KEYS_SQL: &str = r#"
INSERT INTO fathom_vuln_keys (ecosystem, name, version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING
"#;
/// Keys no group carries (after unused groups are pruned: a group left for the next round keeps its
/// keys, which is harmless, as no image reaches them).
const PRUNE_KEYS_SQL: &str = r#"
DELETE FROM fathom_vuln_keys k WHERE NOT EXISTS (SELECT 1 FROM fathom_vuln_group_packages p
    WHERE p.ecosystem = k.ecosystem AND p.name = k.name AND p.version = k.version)
"#;
const PRUNE_MATCHES_SQL: &str = r#"
DELETE FROM fathom_vuln_matches m WHERE NOT EXISTS (SELECT 1 FROM fathom_vuln_keys k
    WHERE k.ecosystem = m.ecosystem AND k.name = m.name AND k.version = m.version)
"#;

/// A stored document as read: digest, analyzed-at stamp, zstd document, hashes and zstd bodies of the
/// package parts it names.
type Stored = (String, String, Vec<u8>, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn decode_json<T: serde::de::DeserializeOwned>(digest: &str, bytes: &[u8]) -> Result<T> {
    let err = |e: &dyn std::fmt::Display| Error::Document {
        digest: digest.to_string(),
        message: e.to_string(),
    };
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| err(&e))?;
    let limited = std::io::Read::take(decoder, MAX_DOCUMENT_BYTES);
    serde_json::from_reader(std::io::BufReader::new(limited)).map_err(|e| err(&e))
}

/// The document with its parts' packages added (their order does not matter to the index).
fn decode(digest: &str, bytes: &[u8], hashes: &[Vec<u8>], bodies: &[Vec<u8>]) -> Result<Doc> {
    let mut doc: Doc = decode_json(digest, bytes)?;
    for part in doc
        .package_parts
        .take()
        .map(|p| p.parts)
        .unwrap_or_default()
    {
        let body = hashes
            .iter()
            .position(|h| hex_eq(h, &part.hash))
            .and_then(|i| bodies.get(i))
            .ok_or_else(|| Error::Document {
                digest: digest.to_string(),
                message: format!("package part {} is not stored", part.hash),
            })?;
        let packages: Vec<DocPackage> = decode_json(digest, body)?;
        doc.packages.extend(packages);
    }
    Ok(doc)
}

/// Whether `bytes` is what the lowercase hex string `hex` spells.
fn hex_eq(bytes: &[u8], hex: &str) -> bool {
    hex.len() == bytes.len() * 2
        && bytes
            .iter()
            .zip(hex.as_bytes().chunks(2))
            .all(|(b, h)| format!("{b:02x}").as_bytes() == h)
}

/// The rows an image contributes: one per visible package with an OSV key.
fn image_rows(doc: Doc) -> Vec<Row> {
    let distro = doc.distro.map(|d| DistroRef {
        id: d.id,
        version_id: d.version_id,
    });
    doc.packages
        .into_iter()
        .filter_map(|p| {
            let facts = PackageFacts {
                package_type: &p.package_type,
                name: &p.name,
                version: &p.version,
                purl: &p.purl,
                metadata: &p.metadata,
            };
            let k = match_key(facts, distro.as_ref())?;
            Some(Row {
                ecosystem: k.ecosystem,
                name: k.name,
                version: k.version,
                os: is_os_type(&p.package_type),
                layer: p.introduced_in.map(|l| l.digest).unwrap_or_default(),
                package_type: p.package_type,
                package_name: p.name,
                package_version: p.version,
                purl: p.purl,
            })
        })
        .collect()
}

/// A decoded image: digest, analyzed-at stamp, its rows.
type Indexed = (String, String, Vec<Row>);
/// An image whose document did not decode: digest, analyzed-at stamp, why.
type Undecodable = (String, String, Error);

/// Decodes a batch of documents, spread over the machine's cores. Images whose document does not decode
/// come back in the second list: one bad document must not stop every other image from being matched.
fn decode_all(stale: Vec<Stored>) -> Result<(Vec<Indexed>, Vec<Undecodable>)> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per = stale.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<Stored>> = vec![];
    let mut it = stale.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    let mut out: Vec<Indexed> = vec![];
                    let mut bad: Vec<Undecodable> = vec![];
                    for (digest, at, bytes, hashes, bodies) in chunk {
                        match decode(&digest, &bytes, &hashes, &bodies) {
                            Ok(doc) => out.push((digest, at, image_rows(doc))),
                            Err(e) => bad.push((digest, at, e)),
                        }
                    }
                    (out, bad)
                })
            })
            .collect();
        let mut out = vec![];
        let mut bad = vec![];
        for h in handles {
            let (part, errors) = h.join().map_err(|_| Error::Document {
                digest: "-".into(),
                message: "decoding thread panicked".into(),
            })?;
            out.extend(part);
            bad.extend(errors);
        }
        Ok((out, bad))
    })
}

/// What one indexing pass did.
#[derive(Debug, Default)]
pub(crate) struct IndexReport {
    /// Images (re)indexed.
    pub indexed: u64,
    /// Images dropped because they are no longer stored.
    pub removed: u64,
    /// Images whose stored document did not decode: marked, their previous index dropped.
    pub undecodable: u64,
}

/// Indexes new or re-analyzed images and drops removed ones: those a change marked (see [`changes`]).
pub(crate) async fn index_images(pool: &PgPool) -> Result<IndexReport> {
    let marked = changes::marked(pool, DECODER).await?;
    if marked.digests.is_empty() {
        return Ok(IndexReport::default());
    }
    let removed: i64 = sqlx::query_scalar(REMOVED_IMAGES_SQL)
        .bind(&marked.digests)
        .fetch_one(pool)
        .await?;
    let removed = u64::try_from(removed).unwrap_or(0);
    let mut indexed = 0u64;
    let mut undecodable = 0u64;
    // A batch of marked images at a time: each is read (if stale) and indexed in one transaction.
    for batch in marked.digests.chunks(IMAGE_BATCH as usize) {
        let stale: Vec<Stored> = sqlx::query_as(STALE_IMAGES_SQL)
            .bind(IMAGE_BATCH)
            .bind(DECODER)
            .bind(batch)
            .fetch_all(pool)
            .await?;
        if stale.is_empty() {
            continue;
        }
        let (images, bad) = tokio::task::spawn_blocking(move || decode_all(stale))
            .await
            .map_err(|e| Error::Document {
                digest: "-".into(),
                message: format!("decoding task: {e}"),
            })??;
        for (_, _, e) in &bad {
            tracing::warn!(error = %e, "image not indexed, its vulnerability data reads as unavailable: its stored document does not decode; re-analyze it (fathom submit --force)");
        }
        undecodable += bad.len() as u64;
        mark_undecodable(pool, &bad).await?;
        write_batch(pool, &images).await?;
        indexed += images.len() as u64;
    }
    sqlx::query(REMOVED_UNDECODABLE_SQL).execute(pool).await?;
    if removed > 0 || indexed > 0 || undecodable > 0 {
        prune_groups(pool).await?;
        sqlx::query(PRUNE_KEYS_SQL).execute(pool).await?;
        sqlx::query(PRUNE_MATCHES_SQL).execute(pool).await?;
    }
    marked.settle(pool).await?;
    Ok(IndexReport {
        indexed,
        removed,
        undecodable,
    })
}

/// Indexes the one image `digest` when it is analyzed and not indexed (or re-analyzed since), inside the
/// caller's transaction (which holds the feed lock): what on-demand matching needs before it matches the
/// image's new keys. False when there was nothing to index or its document does not decode (the fleet
/// round marks that, as for any image).
pub(crate) async fn index_one(conn: &mut sqlx::PgConnection, digest: &str) -> Result<bool> {
    let stale: Vec<Stored> = sqlx::query_as(STALE_IMAGES_SQL)
        .bind(1_i64)
        .bind(DECODER)
        .bind([digest])
        .fetch_all(&mut *conn)
        .await?;
    if stale.is_empty() {
        return Ok(false);
    }
    let (images, bad) = tokio::task::spawn_blocking(move || decode_all(stale))
        .await
        .map_err(|e| Error::Document {
            digest: digest.to_string(),
            message: format!("decoding task: {e}"),
        })??;
    if !bad.is_empty() {
        return Ok(false);
    }
    write_batch_in(conn, &images).await?;
    Ok(true)
}

/// Drops the images' previous index (their row and group links), inside the caller's transaction.
async fn drop_index(tx: &mut sqlx::PgConnection, digests: &[&str]) -> Result<()> {
    sqlx::query(DELETE_IMAGES_SQL)
        .bind(digests)
        .execute(&mut *tx)
        .await?;
    sqlx::query(DELETE_LINKS_SQL)
        .bind(digests)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Drops the undecodable images' previous index (it described another analysis) and marks them.
async fn mark_undecodable(pool: &PgPool, bad: &[Undecodable]) -> Result<()> {
    if bad.is_empty() {
        return Ok(());
    }
    let digests: Vec<&str> = bad.iter().map(|b| b.0.as_str()).collect();
    let analyzed: Vec<&str> = bad.iter().map(|b| b.1.as_str()).collect();
    let errors: Vec<String> = bad.iter().map(|b| b.2.to_string()).collect();
    let mut tx = pool.begin().await?;
    drop_index(&mut tx, &digests).await?;
    sqlx::query(MARK_UNDECODABLE_SQL)
        .bind(&digests)
        .bind(&analyzed)
        .bind(DECODER)
        .bind(&errors)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// One transaction for the whole batch: images, their package groups and the keys they bring.
async fn write_batch(pool: &PgPool, images: &[Indexed]) -> Result<()> {
    let mut tx = pool.begin().await?;
    write_batch_in(&mut tx, images).await?;
    tx.commit().await?;
    Ok(())
}

/// Locks the images still stored (an image deletion locks its row first, so it waits for this batch or
/// this batch waits for it and skips the image).
const LOCK_STORED_SQL: &str = "SELECT manifest_digest FROM fathom_images \
     WHERE manifest_digest = ANY($1) AND status = 'analyzed' FOR KEY SHARE";

/// [`write_batch`] inside the caller's transaction. Images deleted since their documents were read are
/// left out: indexing them would list a deleted image in by-package and by-vulnerability lookups.
async fn write_batch_in(tx: &mut sqlx::PgConnection, images: &[Indexed]) -> Result<()> {
    let read: Vec<&str> = images.iter().map(|i| i.0.as_str()).collect();
    let stored: Vec<String> = sqlx::query_scalar(LOCK_STORED_SQL)
        .bind(&read)
        .fetch_all(&mut *tx)
        .await?;
    let images: Vec<&Indexed> = images
        .iter()
        .filter(|i| stored.iter().any(|s| s == &i.0))
        .collect();
    let digests: Vec<&str> = images.iter().map(|i| i.0.as_str()).collect();
    let analyzed: Vec<&str> = images.iter().map(|i| i.1.as_str()).collect();
    let keys: BTreeSet<(&str, &str, &str)> = images
        .iter()
        .flat_map(|i| i.2.iter())
        .map(|r| (r.ecosystem.as_str(), r.name.as_str(), r.version.as_str()))
        .collect();
    let (mut e, mut n, mut v) = (vec![], vec![], vec![]);
    for (ke, kn, kv) in keys {
        e.push(ke);
        n.push(kn);
        v.push(kv);
    }
    drop_index(&mut *tx, &digests).await?;
    // Decoded now: an earlier release's mark would otherwise have the image looked at every round.
    sqlx::query(DECODED_SQL)
        .bind(&digests)
        .execute(&mut *tx)
        .await?;
    sqlx::query(INSERT_IMAGES_SQL)
        .bind(&digests)
        .bind(&analyzed)
        .execute(&mut *tx)
        .await?;
    let groups: Vec<(&str, &[Row])> = images
        .iter()
        .map(|i| (i.0.as_str(), i.2.as_slice()))
        .collect();
    write_groups(&mut *tx, &groups).await?;
    sqlx::query(INSERT_KEYS_SQL)
        .bind(&e)
        .bind(&n)
        .bind(&v)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
