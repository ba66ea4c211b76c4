//! `fathom demo`'s gate step: each analyzed sample image is checked against the built-in default policy
//! bundle (the core's policy engine, with the sample feed's matches), then the admission webhook's core
//! answers a GENERATED SAMPLE AdmissionReview (a Deployment of two analyzed images and one fathom never
//! saw, as a dry run so nothing is queued) — the demo has no Kubernetes API server to send a real one.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use anyhow::Context;
use fathom_analyzer::source::registry::{DigestResolver, RegistryOptions};
use fathom_webhook::{Admission, Metrics, WebhookConfig};
use fathom_worker::store::{Store, SubmissionFilter};
use serde_json::json;

use crate::core::oracle::{policy_check, StoreOracle};
use crate::core::policy::config::PolicyEngineConfig;
use crate::core::policy::PolicyEngine;

/// A registry host for the demo's digest references: the images live in an OCI layout, and a digest
/// reference is answered from the store without a registry call.
const DEMO_REGISTRY: &str = "demo.fathom.local";

/// Prints each image's policy verdict and one admission decision.
pub async fn run(store: &Store, references: &[String], cache_key: &str) -> anyhow::Result<()> {
    fathom_policy::store::migrator()
        .run(store.pool())
        .await
        .context("applying the policy migrations")?;
    let engine = Arc::new(PolicyEngine::new(
        store.clone(),
        PolicyEngineConfig::default(),
    )?);
    let bundle = engine
        .bundle(None)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let entries = store
        .submissions(&SubmissionFilter {
            references: Some(references.to_vec()),
            limit: references.len() as i64,
            ..SubmissionFilter::default()
        })
        .await?;
    println!(
        "  policy (built-in default bundle {:?}, anchore's default rules):",
        bundle.id()
    );
    let mut analyzed = Vec::new();
    for entry in &entries {
        let Some(digest) = &entry.digest else {
            continue;
        };
        let checked = engine
            .check(digest, None, &bundle)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?;
        let e = &checked.evaluation;
        let mut triggers: Vec<String> = e
            .rows
            .iter()
            .filter(|r| r.whitelisted.is_none())
            .map(|r| format!("{}.{} {}", r.gate, r.trigger, r.gate_action.as_str()))
            .collect();
        triggers.sort();
        triggers.dedup();
        let name = image_name(&entry.reference);
        println!(
            "    {name:<26} {:<4} {}",
            e.final_action.as_str(),
            triggers.join(", ")
        );
        analyzed.push((name, digest.clone()));
    }

    // The webhook's core, over the same store and policy engine the core serves them with.
    let config = WebhookConfig::default();
    let settings = config.validate()?;
    let resolver = DigestResolver::new(RegistryOptions::default(), "linux/amd64".parse()?);
    let oracle = StoreOracle::new(
        store.clone(),
        resolver,
        policy_check(Some(engine)),
        cache_key.to_string(),
        3,
        Duration::from_secs(60),
    );
    let metrics = Metrics::register(&prometheus::Registry::new())?;
    let admission = Admission::new(settings, Arc::new(oracle), metrics);
    let mut containers: Vec<serde_json::Value> = analyzed
        .iter()
        .take(2)
        .map(|(name, digest)| {
            json!({"name": name, "image": format!("{DEMO_REGISTRY}/{name}@{digest}")})
        })
        .collect();
    let unknown = format!("{DEMO_REGISTRY}/never-analyzed@sha256:{}", "0".repeat(64));
    containers.push(json!({"name": "never-analyzed", "image": unknown}));
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "demo-1",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": "shop", "namespace": "demo", "operation": "CREATE",
            "userInfo": {"username": "demo"},
            "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "shop", "namespace": "demo"},
                       "spec": {"selector": {"matchLabels": {"app": "shop"}},
                                "template": {"metadata": {"labels": {"app": "shop"}},
                                             "spec": {"containers": containers}}}},
            "oldObject": null, "dryRun": true
        }
    });
    let answer = admission
        .review(
            &serde_json::to_vec(&review)?,
            Instant::now() + config.timeout,
        )
        .await;
    let r = &answer.response;
    println!("  admission (GENERATED SAMPLE AdmissionReview: a Deployment of 3 images, dry run, mode policy):");
    println!(
        "    {} — {}",
        if r.allowed { "allowed" } else { "denied" },
        r.status.message
    );
    for w in r.warnings.iter().take(3) {
        println!("    warning: {w}");
    }
    Ok(())
}

/// `oci-dir:/path:debian-python-npm-build1` → `debian-python-npm-build1`.
fn image_name(reference: &str) -> String {
    reference
        .rsplit([':', '/'])
        .next()
        .unwrap_or(reference)
        .to_string()
}
