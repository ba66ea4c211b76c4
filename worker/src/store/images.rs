//! Images by manifest digest: saving an analysis (inside the caller's transaction, next to the job's
//! completion), recording failures, the references an image was seen under, and reading it all back.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use sqlx::PgConnection;

use super::{compress, decompress, from_epoch, Result, Store};
use fathom_analyzer::analyze::ImageAnalysis;
use fathom_analyzer::source::ImageInfo;

/// An analysis either succeeded (document stored) or failed for good after the manifest was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageStatus {
    /// Analyzed; the document is stored.
    Analyzed,
    /// The manifest was read but the analysis failed permanently.
    Failed,
}

impl ImageStatus {
    fn parse(s: &str) -> ImageStatus {
        if s == "analyzed" {
            ImageStatus::Analyzed
        } else {
            ImageStatus::Failed
        }
    }
}

/// How long a job waited and worked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Enqueue → claim.
    pub queue_wait: Duration,
    /// Claim → result (resolve, layers, merge).
    pub analysis: Duration,
}

/// An image row with the references it was seen under (no document).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageRecord {
    /// Manifest digest (the key).
    pub manifest_digest: String,
    /// Index the manifest was picked from, if any.
    pub index_digest: Option<String>,
    /// Config digest.
    pub config_digest: String,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Distro's pretty name, when known.
    pub distro: Option<String>,
    /// Layer digests, base first.
    pub layers: Vec<String>,
    /// Analyzed or failed.
    pub status: ImageStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// fathom-worker version that wrote the row.
    pub analyzer_version: String,
    /// Catalogers key of the analysis.
    pub cache_key: String,
    /// Packages visible in the final image.
    pub package_count: i32,
    /// Milliseconds of analysis.
    pub analysis_ms: Option<i64>,
    /// Milliseconds from enqueue to claim.
    pub queue_wait_ms: Option<i64>,
    /// First time any worker stored this digest.
    #[serde(with = "rfc3339")]
    pub first_seen_at: SystemTime,
    /// Last time it was (re)analyzed.
    #[serde(with = "rfc3339")]
    pub analyzed_at: SystemTime,
    /// References it was seen under, most recent first.
    pub references: Vec<String>,
}

/// Upsert of a successful analysis: a later analysis (e.g. after a cataloger bump) replaces the row.
const SAVE_IMAGE_SQL: &str = r#"
INSERT INTO fathom_images (manifest_digest, index_digest, config_digest, platform, distro, layers, status,
    error, analyzer_version, cache_key, package_count, analysis_ms, queue_wait_ms, document, package_parts)
