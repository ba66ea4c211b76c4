//! Loading a bundle: parse, validate everything at once, compile rules and whitelists for evaluation.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::gates::Check;
use crate::load::{read, Paths, Problems};
use crate::model::{Action, Bundle};
use crate::params::Params;

/// A bundle that passed validation, with its rules compiled (regexes included) and its digest computed.
#[derive(Debug)]
pub struct ValidatedBundle {
    pub(crate) bundle: Bundle,
    pub(crate) digest: String,
    pub(crate) policies: Vec<CompiledPolicy>,
    pub(crate) whitelists: Vec<CompiledWhitelist>,
}

#[derive(Debug)]
pub(crate) struct CompiledPolicy {
    pub id: Arc<str>,
    pub rules: Vec<CompiledRule>,
}

#[derive(Debug)]
pub(crate) struct CompiledRule {
    pub id: Option<Arc<str>>,
    pub gate: &'static str,
    pub trigger: &'static str,
    pub action: Action,
    pub check: Check,
}

#[derive(Debug)]
pub(crate) struct CompiledItem {
    /// The item's id; empty when it has none (anchore's schema makes it optional).
    pub id: Arc<str>,
    /// Lower-cased, as anchore compares it.
    pub gate: String,
    pub trigger_id: String,
    pub expires_on: Option<Timestamp>,
}

/// Per gate, trigger id (or id prefix) -> item indexes.
pub(crate) type ItemIndex = HashMap<String, HashMap<String, Vec<usize>>>;

/// A whitelist indexed for lookup: exact trigger ids hashed; `<vuln id>+*` items hashed by the vuln id
/// (anchore indexes them the same way); other wildcard items scanned.
#[derive(Debug)]
pub(crate) struct CompiledWhitelist {
    pub id: Arc<str>,
    pub name: Option<Arc<str>>,
    pub items: Vec<CompiledItem>,
    pub exact: ItemIndex,
    pub any_package: ItemIndex,
    pub wildcard: Vec<usize>,
}

impl Bundle {
    /// Parses and validates a JSON bundle.
    pub fn from_json(text: &str) -> Result<ValidatedBundle, Vec<ValidationError>> {
        let doc: Value =
            serde_json::from_str(text).map_err(|e| syntax(format!("not valid JSON: {e}")))?;
        ValidatedBundle::from_value(&doc)
    }

    /// Parses and validates a YAML bundle (the same document shape as JSON).
    pub fn from_yaml(text: &str) -> Result<ValidatedBundle, Vec<ValidationError>> {
        let doc: Value =
            serde_yaml::from_str(text).map_err(|e| syntax(format!("not valid YAML: {e}")))?;
        ValidatedBundle::from_value(&doc)
    }
}

fn syntax(message: String) -> Vec<ValidationError> {
    vec![ValidationError {
        path: "$".into(),
        message,
    }]
}

impl ValidatedBundle {
    /// Validates an already-parsed document.
    pub fn from_value(doc: &Value) -> Result<ValidatedBundle, Vec<ValidationError>> {
        let mut problems = Problems::default();
        let (mut bundle, paths) = read(doc, &mut problems);
        let reached = Reached::new(&bundle);
        check_ids(&bundle, &paths, &reached, &mut problems);
        let (policies_reached, whitelists_reached) = (
            bundle
                .policies
                .iter()
                .map(|p| reached.policies.contains(p.id.as_str()))
                .collect::<Vec<_>>(),
            bundle
                .whitelists
                .iter()
                .map(|w| reached.whitelists.contains(w.id.as_str()))
                .collect::<Vec<_>>(),
        );
        let policies = compile_policies(&mut bundle, &paths, &policies_reached, &mut problems);
        let whitelists =
            compile_whitelists(&mut bundle, &paths, &whitelists_reached, &mut problems);
        if !problems.0.is_empty() {
            return Err(problems.0);
        }
        let canonical =
            serde_json::to_vec(&bundle).map_err(|e| syntax(format!("cannot serialize: {e}")))?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&canonical)));
        Ok(ValidatedBundle {
            bundle,
            digest,
            policies,
            whitelists,
        })
    }

    /// The bundle in canonical form (anchore's field names, `policy_id` folded into `policy_ids`).
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The bundle id.
    pub fn id(&self) -> &str {
        &self.bundle.id
    }

    /// `sha256:<hex>` of the canonical bundle: equal for equal bundles however they were spelled
    /// (JSON or YAML, synonyms, key order), so callers can key cached evaluations on it.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Number of rules over all policies.
    pub fn rule_count(&self) -> usize {
        self.policies.iter().map(|p| p.rules.len()).sum()
    }
}

