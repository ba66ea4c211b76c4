//! The policy engine in the core: bundles from `fathom_policy::store`, facts from [`crate::core::facts`],
//! evaluations from `fathom_policy::evaluate`, cached by (image digest, tag, bundle digest, feed state).
//!
//! Without a stored active bundle (and without a `policy_id`) checks use the built-in default bundle, as
//! anchore always has one active.

pub mod config;
pub mod metrics;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fathom_policy::store::{self as bundles, StoredBundle};
use fathom_policy::{evaluate, Bundle, Evaluation, ValidatedBundle, DEFAULT_BUNDLE_JSON};
use fathom_worker::store::{ImageStatus, Store};
use sqlx::PgPool;

use crate::core::api::ApiError;
use crate::core::facts;
use config::PolicyEngineConfig;
use metrics::PolicyMetrics;

/// (image digest, reference, bundle digest, feed state).
type CacheKey = (String, Option<String>, String, String);

/// What a check answered and whether the cache did.
pub struct Checked {
    /// The evaluation.
    pub evaluation: Arc<Evaluation>,
    /// Served from the cache.
    pub cached: bool,
}

/// Bundles, facts and the evaluation cache.
pub struct PolicyEngine {
    store: Store,
    config: PolicyEngineConfig,
    default: Arc<ValidatedBundle>,
    /// Stored bundles compiled once per digest (regexes are compiled at validation).
    compiled: Mutex<HashMap<String, Arc<ValidatedBundle>>>,
    cache: Mutex<HashMap<CacheKey, (Instant, Arc<Evaluation>)>>,
    metrics: Option<PolicyMetrics>,
}

/// Bundles compiled and kept at once; stored bundles are few, this only bounds a pathological churn.
const COMPILED_MAX: usize = 64;

impl PolicyEngine {
    /// An engine over the results store's database.
    pub fn new(store: Store, config: PolicyEngineConfig) -> anyhow::Result<PolicyEngine> {
        let default = Bundle::from_json(DEFAULT_BUNDLE_JSON)
            .map_err(|e| anyhow::anyhow!("the built-in default bundle is invalid: {e:?}"))?;
        Ok(PolicyEngine {
            store,
            config,
            default: Arc::new(default),
            compiled: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            metrics: None,
        })
    }

    /// Registers the engine's metrics in `registry` (the API's, or the standalone engine's).
    pub fn register_metrics(&mut self, registry: &prometheus::Registry) -> prometheus::Result<()> {
        self.metrics = Some(PolicyMetrics::register(registry)?);
        Ok(())
    }