VALUES ($1, $2, $3, $4, $5, $6, 'analyzed', NULL, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (manifest_digest) DO UPDATE SET
    index_digest = EXCLUDED.index_digest, config_digest = EXCLUDED.config_digest,
    platform = EXCLUDED.platform, distro = EXCLUDED.distro, layers = EXCLUDED.layers,
    status = 'analyzed', error = NULL, analyzer_version = EXCLUDED.analyzer_version,
    cache_key = EXCLUDED.cache_key, package_count = EXCLUDED.package_count,
    analysis_ms = EXCLUDED.analysis_ms, queue_wait_ms = EXCLUDED.queue_wait_ms,
    document = EXCLUDED.document, package_parts = EXCLUDED.package_parts, analyzed_at = now()
"#;

/// The document's package parts; an existing part is touched (locked for the transaction, so the
/// sweeper skips it, and its grace restarts).
const SAVE_PARTS_SQL: &str = r#"
INSERT INTO fathom_image_package_parts (hash, cache_key, layer_digest, body)
SELECT h, $2, l, b FROM unnest($1::bytea[], $3::text[], $4::bytea[]) AS x(h, l, b)
ON CONFLICT (hash, cache_key) DO UPDATE SET stored_at = now()
"#;

/// A failure never overwrites a good result.
const SAVE_FAILURE_SQL: &str = r#"
INSERT INTO fathom_images (manifest_digest, index_digest, config_digest, platform, layers, status, error,
    analyzer_version, cache_key)
VALUES ($1, $2, $3, $4, $5, 'failed', $6, $7, $8)
ON CONFLICT (manifest_digest) DO UPDATE SET
    status = 'failed', error = EXCLUDED.error, analyzer_version = EXCLUDED.analyzer_version,
    cache_key = EXCLUDED.cache_key, analyzed_at = now()
WHERE fathom_images.status = 'failed'
"#;

/// Locks the image's layer rows that exist (the sweeper skips locked rows, so none of them goes while this
/// transaction lives).
const LOCK_LAYERS_SQL: &str =
    "SELECT digest FROM fathom_layers WHERE digest = ANY($1) AND cache_key = $2 FOR KEY SHARE";

/// Of the image's layers missing from the cache, those the sweeper deleted (a fresh statement: it sees
/// tombstones committed while the lock above waited for the sweeper).
const SWEPT_LAYERS_SQL: &str = r#"
SELECT t.digest FROM fathom_layer_tombstones t
WHERE t.digest = ANY($1) AND t.cache_key = $2 AND t.swept_at > now() - interval '1 day'
"#;

const ADD_REFERENCE_SQL: &str = r#"
INSERT INTO fathom_image_references (reference, manifest_digest) VALUES ($1, $2)
ON CONFLICT (reference, manifest_digest) DO UPDATE SET last_seen_at = now()
"#;

const IS_ANALYZED_SQL: &str = r#"
SELECT EXISTS (SELECT 1 FROM fathom_images
               WHERE manifest_digest = $1 AND cache_key = $2 AND status = 'analyzed')
"#;

const IMAGE_COLUMNS: &str = r#"
SELECT i.manifest_digest, i.index_digest, i.config_digest, i.platform, i.distro, i.layers, i.status,
       i.error, i.analyzer_version, i.cache_key, i.package_count, i.analysis_ms, i.queue_wait_ms,
       extract(epoch FROM i.first_seen_at)::float8, extract(epoch FROM i.analyzed_at)::float8,
       coalesce((SELECT array_agg(r.reference ORDER BY r.last_seen_at DESC)
                 FROM fathom_image_references r WHERE r.manifest_digest = i.manifest_digest), '{}')
FROM fathom_images i
"#;

/// The document with the bodies of the package parts it names.
const DOCUMENT_SQL: &str = r#"
SELECT i.document, coalesce(x.hashes, '{}'), coalesce(x.bodies, '{}')
FROM fathom_images i
LEFT JOIN LATERAL (SELECT array_agg(p.hash) AS hashes, array_agg(p.body) AS bodies
                   FROM fathom_image_package_parts p
                   WHERE p.hash = ANY(i.package_parts) AND p.cache_key = i.cache_key) x ON true
WHERE i.manifest_digest = $1 AND i.status = 'analyzed'
"#;

type ImageRow = (
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Vec<String>,
    String,
    Option<String>,
    String,
    String,
    i32,
    Option<i64>,
    Option<i64>,
    f64,
    f64,
    Vec<String>,
);

fn record(row: ImageRow) -> ImageRecord {
    ImageRecord {
        manifest_digest: row.0,
        index_digest: row.1,
        config_digest: row.2,
        platform: row.3,
        distro: row.4,
        layers: row.5,
        status: ImageStatus::parse(&row.6),
        error: row.7,
        analyzer_version: row.8,
        cache_key: row.9,
        package_count: row.10,
        analysis_ms: row.11,
        queue_wait_ms: row.12,
        first_seen_at: from_epoch(row.13),
        analyzed_at: from_epoch(row.14),
        references: row.15,
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn layer_digests(info: &ImageInfo) -> Vec<String> {
    info.layers.iter().map(|l| l.digest.clone()).collect()
}

/// Stores a successful analysis seen under `reference`, on the caller's connection: run it in the
/// transaction that completes the job, so the result exists exactly when the job succeeded.
pub async fn save_analysis_in(
    conn: &mut PgConnection,
    analysis: &ImageAnalysis,
    reference: &str,
    timings: Timings,
) -> Result<()> {
    let image = &analysis.image;
    let cache_key = &analysis.analyzer.cache_key;
    let stored = keep_layers(conn, &layer_digests(image), cache_key).await?;
    let what = format!("image {}", image.manifest_digest);
    let mut doc = serde_json::to_value(analysis).map_err(|e| super::document_error(&what, e))?;
    let parts = super::parts::split(&what, &mut doc, &stored)?;
    let document = compress(&what, &doc)?;
    let hashes: Vec<&[u8]> = parts.iter().map(|p| p.1.as_slice()).collect();
    if !parts.is_empty() {
        let layers: Vec<&str> = parts.iter().map(|p| p.0.as_str()).collect();
        let bodies: Vec<&[u8]> = parts.iter().map(|p| p.2.as_slice()).collect();
        sqlx::query(SAVE_PARTS_SQL)
            .bind(&hashes)
            .bind(cache_key)
            .bind(&layers)
            .bind(&bodies)
            .execute(&mut *conn)
            .await?;
    }
    let distro = analysis.distro.as_ref().map(|d| {
        if d.pretty_name.is_empty() {
            format!("{} {}", d.id, d.version_id).trim().to_string()
        } else {
            d.pretty_name.clone()
        }
    });
    sqlx::query(SAVE_IMAGE_SQL)
        .bind(&image.manifest_digest)
        .bind(&image.index_digest)
        .bind(&image.config_digest)
        .bind(image.platform.to_string())
        .bind(distro)
        .bind(layer_digests(image))
        .bind(&analysis.analyzer.version)
        .bind(&analysis.analyzer.cache_key)
        .bind(i32::try_from(analysis.packages.len()).unwrap_or(i32::MAX))
        .bind(millis(timings.analysis))
        .bind(millis(timings.queue_wait))
        .bind(document)
        .bind((!hashes.is_empty()).then_some(&hashes))
        .execute(&mut *conn)
        .await?;
    add_reference_in(conn, &image.manifest_digest, reference).await
}

/// Makes sure the layers an analysis read from the cache are still there when its image is stored: the
/// existing rows are locked for the transaction, and a layer the sweeper deleted since the job read it
/// fails the save with [`super::StoreError::LayerSwept`] (the job retries and analyzes it again). A layer
/// missing without a tombstone was never stored (its cache write failed): that is the analysis' warning.
/// Returns the layers whose rows exist (locked).
async fn keep_layers(
    conn: &mut PgConnection,
    layers: &[String],
    cache_key: &str,
) -> Result<Vec<String>> {
    let present: Vec<String> = sqlx::query_scalar(LOCK_LAYERS_SQL)
        .bind(layers)
        .bind(cache_key)
        .fetch_all(&mut *conn)
        .await?;
    let missing: Vec<&String> = layers.iter().filter(|l| !present.contains(l)).collect();
    if missing.is_empty() {
        return Ok(present);
    }
    let swept: Vec<String> = sqlx::query_scalar(SWEPT_LAYERS_SQL)
        .bind(&missing)
        .bind(cache_key)
        .fetch_all(&mut *conn)
        .await?;
    match swept.into_iter().next() {
        Some(digest) => Err(super::StoreError::LayerSwept { digest }),
        None => Ok(present),
    }
}

/// Records that the image (already stored) was seen under `reference`.
pub async fn add_reference_in(
    conn: &mut PgConnection,
    manifest_digest: &str,
    reference: &str,
) -> Result<()> {
    sqlx::query(ADD_REFERENCE_SQL)
        .bind(reference)
        .bind(manifest_digest)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Every reference `manifest_digest` was seen under, sorted (on the caller's connection, so it sees the
/// transaction's own writes).
pub async fn references_in(conn: &mut PgConnection, manifest_digest: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT reference FROM fathom_image_references WHERE manifest_digest = $1 ORDER BY reference",
    )
    .bind(manifest_digest)
    .fetch_all(conn)
    .await?)
}

/// Records a permanent failure of an image whose manifest was read (never replaces a good result).
pub async fn save_failure_in(
    conn: &mut PgConnection,
    image: &ImageInfo,
    reference: &str,
    error: &str,
    cache_key: &str,
) -> Result<()> {
    sqlx::query(SAVE_FAILURE_SQL)
        .bind(&image.manifest_digest)
        .bind(&image.index_digest)
        .bind(&image.config_digest)
        .bind(image.platform.to_string())
        .bind(layer_digests(image))
        .bind(error)
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(cache_key)
        .execute(&mut *conn)
        .await?;
    add_reference_in(conn, &image.manifest_digest, reference).await
}

impl Store {
    /// Whether this manifest was already analyzed with this catalogers key (then its layers need not be
    /// touched at all).
    pub async fn is_analyzed(&self, manifest_digest: &str, cache_key: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(IS_ANALYZED_SQL)
            .bind(manifest_digest)
            .bind(cache_key)
            .fetch_one(&self.pool)
            .await?)
    }

    /// One image by manifest digest.
    pub async fn image(&self, manifest_digest: &str) -> Result<Option<ImageRecord>> {
        let sql = format!("{IMAGE_COLUMNS} WHERE i.manifest_digest = $1");
        let row: Option<ImageRow> = sqlx::query_as(&sql)
            .bind(manifest_digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(record))
    }

    /// The image most recently seen under `reference`.
    pub async fn image_by_reference(&self, reference: &str) -> Result<Option<ImageRecord>> {
        let sql = format!(
            "{IMAGE_COLUMNS} JOIN fathom_image_references r0 ON r0.manifest_digest = i.manifest_digest \
             WHERE r0.reference = $1 ORDER BY r0.last_seen_at DESC LIMIT 1"
        );
        let row: Option<ImageRow> = sqlx::query_as(&sql)
            .bind(reference)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(record))
    }

    /// Every image, most recently analyzed first, at most `limit`.
    pub async fn images(&self, limit: i64) -> Result<Vec<ImageRecord>> {
        let sql = format!("{IMAGE_COLUMNS} ORDER BY i.analyzed_at DESC LIMIT $1");
        let rows: Vec<ImageRow> = sqlx::query_as(&sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(record).collect())
    }

    /// The full analysis document of an analyzed image. A large document is decompressed and parsed on
    /// a blocking thread, so it does not stall the async workers of a server; a small one (most: the
    /// package lists are in shared parts) is decoded in place, cheaper than the hop to that thread.
    pub async fn document(&self, manifest_digest: &str) -> Result<Option<ImageAnalysis>> {
        type Row = (Option<Vec<u8>>, Vec<Vec<u8>>, Vec<Vec<u8>>);
        let row: Option<Row> = sqlx::query_as(DOCUMENT_SQL)
            .bind(manifest_digest)
            .fetch_optional(&self.pool)
            .await?;
        let Some((Some(bytes), hashes, bodies)) = row else {
            return Ok(None);
        };
        let what = format!("image {manifest_digest}");
        // By the sizes the frames state, not the stored ones: a document compressing a thousandfold
        // is still a large parse.
        // (Saturating: a corrupt row's header may state anything.)
        let stated: Option<u64> = std::iter::once(&bytes)
            .chain(&bodies)
            .try_fold(0u64, |sum, b| {
                Some(sum.saturating_add(super::codec::stated_size(b)?))
            });
        let decode = move || -> Result<ImageAnalysis> {
            // Through a JSON value even without parts found: a document naming parts that are gone
            // must fail (clearly), not read as an image without packages.
            let mut doc: serde_json::Value = decompress(&what, &bytes)?;
            let bodies = hashes.into_iter().zip(bodies).collect();
            super::parts::join(&what, &mut doc, &bodies)?;
            serde_json::from_value(doc).map_err(|e| super::document_error(&what, e))
        };
        if stated.is_some_and(|n| n <= DECODE_IN_PLACE_BYTES) {
            return decode().map(Some);
        }
        tokio::task::spawn_blocking(decode)
            .await
            .map_err(|e| super::StoreError::Document {
                what: format!("image {manifest_digest}"),
                message: format!("decoding task: {e}"),
            })?
            .map(Some)
    }
}

/// JSON bytes of a document and its parts (as their frames state them) decoded on the async thread: a
/// fraction of a millisecond to parse.
const DECODE_IN_PLACE_BYTES: u64 = 256 * 1024;

/// RFC 3339 timestamps in JSON output.
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(*t))
    }
}