/// The policy and whitelist ids some mapping references. anchore builds only these (its ExecutableBundle
/// walks the mappings), so only their contents are checked: a policy no mapping reaches is stored as
/// written and never evaluated, whatever it holds.
struct Reached<'a> {
    policies: HashSet<&'a str>,
    whitelists: HashSet<&'a str>,
}

impl<'a> Reached<'a> {
    fn new(bundle: &'a Bundle) -> Reached<'a> {
        let mappings = bundle.mappings.iter();
        Reached {
            policies: mappings
                .clone()
                .flat_map(|m| m.policy_ids.iter().map(String::as_str))
                .collect(),
            whitelists: mappings
                .flat_map(|m| m.whitelist_ids.iter().map(String::as_str))
                .collect(),
        }
    }
}

/// anchore's DuplicateIdentifierFoundError: raised only for an id a mapping references (which one would be
/// meant is ambiguous). Ids of rules, whitelist items, mappings and image rules may repeat.
fn duplicates<'a>(
    ids: impl Iterator<Item = (&'a str, &'a str)>,
    reached: &HashSet<&str>,
    what: &str,
    problems: &mut Problems,
) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (id, path) in ids {
        if let Some(first) = seen.get(id) {
            if reached.contains(id) {
                problems.add(
                    format!("{path}.id"),
                    format!(
                        "duplicate {what} id `{id}` (first at {first}), referenced by a mapping"
                    ),
                );
            }
        } else {
            seen.insert(id, path);
        }
    }
}

fn check_ids(bundle: &Bundle, paths: &Paths, reached: &Reached<'_>, problems: &mut Problems) {
    let policies = bundle
        .policies
        .iter()
        .zip(&paths.policies)
        .map(|(p, at)| (p.id.as_str(), at.as_str()));
    duplicates(policies, &reached.policies, "policy", problems);
    let lists = bundle
        .whitelists
        .iter()
        .zip(&paths.whitelists)
        .map(|(w, at)| (w.id.as_str(), at.as_str()));
    duplicates(lists, &reached.whitelists, "whitelist", problems);
    // anchore's ReferencedObjectNotFoundError.
    for (i, mapping) in bundle.mappings.iter().enumerate() {
        for (id, at) in mapping.policy_ids.iter().zip(&paths.mapping_policy_ids[i]) {
            if !bundle.policies.iter().any(|p| &p.id == id) {
                problems.add(at.as_str(), format!("unknown policy id `{id}`"));
            }
        }
        for (id, at) in mapping
            .whitelist_ids
            .iter()
            .zip(&paths.mapping_whitelist_ids[i])
        {
            if !bundle.whitelists.iter().any(|w| &w.id == id) {
                problems.add(at.as_str(), format!("unknown whitelist id `{id}`"));
            }
        }
    }
}

/// anchore's VersionedEntityMixin: a reached policy or whitelist must be `1_0` (its presence is checked
/// for all of them while reading, as anchore's schema does).
fn check_version(version: Option<&str>, at: &str, what: &str, problems: &mut Problems) {
    if let Some(v) = version {
        if v != "1_0" {
            problems.add(
                format!("{at}.version"),
                format!("unsupported {what} version `{v}`; only `1_0` exists"),
            );
        }
    }
}

