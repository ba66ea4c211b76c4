//! The policy engine in the core: bundles from `fathom_policy::store`, facts from [`crate::core::facts`],
//! evaluations from `fathom_policy::evaluate`, cached by (image digest, tag, bundle digest, feed state).
//!
//! Without a stored active bundle (and without a `policy_id`) checks use the built-in default bundle, as
//! anchore always has one active.

mod bodies;
pub mod config;
mod errors;
pub mod fresh;
#[cfg(test)]
mod fresh_tests;
pub mod in_use;
pub mod metrics;
mod parse;
pub mod scope;

pub use parse::{parse_bundle, read_bundle_file};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fathom_policy::store::{self as bundles, StoredBundle};
use fathom_policy::{evaluate, Bundle, Evaluation, ImageRef, ValidatedBundle, DEFAULT_BUNDLE_JSON};
use fathom_worker::store::{ImageStatus, Store};
use sqlx::PgPool;

use crate::core::api::ApiError;
use crate::core::facts;
use config::PolicyEngineConfig;
use errors::{db_error, vulns_error};
use fresh::{FreshMap, Freshness};
use metrics::PolicyMetrics;

/// (image digest, reference, bundle digest, feed state).
type CacheKey = (String, Option<String>, String, String);
/// (image digest, tag asked for, bundle digest): what a check asks, answered without a round trip while
/// its [`fresh::Token`] stands.
type FreshKey = (String, Option<String>, String);

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
    /// Changes seen through LISTEN/NOTIFY; with them, the two maps below answer without a round trip.
    fresh: Freshness,
    /// Evaluations by what a check asks.
    fresh_checks: FreshMap<FreshKey, Arc<Evaluation>>,
    /// Bundles by `policy_id` (`None`: the active one).
    fresh_bundles: FreshMap<Option<String>, Arc<ValidatedBundle>>,
    /// JSON of cached evaluations, written once.
    bodies: bodies::Bodies,
    metrics: Option<PolicyMetrics>,
    /// Bundles the admission webhook names: not deletable.
    in_use: in_use::InUse,
    /// Wakes the scope re-evaluation ([`scope::run`]) after a bundle activation.
    scope_wake: tokio::sync::Notify,
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
            fresh_checks: FreshMap::new(config.cache_ttl, config.cache_entries),
            fresh_bundles: FreshMap::new(Duration::MAX, COMPILED_MAX),
            config,
            default: Arc::new(default),
            compiled: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            fresh: Freshness::off(),
            bodies: bodies::Bodies::default(),
            metrics: None,
            in_use: in_use::InUse::default(),
            scope_wake: tokio::sync::Notify::new(),
        })
    }

    /// Trusts `fresh` for cache hits: a hit then costs no round trip (see [`fresh`]). Without it (the
    /// default) every check reads the bundle digest and the feed state first.
    pub fn set_freshness(&mut self, fresh: Freshness) {
        self.fresh = fresh;
    }

    /// The evaluation as JSON: written once per cached evaluation, then served as is.
    pub fn json(&self, checked: &Checked) -> Result<axum::body::Bytes, ApiError> {
        self.bodies
            .json(&checked.evaluation, self.config.cache)
            .map_err(|e| {
                tracing::error!(error = %e, "writing an evaluation as JSON");
                ApiError::internal("internal error; the server log has the details")
            })
    }

    /// The changes the engine's caches follow (shared with the webhook's verdict cache).
    pub fn freshness(&self) -> &Freshness {
        &self.fresh
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
        let stored = bundles::put(self.pool(), bundle, activate).await;
        self.fresh.changed_here();
        if activate {
            self.scope_wake.notify_one();
        }
        stored.map_err(db_error)
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
        let activated = bundles::activate(self.pool(), id).await;
        self.fresh.changed_here();
        self.scope_wake.notify_one();
        if activated.map_err(db_error)? {
            Ok(())
        } else {
            Err(ApiError::not_found(format!(
                "no policy bundle {id:?} is stored"
            )))
        }
    }

    /// Protects the bundles `hook` names from deletion (the standalone policy engine, which shares the
    /// configuration but not the webhook).
    pub fn protect_webhook_bundles(&mut self, hook: &fathom_webhook::WebhookConfig) {
        self.in_use = in_use::InUse::of(hook);
    }

    /// Checks that every bundle `hook` names is stored (a missing one is an error naming it and its
    /// key: the core does not start) and protects them from deletion.
    pub async fn require_webhook_bundles(
        &mut self,
        hook: &fathom_webhook::WebhookConfig,
    ) -> anyhow::Result<()> {
        let named = in_use::InUse::of(hook);
        if self.config.enabled {
            for (id, key) in named.iter() {
                let stored = bundles::get(self.pool(), id)
                    .await
                    .map_err(|e| anyhow::anyhow!("{key}: looking up policy bundle {id:?}: {e}"))?;
                if stored.is_none() {
                    let ids: Vec<String> = self
                        .list()
                        .await
                        .map_or_else(|_| Vec::new(), |l| l.into_iter().map(|b| b.id).collect());
                    anyhow::bail!(
                        "{key}: no policy bundle {id:?} is stored (stored: {}); upload it \
                         (POST /v1/policies, or services.policy_engine.bundle_file) or fix the name",
                        if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
                    );
                }
            }
        }
        self.in_use = named;
        Ok(())
    }

    /// Deletes a stored bundle that is not active and that the admission webhook does not name.
    pub async fn delete(&self, id: &str) -> Result<(), ApiError> {
        if let Some(key) = self.in_use.key_of(id) {
            return Err(ApiError::conflict(format!(
                "{id:?} is the admission webhook's bundle ({key}): change that key and restart \
                 before deleting it"
            )));
        }
        let deleted = bundles::delete(self.pool(), id).await;
        self.fresh.changed_here();
        match deleted.map_err(db_error)? {
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
        let key = policy_id.map(str::to_owned);
        let token = self.fresh.token(None);
        if let Some(hit) = token.and_then(|t| self.fresh_bundles.get(t, &key)) {
            return Ok(hit);
        }
        let bundle = self.bundle_read(policy_id).await?;
        if let Some(token) = token {
            self.fresh_bundles
                .insert(token, key, Instant::now(), Arc::clone(&bundle));
        }
        Ok(bundle)
    }

    async fn bundle_read(&self, policy_id: Option<&str>) -> Result<Arc<ValidatedBundle>, ApiError> {
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

    /// Evaluates `bundle` against the stored image `digest` under `reference`: any reference naming
    /// it (`repo`, `repo:tag`, `repo@digest`, `repo:tag@digest`), analyzed under it or not, so mappings
    /// and image rules select by the reference being admitted or asked about, never by another that
    /// shares the digest. Default: the reference the image was last seen under. Counted in the
    /// metrics; a fresh evaluation is recorded in the image's history.
    pub async fn check(
        &self,
        digest: &str,
        reference: Option<&str>,
        bundle: &ValidatedBundle,
    ) -> Result<Checked, ApiError> {
        let started = Instant::now();
        // One canonical spelling: `nginx:1` and `docker.io/library/nginx:1` are one cache entry.
        let canonical = reference
            .map(|r| {
                ImageRef::parse(r.trim())
                    .map(|p| p.to_string())
                    .map_err(|e| ApiError::invalid(format!("{r:?} is not an image reference: {e}")))
            })
            .transpose()?;
        let checked = self
            .check_uncounted(digest, canonical.as_deref(), bundle)
            .await?;
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
        // Read before anything else: a change committed from here on moves it (see `fresh`).
        let token = self
            .config
            .cache
            .then(|| self.fresh.token(Some(digest)))
            .flatten();
        let fresh_key: FreshKey = (
            digest.to_string(),
            tag.map(str::to_owned),
            bundle.digest().to_string(),
        );
        if let Some(token) = token {
            if let Some(hit) = self.fresh_checks.get(token, &fresh_key) {
                return Ok(Checked {
                    evaluation: hit,
                    cached: true,
                });
            }
        }
        let checked = self.check_read(digest, tag, bundle).await?;
        if let (Some(token), Some(at)) = (token, checked.1) {
            let evaluation = Arc::clone(&checked.0.evaluation);
            self.fresh_checks.insert(token, fresh_key, at, evaluation);
        }
        Ok(checked.0)
    }

    /// A check through the database: the image record and the feed state read, then the evaluation
    /// cache or a fresh evaluation. Also returns when the evaluation was made (`None`: not cached).
    async fn check_read(
        &self,
        digest: &str,
        tag: Option<&str>,
        bundle: &ValidatedBundle,
    ) -> Result<(Checked, Option<Instant>), ApiError> {
        // The record and the image's vulnerability state are independent reads: both at once.
        let (record, state) = tokio::join!(
            self.store.image(digest),
            facts::check_state(self.pool(), digest)
        );
        let record =
            record?.ok_or_else(|| ApiError::not_found(format!("no image {digest} is stored")))?;
        if record.status == ImageStatus::Failed {
            return Err(ApiError::conflict(format!(
                "{digest} failed to analyze: {}",
                record.error.clone().unwrap_or_default()
            )));
        }
        let reference = match tag {
            Some(tag) => Some(tag.to_string()),
            None => record.references.first().cloned(),
        };
        let parsed = reference.as_deref().and_then(|r| ImageRef::parse(r).ok());
        if let Some(named) = parsed.as_ref().and_then(|p| p.digest.as_deref()) {
            // A reference pinned to another image is a question about that image, not this one (the
            // index a platform manifest was picked from names it too).
            if named != digest && record.index_digest.as_deref() != Some(named) {
                return Err(ApiError::invalid(format!(
                    "the reference {} names {named}, not {digest}",
                    reference.as_deref().unwrap_or_default()
                )));
            }
        }
        // Data before verdicts: an image analyzed since the last match round is matched now.
        let state = facts::match_on_demand(self.pool(), digest, state.map_err(db_error)?)
            .await
            .map_err(db_error)?;
        let feed_state = state.feed_state;
        let key: CacheKey = (
            digest.to_string(),
            reference.clone(),
            bundle.digest().to_string(),
            feed_state,
        );
        if self.config.cache {
            if let Some((at, hit)) = lock(&self.cache).get(&key) {
                if at.elapsed() < self.config.cache_ttl {
                    let checked = Checked {
                        evaluation: Arc::clone(hit),
                        cached: true,
                    };
                    return Ok((checked, Some(*at)));
                }
            }
        }
        let doc = self.store.document(digest).await?.ok_or_else(|| {
            ApiError::conflict(format!("{digest} has no stored analysis document"))
        })?;
        let mut image = facts::from_document(&record, parsed.as_ref(), &doc);
        facts::add_retrieved(&self.store, bundle.bundle(), &doc, &mut image).await?;
        drop(doc);
        facts::add_files(&self.store, bundle.bundle(), &mut image).await?;
        facts::add_vulnerabilities(self.pool(), &mut image, state.indexed)
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
        let now = Instant::now();
        if self.config.cache {
            let mut cache = lock(&self.cache);
            if cache.len() >= self.config.cache_entries {
                cache.clear();
            }
            cache.insert(key, (now, Arc::clone(&evaluation)));
        }
        let checked = Checked {
            evaluation,
            cached: false,
        };
        Ok((checked, self.config.cache.then_some(now)))
    }

    /// Reads `services.policy_engine.bundle_file`, stores it and activates it (at start).
    pub async fn seed(&self, path: &str) -> anyhow::Result<StoredBundle> {
        let bundle = read_bundle_file(std::path::Path::new(path))
            .map_err(|e| anyhow::anyhow!("services.policy_engine.bundle_file: {e}"))?;
        let stored = bundles::put(self.pool(), &bundle, true).await;
        self.fresh.changed_here();
        let (stored, _) = stored.map_err(|e| {
            anyhow::anyhow!("services.policy_engine.bundle_file: storing {path}: {e}")
        })?;
        Ok(stored)
    }
}

/// Makes `engine`'s cache hits cost no round trip by listening for changes (see [`fresh`]), unless its
/// cache is off, it is disabled, or Postgres sits behind PgBouncer in transaction mode
/// (`database.poll_only`: no LISTEN there).
pub fn listen(
    engine: &mut PolicyEngine,
    config: &crate::config::FathomConfig,
    database_url: &str,
) -> anyhow::Result<()> {
    if engine.config.enabled && engine.config.cache && !config.database.poll_only {
        engine.set_freshness(Freshness::listen(database_url)?);
    }
    Ok(())
}

/// A poisoned lock only means another request panicked mid-update of a cache: the map is still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