    /// The stored image's evaluation history, newest first (see `fathom_policy::history`).
    pub async fn history(
        &self,
        digest: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<fathom_policy::history::HistoryEntry>, ApiError> {
        fathom_policy::history::page(self.pool(), digest, before, limit)
            .await
            .map_err(db_error)
    }

    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// Whether `services.policy_engine.enabled` is on.
    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Stores `bundle` (and activates it when asked).
    pub async fn put(
        &self,
        bundle: &ValidatedBundle,
        activate: bool,
    ) -> Result<(StoredBundle, bool), ApiError> {
        bundles::put(self.pool(), bundle, activate)
            .await
            .map_err(db_error)
    }

    /// Every stored bundle.
    pub async fn list(&self) -> Result<Vec<StoredBundle>, ApiError> {
        bundles::list(self.pool()).await.map_err(db_error)
    }

    /// One stored bundle.
    pub async fn get(&self, id: &str) -> Result<StoredBundle, ApiError> {
        bundles::get(self.pool(), id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| ApiError::not_found(format!("no policy bundle {id:?} is stored")))
    }

    /// Makes a stored bundle the active one.
    pub async fn activate(&self, id: &str) -> Result<(), ApiError> {
        if bundles::activate(self.pool(), id).await.map_err(db_error)? {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "no policy bundle {id:?} is stored"
            )))
        }
    }

    /// Deletes a stored bundle that is not active.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        match bundles::delete(self.pool(), id).await.map_err(db_error)? {
            bundles::Deleted::Deleted => Ok(()),
            bundles::Deleted::Missing => Err(ApiError::not_found(format!(
                "no policy bundle {id:?} is stored"
            ))),
            bundles::Deleted::Active => Err(ApiError::conflict(format!(
                "{id:?} is the active bundle: activate another before deleting it"
            ))),
        }
    }

    /// The bundle a check uses: `policy_id`'s, else the active one, else the built-in default.
    pub async fn bundle(&self, policy_id: Option<&str>) -> Result<Arc<ValidatedBundle>, ApiError> {
        let stored = match policy_id {
            Some(id) => Some(self.get(id).await?),
            None => bundles::active(self.pool()).await.map_err(db_error)?,
        };
        let Some(stored) = stored else {
            return Ok(Arc::clone(&self.default));
        };
        if let Some(hit) = lock(&self.compiled).get(&stored.digest) {
            return Ok(Arc::clone(hit));
        }
        let compiled = stored.compile().map_err(|problems| {
            tracing::error!(id = %stored.id, ?problems, "a stored bundle no longer validates");
            ApiError::internal(format!(
                "the stored bundle {:?} no longer validates; upload it again",
                stored.id
            ))
        })?;
        let compiled = Arc::new(compiled);
        let mut map = lock(&self.compiled);
        if map.len() >= COMPILED_MAX {
            map.clear();
        }
        map.insert(stored.digest.clone(), Arc::clone(&compiled));
        Ok(compiled)
    }

    /// Evaluates `bundle` against the stored image `digest` as seen under `tag` (a reference it was
    /// analyzed under; default: the one it was last seen under). Counted in the metrics; a fresh
    /// evaluation is recorded in the image's history.
    pub async fn check(
        &self,
        digest: &str,
        tag: Option<&str>,
        bundle: &ValidatedBundle,
    ) -> Result<Checked, ApiError> {
        let started = Instant::now();
        let checked = self.check_uncounted(digest, tag, bundle).await?;
        if let Some(m) = &self.metrics {
            let action = checked.evaluation.final_action.as_str();
            m.evaluations.with_label_values(&[action]).inc();
            let cache = if checked.cached { "hit" } else { "miss" };
            m.duration
                .with_label_values(&[cache])
                .observe(started.elapsed().as_secs_f64());
            if checked.cached {
                m.cache_hits.inc();
            } else {
                m.cache_misses.inc();
            }
        }
        Ok(checked)
    }

    async fn check_uncounted(
        &self,
        digest: &str,
        tag: Option<&str>,
        bundle: &ValidatedBundle,
    ) -> Result<Checked, ApiError> {
        let record = self
            .store
            .image(digest)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no image {digest} is stored")))?;
        if record.status == ImageStatus::Failed {
            return Err(ApiError::conflict(format!(
                "{digest} failed to analyze: {}",
                record.error.clone().unwrap_or_default()
            )));
        }
        let reference = match tag {
            Some(tag) => {
                if !record.references.iter().any(|r| r == tag) {
                    return Err(ApiError::not_found(format!(
                        "{digest} was not analyzed under {tag}; it was under: {}",
                        record.references.join(", ")
                    )));
                }
                Some(tag.to_string())
            }
            None => record.references.first().cloned(),
        };
        let feed_state = facts::feed_state(self.pool(), digest)
            .await
            .map_err(db_error)?;
        let key: CacheKey = (
            digest.to_string(),
            reference.clone(),
            bundle.digest().to_string(),
            feed_state,
        );
        if self.config.cache {
            if let Some((at, hit)) = lock(&self.cache).get(&key) {
                if at.elapsed() < self.config.cache_ttl {
                    return Ok(Checked {
                        evaluation: Arc::clone(hit),
                        cached: true,
                    });
                }
            }
        }
        let doc = self.store.document(digest).await?.ok_or_else(|| {
            ApiError::conflict(format!("{digest} has no stored analysis document"))
        })?;
        let mut image = facts::from_document(&record, reference.as_deref(), &doc);
        drop(doc);
        facts::add_files(&self.store, bundle.bundle(), &mut image).await?;
        facts::add_vulnerabilities(self.pool(), &mut image)
            .await
            .map_err(vulns_error)?;
        let evaluation = Arc::new(evaluate(bundle, &image, jiff::Timestamp::now()));
        // The verdict stands without its history row: a failed write is logged, not answered.
        let keep = self.config.history_per_image;
        if let Err(e) = fathom_policy::history::record(
            self.pool(),
            &evaluation,
            reference.as_deref(),
            &key.3,
            keep,
        )
        .await
        {
            tracing::warn!(error = %e, digest, "recording the policy evaluation in the history failed");
        }
        if self.config.cache {
            let mut cache = lock(&self.cache);
            if cache.len() >= self.config.cache_entries {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), Arc::clone(&evaluation)));
        }
        Ok(Checked {
            evaluation,
            cached: false,
        })
    }

    /// Reads `services.policy_engine.bundle_file`, stores it and activates it (at start).
    pub async fn seed(&self, path: &str) -> anyhow::Result<StoredBundle> {
        let bundle = read_bundle_file(std::path::Path::new(path))
            .map_err(|e| anyhow::anyhow!("services.policy_engine.bundle_file: {e}"))?;
        let (stored, _) = bundles::put(self.pool(), &bundle, true)
            .await
            .map_err(|e| {
                anyhow::anyhow!("services.policy_engine.bundle_file: storing {path}: {e}")
            })?;
        Ok(stored)
    }
}

/// Reads a JSON or YAML bundle file; the error lists every problem with its JSON path.
pub fn read_bundle_file(path: &std::path::Path) -> anyhow::Result<ValidatedBundle> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse_bundle(&text).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!(
            "{} is not a valid bundle:\n{}",
            path.display(),
            lines.join("\n")
        )
    })
}

/// JSON when the text parses as JSON, else YAML (a superset that would also read most JSON, but with
/// worse messages for broken JSON).
pub fn parse_bundle(text: &str) -> Result<ValidatedBundle, Vec<fathom_policy::ValidationError>> {
    if text.trim_start().starts_with('{') {
        Bundle::from_json(text)
    } else {
        Bundle::from_yaml(text)
    }
}

/// A poisoned lock only means another request panicked mid-update of a cache: the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn db_error(e: sqlx::Error) -> ApiError {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            tracing::warn!(error = %e, "database unreachable");
            ApiError::unavailable("the database cannot be reached; retry shortly")
        }
        // The one-active index refused a second active bundle: two activations raced.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23505") => {
            ApiError::conflict("another bundle was activated concurrently; retry the request")
        }
        e => {
            tracing::error!(error = %e, "policy store error");
            ApiError::internal("internal error; the server log has the details")
        }
    }
}

fn vulns_error(e: fathom_vulns::Error) -> ApiError {
    match e {
        fathom_vulns::Error::Database(e) => db_error(e),
        e => {
            tracing::error!(error = %e, "vulnerability data error");
            ApiError::internal("internal error; the server log has the details")
        }
    }
}
