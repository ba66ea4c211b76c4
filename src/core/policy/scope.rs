//! Policy changes of the images in scope: a watched tag's current digest (under the tag) and every image
//! the inventory says runs (under the reference it runs as). After each re-match round — the loop runs
//! every `services.policy_engine.scope_interval`, like the feed cycle's rounds — and at once after a
//! bundle is activated, each is checked against the active bundle (cached evaluations cost nothing when
//! nothing they depend on moved) and its final action compared with the last one stored; only a change
//! writes `dev.fathom.image.policy.changed`, in the transaction that stores the new action. Several
//! cores may run this: the per-image compare-and-set under an advisory lock writes each change once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fathom_notify::data::{PolicyChanged, Trigger};
use fathom_notify::diff::final_action_changed;
use fathom_notify::Event;
use fathom_policy::{Action, Evaluation};
use sqlx::PgPool;
use tokio::sync::watch;

use super::PolicyEngine;

/// (digest, reference) in scope, analyzed.
const SCOPE_SQL: &str = r#"
SELECT DISTINCT s.digest, s.reference FROM (
    SELECT digest, reference FROM fathom_catalog_watches WHERE kind = 'tag' AND digest IS NOT NULL
    UNION ALL
    SELECT digest, image FROM fathom_inventory) s
JOIN fathom_images i ON i.manifest_digest = s.digest AND i.status = 'analyzed'
ORDER BY 1, 2
"#;
const LAST_SQL: &str = "SELECT digest, tag, final_action FROM fathom_policy_last_actions";
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 0))";
const CURRENT_SQL: &str =
    "SELECT final_action FROM fathom_policy_last_actions WHERE digest = $1 AND tag = $2";
const STORE_SQL: &str = r#"
INSERT INTO fathom_policy_last_actions (digest, tag, bundle_id, bundle_digest, final_action)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (digest, tag) DO UPDATE SET bundle_id = EXCLUDED.bundle_id, bundle_digest = EXCLUDED.bundle_digest,
    final_action = EXCLUDED.final_action, changed_at = now()
"#;

/// Re-evaluates the images in scope; returns how many `policy.changed` events were written.
pub async fn reevaluate(engine: &PolicyEngine) -> anyhow::Result<u64> {
    let pool = engine.pool().clone();
    let scope: Vec<(String, String)> = sqlx::query_as(SCOPE_SQL).fetch_all(&pool).await?;
    if scope.is_empty() {
        return Ok(0);
    }
    let bundle = engine
        .bundle(None)
        .await
        .map_err(|e| anyhow::anyhow!("reading the active bundle: {}", e.message))?;
    let last: HashMap<(String, String), String> = sqlx::query_as(LAST_SQL)
        .fetch_all(&pool)
        .await?
        .into_iter()
        .map(|(d, t, a): (String, String, String)| ((d, t), a))
        .collect();
    let mut written = 0;
    for (digest, tag) in scope {
        let checked = match engine.check(&digest, Some(&tag), &bundle).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%digest, %tag, "policy scope: not evaluated: {}", e.message);
                continue;
            }
        };
        let now = checked.evaluation.final_action.as_str();
        let previous = last.get(&(digest.clone(), tag.clone())).map(String::as_str);
        if final_action_changed(previous, now) {
            written += store(&pool, &digest, &tag, &checked.evaluation).await?;
        }
    }
    Ok(written)
}

/// Stores the new final action and writes its event in one transaction, when it still differs from
/// the stored one (another core may have stored it meanwhile); 1 when written.
async fn store(pool: &PgPool, digest: &str, tag: &str, ev: &Evaluation) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query(LOCK_SQL)
        .bind(digest)
        .bind(tag)
        .execute(&mut *tx)
        .await?;
    let previous: Option<String> = sqlx::query_scalar(CURRENT_SQL)
        .bind(digest)
        .bind(tag)
        .fetch_optional(&mut *tx)
        .await?;
    let now = ev.final_action.as_str();
    if !final_action_changed(previous.as_deref(), now) {
        return Ok(0);
    }
    sqlx::query(STORE_SQL)
        .bind(digest)
        .bind(tag)
        .bind(&ev.bundle_id)
        .bind(&ev.bundle_digest)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let triggers = ev
        .rows
        .iter()
        .filter(|r| r.gate_action != Action::Go && r.whitelisted.is_none())
        .take(PolicyChanged::TRIGGERS_LISTED)
        .map(|r| Trigger {
            gate: r.gate.to_string(),
            trigger: r.trigger.to_string(),
            action: r.gate_action.as_str().to_string(),
            output: r.check_output.to_string(),
        })
        .collect();
    let event = PolicyChanged {
        digest: digest.to_string(),
        tag: tag.to_string(),
        bundle_id: ev.bundle_id.clone(),
        bundle_digest: ev.bundle_digest.clone(),
        previous,
        final_action: now.to_string(),
        triggers,
    };
    fathom_notify::write(&mut tx, &event.event()).await?;
    tx.commit().await?;
    Ok(1)
}

/// Re-evaluates the scope every `interval`, and at once after a bundle activation, until `shutdown`.
pub async fn run(
    engine: Arc<PolicyEngine>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        match reevaluate(&engine).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "policy scope: final actions changed"),
            Err(e) => tracing::warn!("policy scope: {e:#}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = engine.scope_wake.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
