//! The layer cache on Postgres (content-addressed by layer digest and catalogers key) and package queries
//! over the per-layer package rows.

use serde::Serialize;

use super::{compress, decompress, Result, Store, StoreError};
use fathom_analyzer::cache::{CacheError, LayerCache, LayerClaim};
use fathom_analyzer::layer::LayerResult;

const GET_LAYER_SQL: &str = "SELECT result FROM fathom_layers WHERE digest = $1 AND cache_key = $2";

/// First writer wins; a concurrent twin (same bytes, same key, same result) is a no-op.
const PUT_LAYER_SQL: &str = r#"
INSERT INTO fathom_layers (digest, cache_key, compressed_bytes, inflated_bytes, entries, package_count, result)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (digest, cache_key) DO NOTHING
RETURNING digest
"#;

const PUT_PACKAGES_SQL: &str = r#"
INSERT INTO fathom_layer_packages (layer_digest, cache_key, package_type, name, version, purl, path)
SELECT $1, $2, t.package_type, t.name, t.version, t.purl, t.path
FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
     AS t(package_type, name, version, purl, path)
"#;

/// Layers holding a matching package, joined to the images using those layers under the same key (the
/// GIN index on `fathom_images.layers` answers the containment test).
const FIND_PACKAGES_SQL: &str = r#"
SELECT i.manifest_digest, p.layer_digest, p.package_type, p.name, p.version, p.purl, p.path
FROM fathom_layer_packages p
JOIN fathom_images i ON i.layers @> ARRAY[p.layer_digest] AND i.cache_key = p.cache_key
WHERE p.name = $1
  AND ($2::text IS NULL OR p.package_type = $2)
  AND ($3::text IS NULL OR p.version = $3)
  AND i.status = 'analyzed'
ORDER BY i.manifest_digest, p.layer_digest, p.path
LIMIT $4
"#;

/// Takes a layer claim unless a live one exists (even one of this process: two jobs of one worker share
/// layers too); an expired claim is taken over.
const BEGIN_CLAIM_SQL: &str = r#"
INSERT INTO fathom_layer_claims (digest, cache_key, owner, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (digest, cache_key) DO UPDATE
    SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
    WHERE fathom_layer_claims.expires_at < now()
RETURNING true
"#;

const RENEW_CLAIM_SQL: &str = r#"
UPDATE fathom_layer_claims SET expires_at = now() + make_interval(secs => $4)
WHERE digest = $1 AND cache_key = $2 AND owner = $3
"#;

const END_CLAIM_SQL: &str =
    "DELETE FROM fathom_layer_claims WHERE digest = $1 AND cache_key = $2 AND owner = $3";

/// A forced re-analysis replaces the stored result; its package rows go with it (ON DELETE CASCADE) and
/// are written again by the insert that follows.
const DELETE_LAYER_SQL: &str = "DELETE FROM fathom_layers WHERE digest = $1 AND cache_key = $2";

/// What to look for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageQuery {
    /// Package name (exact).
    pub name: String,
    /// Package type (`deb`, `npm`, ...), any when `None`.
    pub package_type: Option<String>,
    /// Version (exact), any when `None`.
    pub version: Option<String>,
    /// Most rows returned.
    pub limit: i64,
}

/// An image containing a package, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageHit {
    /// The image.
    pub manifest_digest: String,
    /// The layer whose files record the package (a later layer may delete it; the image document says
    /// what is visible).
    pub layer_digest: String,
    /// Package type.
    pub package_type: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Package URL.
    pub purl: String,
    /// File that recorded it.
    pub path: String,
}

type HitRow = (String, String, String, String, String, String, String);

