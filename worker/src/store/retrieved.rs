//! Retrieved files and malware findings in the store: rows per layer (written with the layer result),
//! and the contents of an image's visible retrieved files read back by (layer, key, path).

use super::{Result, Store};

pub(super) const PUT_RETRIEVED_SQL: &str = r#"
INSERT INTO fathom_layer_retrieved_files (layer_digest, cache_key, path, content)
SELECT $1, $2, t.path, t.content
FROM unnest($3::text[], $4::bytea[]) AS t(path, content)
ON CONFLICT DO NOTHING
"#;

pub(super) const PUT_MALWARE_SQL: &str = r#"
INSERT INTO fathom_layer_malware (layer_digest, cache_key, path, signature)
SELECT $1, $2, t.path, t.signature
FROM unnest($3::text[], $4::text[]) AS t(path, signature)
"#;

const GET_RETRIEVED_SQL: &str = r#"
SELECT r.path, r.content
FROM unnest($2::text[], $3::text[]) AS w(layer_digest, path)
JOIN fathom_layer_retrieved_files r
  ON r.layer_digest = w.layer_digest AND r.cache_key = $1 AND r.path = w.path
ORDER BY r.path
"#;

impl Store {
    /// The contents of retrieved files, each named by the layer holding its visible version (as the
    /// image document lists them) under the image's cache key. A file whose row is gone (its layer was
    /// forgotten) is simply absent.
    pub async fn retrieved_contents(
        &self,
        cache_key: &str,
        files: &[(&str, &str)],
    ) -> Result<Vec<(String, Vec<u8>)>> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(GET_RETRIEVED_SQL)
            .bind(cache_key)
            .bind(files.iter().map(|(l, _)| *l).collect::<Vec<_>>())
            .bind(files.iter().map(|(_, p)| *p).collect::<Vec<_>>())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows)
    }
}
