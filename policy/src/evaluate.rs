//! Evaluation: bundle + facts + clock -> decision. Pure: no IO, no clock of its own.

use std::borrow::Cow;
use std::sync::Arc;

use jiff::Timestamp;
use md5::{Digest, Md5};

use crate::facts::ImageFacts;
use crate::gates::dockerfile::Prepared;
use crate::gates::{Ctx, Fire, VulnMemo};
use crate::matching::{glob, selects};
use crate::model::{Action, ImageRule};
use crate::result::{Evaluation, PolicyDecision, Reason, Row, Status, WhitelistRef};
use crate::validated::{CompiledWhitelist, ValidatedBundle};

/// Evaluates `bundle` against one image's `facts` at instant `now`.
pub fn evaluate(bundle: &ValidatedBundle, facts: &ImageFacts, now: Timestamp) -> Evaluation {
    let info = &facts.image;
    let raw = &bundle.bundle;
    let first = |rules: &[ImageRule]| -> Option<ImageRule> {
        rules
            .iter()
            .find(|r| selects(&r.registry, &r.repository, &r.image, info))
            .cloned()
    };
    let blacklisted = first(&raw.blacklisted_images);
    let whitelisted = first(&raw.whitelisted_images);
    let mapping = raw
        .mappings
        .iter()
        .find(|m| selects(&m.registry, &m.repository, &m.image, info));

    let dockerfile = Prepared::new(&info.config);
    let vulns = VulnMemo::new(facts);
    let ctx = Ctx {
        facts,
        now,
        dockerfile: &dockerfile,
        vulns: &vulns,
    };
    // Whitelist answers per vulnerability match (see `Fire::vuln`): one mapping, so one set of whitelists.
    let matches = facts.vulnerabilities.as_ref().map_or(0, Vec::len);
    let mut suppressed_by: Vec<Option<Option<Arc<WhitelistRef>>>> = vec![None; matches];
    let repo_tag = info.repo_tag();
    let (image_id, row_tag): (Arc<str>, Arc<str>) =
        (Arc::from(info.id.as_str()), Arc::from(repo_tag.as_str()));
    let mut rows = Vec::new();
    let mut decisions = Vec::new();
    if let Some(mapping) = mapping {
        let whitelists: Vec<&CompiledWhitelist> = mapping
            .whitelist_ids
            .iter()
            .filter_map(|id| bundle.whitelists.iter().find(|w| *w.id == **id))
            .collect();
        for policy_id in &mapping.policy_ids {
            let Some(policy) = bundle.policies.iter().find(|p| *p.id == **policy_id) else {
                continue;
            };
            let mut action = Action::Go;
            for rule in &policy.rules {
                let (fires, gate_action, error) = match rule.check.evaluate(&ctx) {
                    Ok(fires) => (fires, rule.action, false),
                    Err(e) => (
                        vec![Fire::msg(format!("rule could not be evaluated: {e}"))],
                        Action::Warn,
                        true,
                    ),
                };
                // Rows go straight into the result (a large bundle has tens of thousands: no second copy).
                let start = rows.len();
                rows.extend(fires.into_iter().map(|fire| {
                    let trigger_id: Arc<str> = match &fire.instance_id {
                        Some(id) if fire.rule_scoped => {
                            Arc::from(format!("{}+{id}", rule.id.as_deref().unwrap_or("None")))
                        }
                        Some(id) => Arc::clone(id),
                        None => Arc::from(hex::encode(Md5::digest(format!(
                            "{}{}{}",
                            rule.gate, rule.trigger, fire.message
                        )))),
                    };
                    let lookup =
                        || whitelisted_by(&whitelists, rule.gate, &trigger_id, &fire.also, now);
                    let suppressed = match (error, fire.vuln) {
                        (true, _) => None,
                        (false, Some(i)) => match suppressed_by.get_mut(i) {
                            Some(Some(known)) => known.clone(),
                            Some(slot) => slot.insert(lookup()).clone(),
                            None => lookup(),
                        },
                        (false, None) => lookup(),
                    };
                    Row {
                        image_id: Arc::clone(&image_id),
                        repo_tag: Arc::clone(&row_tag),
                        trigger_id,
                        gate: Cow::Borrowed(rule.gate),
                        trigger: Cow::Borrowed(rule.trigger),
                        check_output: fire.message,
                        gate_action,
                        whitelisted: suppressed,
                        policy_id: Arc::clone(&policy.id),
                        rule_id: rule.id.clone(),
                        error,
                        unevaluable_action: error.then_some(rule.action),
                    }
                }));
                let rule_rows = &mut rows[start..];
                // Facts arrive in whatever order the store returned them; sort so results are reproducible.
                rule_rows.sort_by(|a, b| {
                    (&a.trigger_id, &a.check_output).cmp(&(&b.trigger_id, &b.check_output))
                });
                for row in rule_rows.iter() {
                    if row.whitelisted.is_none() {
                        action = action.min(row.gate_action);
                    }
                }
            }
            decisions.push(PolicyDecision {
                policy_id: policy.id.to_string(),
                action,
            });
        }
    }
    // anchore's BundleDecision: no policy decision at all (no mapping) is its FallThruPolicyDecision, GO.
    let policy_action = decisions
        .iter()
        .map(|d| d.action)
        .min()
        .unwrap_or(Action::Go);
    let (final_action, final_action_reason) = if blacklisted.is_some() {
        (Action::Stop, Reason::Blacklisted)
    } else if whitelisted.is_some() {
        (Action::Go, Reason::Whitelisted)
    } else if mapping.is_none() {
        (Action::Go, Reason::NoMatchingMapping)
    } else {
        (policy_action, Reason::PolicyEvaluation)
    };
    Evaluation {
        status: if final_action == Action::Stop {
            Status::Fail
        } else {
            Status::Pass
        },
        final_action,
        final_action_reason,
        bundle_id: raw.id.clone(),
        bundle_digest: bundle.digest.clone(),
        image_digest: info.digest.clone(),
        image_id: info.id.clone(),
        repo_tag,
        evaluated_at: now,
        matched_mapping_rule: mapping.cloned(),
        matched_whitelisted_images_rule: whitelisted,
        matched_blacklisted_images_rule: blacklisted,
        policy_decisions: decisions,
        rows,
    }
}

