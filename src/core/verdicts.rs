//! The webhook's verdict cache: a policy verdict reused while nothing it depends on changed, known from
//! the policy engine's [`Freshness`] (no round trip) or, while its listener is down, checked by one small
//! query per admission instead of the policy engine's bundle, image and feed reads.
//!
//! The key is what the policy engine's own evaluation cache is keyed on, (image digest, reference,
//! bundle digest, feed state), plus the bundle asked for; the bundle digest and feed state come from one
//! round trip ([`STAMP_SQL`]). A hit skips reading and decoding the bundle document and the image
//! record, and converting the evaluation. Entries live `services.policy_engine.cache_ttl`, like the
//! engine's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fathom_webhook::{ImageId, OracleError, Verdict};
use sqlx::PgPool;

use crate::core::facts::FEED_STATE_SQL;
use crate::core::policy::config::PolicyEngineConfig;
use crate::core::policy::fresh::{FreshMap, Freshness, Token};

/// The digest of the bundle a check would use (`$2`: asked for by id; NULL: the active one; a NULL
/// result: none stored, the built-in default) and the image's feed state (`$1`), in one round trip.
const STAMP_SQL: &str = "SELECT (SELECT digest FROM fathom_policy_bundles \
     WHERE CASE WHEN $2::text IS NULL THEN active ELSE id = $2 END), ";

/// (digest, reference, bundle asked for, bundle digest, feed state).
type Key = (String, String, Option<String>, Option<String>, String);
/// (digest, reference, bundle asked for): the admission's question, while its token stands.
type FreshKey = (String, String, Option<String>);

/// Where to store a verdict evaluated after a [`Lookup::Miss`].
pub struct Pending {
    key: Key,
    fresh: Option<(Token, FreshKey)>,
}

/// Verdicts by everything they depend on.
pub struct VerdictCache {
    pool: PgPool,
    ttl: Duration,
    max_entries: usize,
    sql: String,
    entries: Mutex<HashMap<Key, (Instant, Verdict)>>,
    fresh: Freshness,
    fresh_entries: FreshMap<FreshKey, Verdict>,
}

/// Where a lookup stands: a hit, or the key to store the fresh verdict under.
pub enum Lookup {
    /// Cached and current.
    Hit(Verdict),
    /// Evaluate, then [`VerdictCache::insert`] under this key.
    Miss(Box<Pending>),
}

impl VerdictCache {
    /// A cache on `pool` with `services.policy_engine`'s rules, trusting `fresh` for hits without a
    /// round trip; `None` when its cache is off.
    pub fn new(pool: PgPool, config: &PolicyEngineConfig, fresh: Freshness) -> Option<Self> {
        config.cache.then(|| VerdictCache {
            pool,
            ttl: config.cache_ttl,
            max_entries: config.cache_entries.max(1),
            sql: format!("{STAMP_SQL}({})", FEED_STATE_SQL.trim()),
            entries: Mutex::new(HashMap::new()),
            fresh,
            fresh_entries: FreshMap::new(config.cache_ttl, config.cache_entries),
        })
    }

