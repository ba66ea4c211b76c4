//! The content pass in the store: secret and content search rows per layer, and an image's file inventory
//! merged from its stored layer results (each layer is stored once, however many images share it).

use serde::Serialize;

use super::{decompress, Result, Store};

/// Every layer result of an image (`$1`: its layers, `$2`: its catalogers key).
const IMAGE_LAYERS_SQL: &str =
    "SELECT digest, result FROM fathom_layers WHERE digest = ANY($1) AND cache_key = $2";
use fathom_analyzer::layer::FileEntry;
use fathom_analyzer::layer::LayerResult;
use fathom_analyzer::merge::content::{inventory, FilteredInventory};
use fathom_analyzer::merge::ImageFile;

pub(super) const PUT_SECRETS_SQL: &str = r#"
INSERT INTO fathom_layer_secrets (layer_digest, cache_key, path, line, rule)
SELECT $1, $2, t.path, t.line, t.rule
FROM unnest($3::text[], $4::bigint[], $5::text[]) AS t(path, line, rule)
"#;

pub(super) const PUT_CONTENT_MATCHES_SQL: &str = r#"
INSERT INTO fathom_layer_content_matches (layer_digest, cache_key, path, line, rule, match_text)
SELECT $1, $2, t.path, t.line, t.rule, t.match_text
FROM unnest($3::text[], $4::bigint[], $5::text[], $6::text[]) AS t(path, line, rule, match_text)
"#;

/// Which files of an image to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileQuery {
    /// Only paths starting with this (`/usr/bin/`).
    pub path_prefix: Option<String>,
    /// Only setuid regular files.
    pub suid: bool,
    /// Only setgid regular files.
    pub sgid: bool,
    /// Only paths after this one (the previous page's last path).
    pub after: Option<String>,
    /// Page size.
    pub limit: usize,
}

/// A page of an image's file inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilePage {
    /// Files in path order.
    pub files: Vec<ImageFile>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// True when a layer had more entries than were recorded.
    pub truncated: bool,
}

impl FileQuery {
    fn keeps(&self, f: &ImageFile) -> bool {
        let e = &f.entry;
        self.path_prefix
            .as_deref()
            .is_none_or(|p| e.path.starts_with(p))
            && self.after.as_deref().is_none_or(|a| e.path.as_str() > a)
            && (!self.suid || e.setuid())
            && (!self.sgid || e.setgid())
    }
}

/// Applies the query to a merged inventory (sorted by path).
pub fn page(all: Vec<ImageFile>, query: &FileQuery, truncated: bool) -> FilePage {
    let limit = query.limit.max(1);
    let mut files: Vec<ImageFile> = all
        .into_iter()
        .filter(|f| query.keeps(f))
        .take(limit + 1)
        .collect();
    let next = if files.len() > limit {
        files.truncate(limit);
        files.last().map(|f| f.entry.path.clone())
    } else {
        None
    };
    FilePage {
        files,
        next,
        truncated,
    }
}

impl Store {
    /// The stored results of `layers` under `cache_key`, in order; `None` when any is missing (the image
    /// was analyzed under another key, or a layer row was pruned).
    pub async fn layer_results(
        &self,
        layers: &[String],
        cache_key: &str,
    ) -> Result<Option<Vec<LayerResult>>> {
        let mut out = Vec::with_capacity(layers.len());
        for digest in layers {
            match self.layer(digest, cache_key).await? {
                Some(r) => out.push(r),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }

    /// A page of the file inventory of an analyzed image, merged from its layers; `None` when the image
    /// or one of its layer results is not stored.
    pub async fn image_files(
        &self,
        manifest_digest: &str,
        query: &FileQuery,
    ) -> Result<Option<FilePage>> {
        let Some(image) = self.image(manifest_digest).await? else {
            return Ok(None);
        };
        let Some(results) = self.layer_results(&image.layers, &image.cache_key).await? else {
            return Ok(None);
        };
        let query = query.clone();
        let merged = tokio::task::spawn_blocking(move || {
            let refs: Vec<&LayerResult> = results.iter().collect();
            let truncated = results.iter().any(|r| r.files_truncated);
            page(inventory(&refs), &query, truncated)
        })
        .await
        .map_err(|e| super::StoreError::Document {
            what: format!("image {manifest_digest} files"),
            message: format!("merge task: {e}"),
        })?;
        Ok(Some(merged))
    }

    /// The visible files of an analyzed image that `keep` accepts (a policy rule's setuid files or
    /// named paths), merged one stored layer at a time so memory holds one layer result plus the kept
    /// files; with whether any layer's entry list was truncated. `None` when the image or one of its
    /// layer results is not stored.
    pub async fn image_files_where(
        &self,
        manifest_digest: &str,
        keep: impl Fn(&FileEntry) -> bool,
    ) -> Result<Option<(Vec<ImageFile>, bool)>> {
        let Some(image) = self.image(manifest_digest).await? else {
            return Ok(None);
        };
        // One round trip for every layer, decoded off the async threads, the layers side by side: a
        // check's file facts cost one query and the slowest layer's decoding, and never stall the
        // server's other requests.
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(IMAGE_LAYERS_SQL)
            .bind(&image.layers)
            .bind(&image.cache_key)
            .fetch_all(&self.pool)
            .await?;
        let layers = image.layers.clone();
        let decoded = tokio::task::spawn_blocking(move || {
            use rayon::prelude::*;
            layers
                .par_iter()
                .map(|d| {
                    rows.iter()
                        .find(|(digest, _)| digest == d)
                        .map(|(_, b)| decompress::<LayerResult>(&format!("layer {d}"), b))
                        .transpose()
                })
                .collect::<Result<Vec<Option<LayerResult>>>>()
        })
        .await
        .map_err(|e| super::StoreError::Document {
            what: format!("image {manifest_digest} layers"),
            message: format!("decoding task: {e}"),
        })??;
        let mut merged = FilteredInventory::new(keep);
        for (index, result) in decoded.iter().enumerate() {
            let Some(result) = result else {
                return Ok(None);
            };
            merged.apply(index, result);
        }
        let truncated = merged.truncated();
        Ok(Some((merged.finish(), truncated)))
    }
}