/// The first unexpired item, in mapping order of whitelists and item order within each, that matches the
/// gate and the trigger id (or one of its aliases). anchore: an item expires at `expires_on` itself.
fn whitelisted_by(
    whitelists: &[&CompiledWhitelist],
    gate: &'static str,
    trigger_id: &str,
    also: &[String],
    now: Timestamp,
) -> Option<Arc<WhitelistRef>> {
    let ids = std::iter::once(trigger_id).chain(also.iter().map(String::as_str));
    let ids: Vec<&str> = ids.collect();
    for list in whitelists {
        let live = |i: &usize| list.items[*i].expires_on.is_none_or(|at| now < at);
        let exact = list.exact.get(gate);
        let any_package = list.any_package.get(gate);
        let exact = ids
            .iter()
            .flat_map(|id| {
                let by_prefix = id
                    .split_once('+')
                    .and_then(|(vuln, _)| any_package?.get(vuln));
                exact.and_then(|m| m.get(*id)).into_iter().chain(by_prefix)
            })
            .flatten()
            .copied()
            .filter(live)
            .min();
        let wild = list.wildcard.iter().copied().filter(live).find(|i| {
            list.items[*i].gate == gate && ids.iter().any(|id| glob(&list.items[*i].trigger_id, id))
        });
        let hit = match (exact, wild) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(i) = hit {
            return Some(Arc::new(WhitelistRef {
                whitelist_id: Arc::clone(&list.id),
                whitelist_name: list.name.clone(),
                matched_rule_id: list.items[i].id.clone(),
            }));
        }
    }
    None
}
