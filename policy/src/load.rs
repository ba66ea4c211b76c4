//! Reads a bundle document into the canonical model, collecting every structural problem with its path.

use serde_json::{Map, Value};

use crate::error::ValidationError;
use crate::model::{
    Action, Bundle, ImageRule, ImageSelector, Mapping, Param, Policy, Rule, Whitelist,
    WhitelistItem,
};

/// Collects problems while walking the document.
#[derive(Default)]
pub(crate) struct Problems(pub Vec<ValidationError>);

impl Problems {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ValidationError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn object<'a>(&mut self, value: &'a Value, path: &str) -> Option<&'a Map<String, Value>> {
        let object = value.as_object();
        if object.is_none() {
            self.add(path, format!("expected an object, found {}", kind(value)));
        }
        object
    }

    fn string(
        &mut self,
        map: &Map<String, Value>,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<String> {
        match map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.add(path, format!("missing required field `{key}`"));
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.add(
                    format!("{path}.{key}"),
                    format!("expected a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list under `key` or one of its synonyms; two spellings at once is a problem.
    fn list<'a>(
        &mut self,
        map: &'a Map<String, Value>,
        keys: &[&str],
        path: &str,
    ) -> Vec<(String, &'a Value)> {
        let present: Vec<&str> = keys
            .iter()
            .copied()
            .filter(|k| map.contains_key(*k))
            .collect();
        if present.len() > 1 {
            self.add(
                path,
                format!("both `{}` and `{}` given; use one", present[0], present[1]),
            );
        }
        let Some(key) = present.first() else {
            return Vec::new();
        };
        let here = format!("{path}.{key}");
        match &map[*key] {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("{here}[{i}]"), v))
                .collect(),
            Value::Null => Vec::new(),
            other => {
                self.add(here, format!("expected a list, found {}", kind(other)));
                Vec::new()
            }
        }
    }

    fn strings(
        &mut self,
        map: &Map<String, Value>,
        keys: &[&str],
        path: &str,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (here, value) in self.list(map, keys, path) {
            match value {
                Value::String(s) => out.push((here, s.clone())),
                other => self.add(here, format!("expected a string, found {}", kind(other))),
            }
        }
        out
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Where each list element of the bundle came from, for later checks that need paths.
#[derive(Default)]
pub(crate) struct Paths {
    pub policies: Vec<String>,
    pub rules: Vec<Vec<String>>,
    pub whitelists: Vec<String>,
    pub items: Vec<Vec<String>>,
    pub mappings: Vec<String>,
    /// Per mapping: path of each policy id and whitelist id.
    pub mapping_policy_ids: Vec<Vec<String>>,
    pub mapping_whitelist_ids: Vec<Vec<String>>,
    pub whitelisted_images: Vec<String>,
    pub blacklisted_images: Vec<String>,
}

/// Walks the document; returns the bundle as far as it could be read and where its parts were.
pub(crate) fn read(doc: &Value, problems: &mut Problems) -> (Bundle, Paths) {
    let mut paths = Paths::default();
    let empty = Map::new();
    let root = problems.object(doc, "$").unwrap_or(&empty);
    let id = problems.string(root, "id", "$", true).unwrap_or_default();
    let version = problems
        .string(root, "version", "$", true)
        .unwrap_or_default();
    if !version.is_empty() && version != "1_0" {
        problems.add(
            "$.version",
            format!("unsupported bundle version `{version}`; only `1_0` exists"),
        );
    }
    // anchore's PolicyBundle schema requires both lists (empty is fine): a lone policy document has
    // neither, and anchore refuses it rather than read it as a bundle of nothing.
    for key in ["policies", "mappings"] {
        if doc.is_object() && root.get(key).is_none_or(Value::is_null) {
            problems.add("$", format!("missing required field `{key}`"));
        }
    }
    let mut bundle = Bundle {
        id,
        version,
        name: problems.string(root, "name", "$", false),
        comment: problems.string(root, "comment", "$", false),
        policies: Vec::new(),
        whitelists: Vec::new(),
        mappings: Vec::new(),
        whitelisted_images: Vec::new(),
        blacklisted_images: Vec::new(),
    };
    for (path, value) in problems.list(root, &["policies"], "$") {
        if let Some((policy, rule_paths)) = policy(value, &path, problems) {
            bundle.policies.push(policy);
            paths.policies.push(path);
            paths.rules.push(rule_paths);
        }
    }
    for (path, value) in problems.list(root, &["whitelists", "allowlists"], "$") {
        if let Some((list, item_paths)) = whitelist(value, &path, problems) {
            bundle.whitelists.push(list);
            paths.whitelists.push(path);
            paths.items.push(item_paths);
        }
    }
    for (path, value) in problems.list(root, &["mappings"], "$") {
        if let Some((mapping, policy_paths, whitelist_paths)) = mapping(value, &path, problems) {
            bundle.mappings.push(mapping);
            paths.mappings.push(path);
            paths.mapping_policy_ids.push(policy_paths);
            paths.mapping_whitelist_ids.push(whitelist_paths);
        }
    }
    for (path, value) in problems.list(root, &["whitelisted_images", "allowlisted_images"], "$") {
        if let Some(rule) = image_rule(value, &path, problems) {
            bundle.whitelisted_images.push(rule);
            paths.whitelisted_images.push(path);
        }
    }
    for (path, value) in problems.list(root, &["blacklisted_images", "denylisted_images"], "$") {
        if let Some(rule) = image_rule(value, &path, problems) {
            bundle.blacklisted_images.push(rule);
            paths.blacklisted_images.push(path);
        }
    }
    (bundle, paths)
}

fn policy(value: &Value, path: &str, problems: &mut Problems) -> Option<(Policy, Vec<String>)> {
    let map = problems.object(value, path)?;
    let mut policy = Policy {
        id: problems.string(map, "id", path, true).unwrap_or_default(),
        name: problems.string(map, "name", path, false),
        comment: problems.string(map, "comment", path, false),
        // Required by anchore's Policy schema; its value is checked where anchore checks it (`1_0`, for
        // the policies mappings reach).
        version: problems.string(map, "version", path, true),
        rules: Vec::new(),
    };
    let mut rule_paths = Vec::new();
    for (here, value) in problems.list(map, &["rules"], path) {
        if let Some(rule) = rule(value, &here, problems) {
            policy.rules.push(rule);
            rule_paths.push(here);
        }
    }
    Some((policy, rule_paths))
}

fn rule(value: &Value, path: &str, problems: &mut Problems) -> Option<Rule> {
    let map = problems.object(value, path)?;
    let action = match problems.string(map, "action", path, true) {
        Some(a) => match a.to_ascii_uppercase().as_str() {
            "STOP" => Some(Action::Stop),
            "WARN" => Some(Action::Warn),
            "GO" => Some(Action::Go),
            _ => {
                problems.add(
                    format!("{path}.action"),
                    format!("unknown action `{a}`; expected STOP, WARN or GO"),
                );
                None
            }
        },
        None => None,
    };
    let mut params = Vec::new();
    for (here, value) in problems.list(map, &["params"], path) {
        let Some(p) = problems.object(value, &here) else {
            continue;
        };
        let name = problems.string(p, "name", &here, true);
        // anchore stores every value as a string; a bare number or boolean is the usual slip, so say so.
        let value = problems.string(p, "value", &here, true);
        if let (Some(name), Some(value)) = (name, value) {
            params.push(Param { name, value });
        }
    }
    let id = problems.string(map, "id", path, false);
    let gate = problems.string(map, "gate", path, true);
    let trigger = problems.string(map, "trigger", path, true);
    Some(Rule {
        id,
        gate: gate?,
        trigger: trigger?,
        action: action?,
        params,
    })
}

fn whitelist(
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Option<(Whitelist, Vec<String>)> {
    let map = problems.object(value, path)?;
    let mut list = Whitelist {
        id: problems.string(map, "id", path, true).unwrap_or_default(),
        name: problems.string(map, "name", path, false),
        // Required by anchore's Whitelist schema, like a policy's.
        version: problems.string(map, "version", path, true),
        comment: problems.string(map, "comment", path, false),
        items: Vec::new(),
    };
    let mut item_paths = Vec::new();
    for (here, value) in problems.list(map, &["items"], path) {
        let Some(item) = problems.object(value, &here) else {
            continue;
        };
        // anchore's WhitelistItem schema requires only `gate` and `trigger_id`.
        let id = problems.string(item, "id", &here, false);
        let gate = problems.string(item, "gate", &here, true);
        let trigger_id = problems.string(item, "trigger_id", &here, true);
        let expires_on = problems.string(item, "expires_on", &here, false);
        if let (Some(gate), Some(trigger_id)) = (gate, trigger_id) {
            list.items.push(WhitelistItem {
                id,
                gate,
                trigger_id,
                expires_on,
            });
            item_paths.push(here);
        }
    }
    Some((list, item_paths))
}

fn selector(
    map: &Map<String, Value>,
    path: &str,
    problems: &mut Problems,
) -> Option<(String, String, ImageSelector)> {
    let registry = problems.string(map, "registry", path, true);
    let repository = problems.string(map, "repository", path, true);
    let here = format!("{path}.image");
    let image = match map.get("image") {
        None => {
            problems.add(path, "missing required field `image`");
            None
        }
        Some(v) => problems.object(v, &here).and_then(|image| {
            let kind = problems.string(image, "type", &here, true)?;
            let value = problems.string(image, "value", &here, true)?;
            if !matches!(kind.as_str(), "tag" | "digest" | "id") {
                problems.add(
                    format!("{here}.type"),
                    format!("unknown image type `{kind}`; expected tag, digest or id"),
                );
                return None;
            }
            Some(ImageSelector { kind, value })
        }),
    };
    Some((registry?, repository?, image?))
}

fn mapping(
    value: &Value,
    path: &str,
    problems: &mut Problems,
) -> Option<(Mapping, Vec<String>, Vec<String>)> {
    let map = problems.object(value, path)?;
    let id = problems.string(map, "id", path, false);
    let name = problems.string(map, "name", path, false);
    let selected = selector(map, path, problems);
    let single = problems.string(map, "policy_id", path, false);
    let many = problems.strings(map, &["policy_ids"], path);
    let policy_ids: Vec<(String, String)> = match (single, many.is_empty()) {
        (Some(_), false) => {
            problems.add(path, "both `policy_id` and `policy_ids` given; use one");
            many
        }
        (Some(one), true) => vec![(format!("{path}.policy_id"), one)],
        (None, false) => many,
        (None, true) => {
            problems.add(path, "missing `policy_id` or `policy_ids`");
            Vec::new()
        }
    };
    let whitelist_ids = problems.strings(map, &["whitelist_ids", "allowlist_ids"], path);
    let (registry, repository, image) = selected?;
    let (policy_paths, policy_ids) = policy_ids.into_iter().unzip();
    let (whitelist_paths, whitelist_ids) = whitelist_ids.into_iter().unzip();
    let mapping = Mapping {
        id,
        name,
        registry,
        repository,
        image,
        policy_ids,
        whitelist_ids,
    };
    Some((mapping, policy_paths, whitelist_paths))
}

fn image_rule(value: &Value, path: &str, problems: &mut Problems) -> Option<ImageRule> {
    let map = problems.object(value, path)?;
    let id = problems.string(map, "id", path, false);
    let name = problems.string(map, "name", path, false);
    let (registry, repository, image) = selector(map, path, problems)?;
    Some(ImageRule {
        id,
        name,
        registry,
        repository,
        image,
    })
}
