//! The `FATHOM_*` environment overlay. Variable names are derived from the composed defaults: every leaf
//! key (`services.analyzer.concurrency`) is settable as `FATHOM_` + the key upper-cased with `.` → `_`;
//! a key whose default is a list of scalars takes a comma-separated value. Lists of mappings
//! (`registry.credentials`) are file-only.

use serde::Serialize;
use serde_yaml::{Mapping, Value};

use crate::ConfigError;

/// One settable key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvKey {
    /// Dotted key path.
    pub key: String,
    /// Whether the value is a comma-separated list.
    pub list: bool,
}

/// A key the environment set, and by which variable (named in error messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromEnv {
    /// Dotted key path.
    pub key: String,
    /// The variable that set it.
    pub variable: String,
}

/// The environment variable overriding `key`.
pub fn env_name(key: &str) -> String {
    format!("FATHOM_{}", key.replace('.', "_").to_uppercase())
}

/// Every key of `defaults` the environment may set, in file order, except `file_only` keys (lists of
/// mappings whose empty default cannot show that they are not lists of strings).
pub fn keys<T: Serialize>(defaults: &T, file_only: &[&str]) -> Result<Vec<EnvKey>, ConfigError> {
    let tree = serde_yaml::to_value(defaults)
        .map_err(|e| ConfigError::new("configuration", format!("internal: defaults: {e}")))?;
    let mut out = Vec::new();
    walk(&tree, String::new(), &mut out);
    out.retain(|k| !file_only.contains(&k.key.as_str()));
    Ok(out)
}

fn walk(node: &Value, prefix: String, out: &mut Vec<EnvKey>) {
    match node {
        Value::Mapping(map) => {
            for (k, v) in map {
                if let Some(k) = k.as_str() {
                    let key = if prefix.is_empty() {
                        k.to_string()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, key, out);
                }
            }
        }
        Value::Sequence(items) => {
            if items.iter().all(is_scalar) {
                out.push(EnvKey {
                    key: prefix,
                    list: true,
                });
            }
        }
        _ => out.push(EnvKey {
            key: prefix,
            list: false,
        }),
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::Bool(_) | Value::Number(_) | Value::String(_))
}

/// Applies the environment (`env` looks a variable up) to `root` for every key in `keys`, and for each
/// `(key, variable)` in `aliases` (older or conventional names, e.g. `FATHOM_INSECURE_REGISTRIES`).
/// The canonical variable wins over an alias. Returns what was set, for error messages.
pub fn overlay(
    root: &mut Value,
    keys: &[EnvKey],
    aliases: &[(&str, &str)],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<FromEnv>, ConfigError> {
    let mut set = Vec::new();
    for k in keys {
        let canonical = env_name(&k.key);
        let alias = aliases
            .iter()
            .filter(|(key, _)| *key == k.key)
            .map(|(_, var)| var.to_string());
        let found = std::iter::once(canonical)
            .chain(alias)
            .find_map(|var| env(&var).map(|raw| (var, raw)));
        let Some((variable, raw)) = found else {
            continue;
        };
        let value = if k.list {
            Value::Sequence(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            )
        } else {
            scalar(&raw)
        };
        set_path(root, &k.key, value).map_err(|m| ConfigError::new(k.key.clone(), m))?;
        set.push(FromEnv {
            key: k.key.clone(),
            variable,
        });
    }
    Ok(set)
}

/// Parses an environment value as a YAML scalar (`true`, `4`, `30s`), keeping odd strings as strings.
fn scalar(raw: &str) -> Value {
    match serde_yaml::from_str::<Value>(raw) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_))) => v,
        _ => Value::String(raw.to_string()),
    }
}

fn set_path(root: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if node.is_null() {
            *node = Value::Mapping(Mapping::new());
        }
        let Value::Mapping(map) = node else {
            return Err(format!("{} is not a mapping", parts[..i].join(".")));
        };
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            map.insert(k, value);
            return Ok(());
        }
        node = map.entry(k).or_insert(Value::Mapping(Mapping::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Inner {
        count: u32,
        names: Vec<String>,
        maybe: Option<String>,
    }

    #[derive(Serialize, Default)]
    struct Outer {
        inner: Inner,
        creds: Vec<Inner>,
    }

    #[test]
    fn keys_come_from_the_defaults() {
        let mut o = Outer::default();
        o.creds.push(Inner::default());
        let k = keys(&o, &[]).unwrap();
        let names: Vec<(&str, bool)> = k.iter().map(|k| (k.key.as_str(), k.list)).collect();
        assert_eq!(
            names,
            [
                ("inner.count", false),
                ("inner.names", true),
                ("inner.maybe", false)
            ]
        );
    }

    #[test]
    fn overlay_sets_scalars_lists_and_aliases() {
        let k = keys(&Outer::default(), &["inner.maybe"]).unwrap();
        let mut root = Value::Mapping(Mapping::new());
        let env = |v: &str| match v {
            "FATHOM_INNER_COUNT" => Some("4".to_string()),
            "OLD_NAMES" => Some("a, b,".to_string()),
            _ => None,
        };
        let set = overlay(&mut root, &k, &[("inner.names", "OLD_NAMES")], env).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set[1].variable, "OLD_NAMES");
        let text = serde_yaml::to_string(&root).unwrap();
        assert_eq!(text, "inner:\n  count: 4\n  names:\n  - a\n  - b\n");
    }
}
