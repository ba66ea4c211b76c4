//! `fathom demo`'s policy-change step: the images in scope (the watched tag's current digest and the
//! workload the inventory lists) are evaluated as a core's scope loop does, their final actions stored;
//! then a GENERATED SAMPLE bundle that lets everything through is activated and the scope evaluated again, so each image whose
//! final action changes writes `dev.fathom.image.policy.changed` — which the notifications step delivers.

use anyhow::Context;
use fathom_policy::ValidatedBundle;
use fathom_worker::store::Store;

use crate::core::policy::config::PolicyEngineConfig;
use crate::core::policy::{scope, PolicyEngine};

/// The sample bundle: one rule that passes every image (anchore's `always` gate with GO), mapped to
/// everything — the demo's images are STOP or WARN under the default bundle, so their final action changes.
const STRICT_BUNDLE: &str = r#"{
  "id": "demo-allow-all", "version": "1_0", "name": "SAMPLE: let everything through (demo)",
  "policies": [{"id": "allow-all", "version": "1_0", "name": "allow all",
    "rules": [{"id": "always", "gate": "always", "trigger": "always", "action": "GO", "params": []}]}],
  "whitelists": [],
  "mappings": [{"id": "all", "name": "all", "registry": "*", "repository": "*",
    "image": {"type": "tag", "value": "*"}, "policy_ids": ["allow-all"], "whitelist_ids": []}]
}"#;

/// Runs the step on the demo's store.
pub async fn run(store: &Store) -> anyhow::Result<()> {
    let engine = PolicyEngine::new(store.clone(), PolicyEngineConfig::default())?;
    let first = scope::reevaluate(&engine)
        .await
        .context("evaluating the images in scope")?;
    let document: serde_json::Value =
        serde_json::from_str(STRICT_BUNDLE).context("the demo's sample bundle is not JSON")?;
    let bundle = ValidatedBundle::from_value(&document).map_err(|problems| {
        anyhow::anyhow!("the demo's sample bundle does not validate: {problems:?}")
    })?;
    fathom_policy::store::put(store.pool(), &bundle, true)
        .await
        .context("activating the demo's sample bundle")?;
    let changed = scope::reevaluate(&engine)
        .await
        .context("evaluating the images in scope under the sample bundle")?;
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT digest, tag, final_action FROM fathom_policy_last_actions ORDER BY digest, tag",
    )
    .fetch_all(store.pool())
    .await?;
    println!(
        "  policy change (GENERATED SAMPLE bundle {:?} activated): {first} images in scope first evaluated, \
         {changed} final actions changed",
        bundle.id()
    );
    for (digest, tag, action) in rows {
        let short = digest.get(..19).unwrap_or(&digest);
        println!("    {tag} {short}… now {action}");
    }
    Ok(())
}