impl Store {
    /// Images containing a package, by name and optionally type and version.
    pub async fn find_packages(&self, query: &PackageQuery) -> Result<Vec<PackageHit>> {
        let rows: Vec<HitRow> = sqlx::query_as(FIND_PACKAGES_SQL)
            .bind(&query.name)
            .bind(&query.package_type)
            .bind(&query.version)
            .bind(if query.limit > 0 { query.limit } else { 1000 })
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| PackageHit {
                manifest_digest: r.0,
                layer_digest: r.1,
                package_type: r.2,
                name: r.3,
                version: r.4,
                purl: r.5,
                path: r.6,
            })
            .collect())
    }

    /// A cached layer result.
    pub async fn layer(&self, digest: &str, cache_key: &str) -> Result<Option<LayerResult>> {
        let bytes: Option<Vec<u8>> = sqlx::query_scalar(GET_LAYER_SQL)
            .bind(digest)
            .bind(cache_key)
            .fetch_optional(&self.pool)
            .await?;
        bytes
            .map(|b| decompress(&format!("layer {digest}"), &b))
            .transpose()
    }

    /// Stores a layer result and its package, secret, content search, retrieved file and malware rows in
    /// one transaction (once
    /// per digest and key; with `replace`, in place of what is stored).
    pub async fn put_layer(
        &self,
        digest: &str,
        cache_key: &str,
        result: &LayerResult,
        replace: bool,
    ) -> Result<()> {
        let blob = compress(&format!("layer {digest}"), result)?;
        let mut tx = self.pool.begin().await?;
        if replace {
            sqlx::query(DELETE_LAYER_SQL)
                .bind(digest)
                .bind(cache_key)
                .execute(&mut *tx)
                .await?;
        }
        let inserted: Option<String> = sqlx::query_scalar(PUT_LAYER_SQL)
            .bind(digest)
            .bind(cache_key)
            .bind(clamp(result.compressed_bytes))
            .bind(clamp(result.inflated_bytes))
            .bind(clamp(result.entries))
            .bind(i32::try_from(result.packages.len()).unwrap_or(i32::MAX))
            .bind(blob)
            .fetch_optional(&mut *tx)
            .await?;
        if inserted.is_some() && !result.packages.is_empty() {
            let p = &result.packages;
            let types: Vec<&str> = p.iter().map(|p| p.package_type.as_str()).collect();
            let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
            let versions: Vec<&str> = p.iter().map(|p| p.version.as_str()).collect();
            let purls: Vec<&str> = p.iter().map(|p| p.purl.as_str()).collect();
            let paths: Vec<&str> = p
                .iter()
                .map(|p| p.locations.first().map(|l| l.path.as_str()).unwrap_or(""))
                .collect();
            sqlx::query(PUT_PACKAGES_SQL)
                .bind(digest)
                .bind(cache_key)
                .bind(types)
                .bind(names)
                .bind(versions)
                .bind(purls)
                .bind(paths)
                .execute(&mut *tx)
                .await?;
        }
        if inserted.is_some() && !result.secrets.is_empty() {
            let s = &result.secrets;
            sqlx::query(super::content::PUT_SECRETS_SQL)
                .bind(digest)
                .bind(cache_key)
                .bind(s.iter().map(|s| s.path.as_str()).collect::<Vec<_>>())
                .bind(s.iter().map(|s| clamp(s.line)).collect::<Vec<_>>())
                .bind(s.iter().map(|s| s.rule.as_str()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        if inserted.is_some() && !result.content_matches.is_empty() {
            let m = &result.content_matches;
            sqlx::query(super::content::PUT_CONTENT_MATCHES_SQL)
                .bind(digest)
                .bind(cache_key)
                .bind(m.iter().map(|m| m.path.as_str()).collect::<Vec<_>>())
                .bind(m.iter().map(|m| clamp(m.line)).collect::<Vec<_>>())
                .bind(m.iter().map(|m| m.rule.as_str()).collect::<Vec<_>>())
                .bind(m.iter().map(|m| m.text.as_deref()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        if inserted.is_some() && !result.retrieved.is_empty() {
            let r = &result.retrieved;
            sqlx::query(super::retrieved::PUT_RETRIEVED_SQL)
                .bind(digest)
                .bind(cache_key)
                .bind(r.iter().map(|r| r.path.as_str()).collect::<Vec<_>>())
                .bind(r.iter().map(|r| r.content.as_slice()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        let findings = result.malware.as_ref().map(|m| &m.findings);
        if let (Some(_), Some(f)) = (inserted.as_ref(), findings.filter(|f| !f.is_empty())) {
            sqlx::query(super::retrieved::PUT_MALWARE_SQL)
                .bind(digest)
                .bind(cache_key)
                .bind(f.iter().map(|f| f.path.as_str()).collect::<Vec<_>>())
                .bind(f.iter().map(|f| f.signature.as_str()).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait::async_trait]
impl LayerCache for Store {
    async fn get(
        &self,
        layer_digest: &str,
        key: &str,
    ) -> std::result::Result<Option<LayerResult>, CacheError> {
        Ok(self.layer(layer_digest, key).await?)
    }

    async fn put(
        &self,
        layer_digest: &str,
        key: &str,
        result: &LayerResult,
    ) -> std::result::Result<(), CacheError> {
        Ok(self.put_layer(layer_digest, key, result, false).await?)
    }

    async fn replace(
        &self,
        layer_digest: &str,
        key: &str,
        result: &LayerResult,
    ) -> std::result::Result<(), CacheError> {
        Ok(self.put_layer(layer_digest, key, result, true).await?)
    }

    async fn begin(
        &self,
        layer_digest: &str,
        key: &str,
        ttl: std::time::Duration,
    ) -> std::result::Result<Option<LayerClaim>, CacheError> {
        let token = format!("{}/{}", self.claim_owner, uuid::Uuid::new_v4());
        let taken: Option<bool> = sqlx::query_scalar(BEGIN_CLAIM_SQL)
            .bind(layer_digest)
            .bind(key)
            .bind(&token)
            .bind(ttl.as_secs_f64())
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from)?;
        Ok(taken.map(|_| LayerClaim { token }))
    }

    async fn renew(
        &self,
        layer_digest: &str,
        key: &str,
        claim: &LayerClaim,
        ttl: std::time::Duration,
    ) -> std::result::Result<(), CacheError> {
        sqlx::query(RENEW_CLAIM_SQL)
            .bind(layer_digest)
            .bind(key)
            .bind(&claim.token)
            .bind(ttl.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    async fn end(
        &self,
        layer_digest: &str,
        key: &str,
        claim: &LayerClaim,
    ) -> std::result::Result<(), CacheError> {
        sqlx::query(END_CLAIM_SQL)
            .bind(layer_digest)
            .bind(key)
            .bind(&claim.token)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)?;
        Ok(())
    }

    fn end_detached(&self, layer_digest: &str, key: &str, claim: LayerClaim) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, digest, key) = (self.clone(), layer_digest.to_string(), key.to_string());
        runtime.spawn(async move {
            if let Err(e) = store.end(&digest, &key, &claim).await {
                tracing::debug!(layer = %digest, error = %e, "withdrawing a dropped layer claim failed");
            }
        });
    }
}