    /// The cached verdict for `image` under `bundle`, if nothing it depends on changed.
    pub async fn lookup(
        &self,
        image: &ImageId,
        bundle: Option<&str>,
    ) -> Result<Lookup, OracleError> {
        // Read before the round trip: a change committed from here on moves it.
        let token = self.fresh.token(Some(&image.digest));
        let fresh_key = (
            image.digest.clone(),
            image.reference.clone(),
            bundle.map(str::to_owned),
        );
        if let Some(verdict) = token.and_then(|t| self.fresh_entries.get(t, &fresh_key)) {
            return Ok(Lookup::Hit(verdict));
        }
        let (bundle_digest, feed_state): (Option<String>, String) = sqlx::query_as(&self.sql)
            .bind(&image.digest)
            .bind(bundle)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| OracleError::Unavailable(format!("reading the policy state: {e}")))?;
        let key = (
            image.digest.clone(),
            image.reference.clone(),
            bundle.map(str::to_owned),
            bundle_digest,
            feed_state,
        );
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match entries.get(&key) {
            Some((at, verdict)) if at.elapsed() < self.ttl => {
                if let Some(token) = token {
                    self.fresh_entries
                        .insert(token, fresh_key, *at, verdict.clone());
                }
                Lookup::Hit(verdict.clone())
            }
            _ => Lookup::Miss(Box::new(Pending {
                key,
                fresh: token.map(|t| (t, fresh_key)),
            })),
        })
    }

    /// Stores the verdict evaluated after a [`Lookup::Miss`].
    pub fn insert(&self, pending: Pending, verdict: Verdict) {
        let now = Instant::now();
        if let Some((token, fresh_key)) = pending.fresh {
            self.fresh_entries
                .insert(token, fresh_key, now, verdict.clone());
        }
        let key = pending.key;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_entries {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (now, verdict));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_policy::{Bundle, DEFAULT_BUNDLE_JSON};
    use fathom_testkit::pg::TestDb;
    use fathom_webhook::Outcome;

    fn verdict(bundle: &str) -> Verdict {
        Verdict {
            outcome: Outcome::Go,
            bundle: bundle.into(),
            unmapped: false,
            findings: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_verdict_is_reused_until_the_bundle_it_was_evaluated_under_changes() {
        let db = TestDb::create(&[
            &fathom_worker::store::migrator(),
            &fathom_vulns::migrator(),
            &fathom_policy::store::migrator(),
        ])
        .await
        .unwrap();
        let pool = PgPool::connect(db.url()).await.unwrap();
        let cache = VerdictCache::new(
            pool.clone(),
            &PolicyEngineConfig::default(),
            Freshness::off(),
        )
        .unwrap();
        let image = ImageId {
            reference: "r.test/app:1".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
        };
        let miss = |l: Lookup| match l {
            Lookup::Miss(key) => *key,
            Lookup::Hit(v) => panic!("unexpected hit: {v:?}"),
        };
        let key = miss(cache.lookup(&image, None).await.unwrap());
        cache.insert(key, verdict("default"));
        match cache.lookup(&image, None).await.unwrap() {
            Lookup::Hit(v) => assert_eq!(v, verdict("default")),
            Lookup::Miss(_) => panic!("the stored verdict is current"),
        }
        // Another reference of the same digest, or a bundle asked for by name: not that verdict.
        let other = ImageId {
            reference: "r.test/app:2".into(),
            ..image.clone()
        };
        miss(cache.lookup(&other, None).await.unwrap());
        miss(cache.lookup(&image, Some("strict")).await.unwrap());
        // A bundle activated: the active bundle's digest is part of the key, so it is evaluated anew.
        let bundle = Bundle::from_json(DEFAULT_BUNDLE_JSON).unwrap();
        fathom_policy::store::put(&pool, &bundle, true)
            .await
            .unwrap();
        miss(cache.lookup(&image, None).await.unwrap());

        // The image analyzed (again), or seen under another reference: its facts may differ, so the
        // verdict is evaluated anew even before the next re-match indexes the image.
        let key = miss(cache.lookup(&image, None).await.unwrap());
        cache.insert(key, verdict("default"));
        assert!(matches!(
            cache.lookup(&image, None).await.unwrap(),
            Lookup::Hit(_)
        ));
        sqlx::query(
            "INSERT INTO fathom_images (manifest_digest, config_digest, platform, layers, status, analyzer_version, cache_key)
             VALUES ($1, 'sha256:c', 'linux/amd64', ARRAY['sha256:l1'], 'analyzed', 'test', 'k')",
        )
        .bind(&image.digest)
        .execute(&pool)
        .await
        .unwrap();
        let key = miss(cache.lookup(&image, None).await.unwrap());
        cache.insert(key, verdict("default"));
        assert!(matches!(
            cache.lookup(&image, None).await.unwrap(),
            Lookup::Hit(_)
        ));
        sqlx::query("INSERT INTO fathom_image_references (reference, manifest_digest) VALUES ('r.test/app:2', $1)")
            .bind(&image.digest)
            .execute(&pool)
            .await
            .unwrap();
        miss(cache.lookup(&image, None).await.unwrap());
    }

    #[tokio::test]
    async fn off_when_the_policy_engines_cache_is() {
        let config = PolicyEngineConfig {
            cache: false,
            ..PolicyEngineConfig::default()
        };
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap();
        assert!(VerdictCache::new(pool, &config, Freshness::off()).is_none());
    }
}