fn compile_policies(
    bundle: &mut Bundle,
    paths: &Paths,
    reached: &[bool],
    problems: &mut Problems,
) -> Vec<CompiledPolicy> {
    let mut out = Vec::new();
    let walk = bundle
        .policies
        .iter_mut()
        .zip(&paths.rules)
        .zip(&paths.policies);
    for (((policy, rule_paths), policy_at), reached) in walk.zip(reached) {
        let mut rules = Vec::new();
        if !reached {
            out.push(CompiledPolicy {
                id: Arc::from(policy.id.as_str()),
                rules,
            });
            continue;
        }
        check_version(policy.version.as_deref(), policy_at, "policy", problems);
        for (rule, at) in policy.rules.iter_mut().zip(rule_paths) {
            let Some(gate) = crate::catalog::gate(&rule.gate) else {
                problems.add(format!("{at}.gate"), unknown_gate(&rule.gate));
                continue;
            };
            let Some(trigger) = gate.trigger(&rule.trigger) else {
                let known: Vec<&str> = gate.triggers.iter().map(|t| t.name).collect();
                problems.add(
                    format!("{at}.trigger"),
                    format!(
                        "unknown trigger `{}` for gate `{}`; known: {}",
                        rule.trigger,
                        gate.name,
                        known.join(", ")
                    ),
                );
                continue;
            };
            rule.gate = gate.name.to_string();
            rule.trigger = trigger.name.to_string();
            let before = problems.0.len();
            let params = Params::check(trigger, &rule.params, at, problems);
            if problems.0.len() > before {
                continue;
            }
            match Check::build(gate.name, trigger.name, &params) {
                Ok(check) => rules.push(CompiledRule {
                    id: rule.id.as_deref().map(Arc::from),
                    gate: gate.name,
                    trigger: trigger.name,
                    action: rule.action,
                    check,
                }),
                Err(errors) => {
                    for e in errors {
                        let path = match e
                            .param
                            .and_then(|n| rule.params.iter().position(|p| p.name == n))
                        {
                            Some(i) => format!("{at}.params[{i}].value"),
                            None => format!("{at}.params"),
                        };
                        problems.add(path, e.message);
                    }
                }
            }
        }
        out.push(CompiledPolicy {
            id: Arc::from(policy.id.as_str()),
            rules,
        });
    }
    out
}

fn compile_whitelists(
    bundle: &mut Bundle,
    paths: &Paths,
    reached: &[bool],
    problems: &mut Problems,
) -> Vec<CompiledWhitelist> {
    let mut out = Vec::new();
    let walk = bundle
        .whitelists
        .iter_mut()
        .zip(&paths.items)
        .zip(&paths.whitelists);
    for (((list, item_paths), list_at), reached) in walk.zip(reached) {
        let mut compiled = CompiledWhitelist {
            id: Arc::from(list.id.as_str()),
            name: list.name.as_deref().map(Arc::from),
            items: Vec::new(),
            exact: HashMap::new(),
            any_package: HashMap::new(),
            wildcard: Vec::new(),
        };
        if !reached {
            out.push(compiled);
            continue;
        }
        check_version(list.version.as_deref(), list_at, "whitelist", problems);
        for (item, at) in list.items.iter_mut().zip(item_paths) {
            // anchore lower-cases the item's gate and checks it against nothing: an item for a gate no
            // rule uses simply never matches.
            item.gate = item.gate.to_ascii_lowercase();
            let gate = item.gate.clone();
            let expires_on = match &item.expires_on {
                None => None,
                Some(text) => match text.parse::<Timestamp>() {
                    Ok(t) => Some(t),
                    Err(e) => {
                        problems.add(
                            format!("{at}.expires_on"),
                            format!("`{text}` is not an RFC 3339 instant: {e}"),
                        );
                        continue;
                    }
                },
            };
            let index = compiled.items.len();
            let id = item.trigger_id.as_str();
            let (index_map, key) = match id.strip_suffix("+*") {
                Some(vuln) if !vuln.contains(['*', '+']) => (&mut compiled.any_package, vuln),
                _ if !id.contains('*') => (&mut compiled.exact, id),
                _ => {
                    compiled.wildcard.push(index);
                    compiled.items.push(CompiledItem {
                        id: Arc::from(item.id.as_deref().unwrap_or_default()),
                        gate,
                        trigger_id: item.trigger_id.clone(),
                        expires_on,
                    });
                    continue;
                }
            };
            index_map
                .entry(gate.clone())
                .or_default()
                .entry(key.to_string())
                .or_default()
                .push(index);
            compiled.items.push(CompiledItem {
                id: Arc::from(item.id.as_deref().unwrap_or_default()),
                gate,
                trigger_id: item.trigger_id.clone(),
                expires_on,
            });
        }
        out.push(compiled);
    }
    out
}

/// anchore's GateNotFoundError, or its EndOfLifedError for a gate it end-of-lifed (with the replacement).
fn unknown_gate(name: &str) -> String {
    match crate::support::end_of_life(name) {
        Some((gate, Some(instead))) => format!(
            "gate `{gate}` is end-of-life in anchore: it is not evaluated and must be replaced with `{instead}`"
        ),
        Some((gate, None)) => format!(
            "gate `{gate}` is end-of-life in anchore: it is not evaluated and must be removed (it has no replacement)"
        ),
        None => {
            let known: Vec<&str> = crate::catalog::GATES.iter().map(|g| g.name).collect();
            format!("unknown gate `{name}`; known: {}", known.join(", "))
        }
    }
}
