//! Compiled mode selectors: which mode (and bundle) a workload gets, first match wins.

use std::collections::BTreeMap;

use regex::Regex;

use crate::config::{Mode, SelectorConfig};
use crate::error::{Error, Result};

/// One compiled selector.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Its name (given, or `selectors[i]`).
    pub name: String,
    namespace: Option<Regex>,
    namespace_labels: Vec<(String, Regex)>,
    object_labels: Vec<(String, Regex)>,
    /// The mode it assigns.
    pub mode: Mode,
    /// The bundle it names for `policy` mode.
    pub bundle: Option<String>,
}

/// All selectors in configuration order.
#[derive(Debug, Clone, Default)]
pub struct Selectors(Vec<Selector>);

/// What a request is matched on.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The request's namespace (empty for cluster-scoped objects).
    pub namespace: &'a str,
    /// The namespace's labels, when the oracle knows them.
    pub namespace_labels: Option<&'a BTreeMap<String, String>>,
    /// The object's `metadata.labels`.
    pub object_labels: &'a BTreeMap<String, String>,
}

fn compile(pattern: &str, key: &str) -> Result<Regex> {
    Regex::new(pattern).map_err(|e| Error::config(key, format!("invalid regex {pattern:?}: {e}")))
}

fn labels_match(wanted: &[(String, Regex)], have: Option<&BTreeMap<String, String>>) -> bool {
    if wanted.is_empty() {
        return true;
    }
    let Some(have) = have else { return false };
    wanted
        .iter()
        .all(|(k, re)| have.get(k).is_some_and(|v| re.is_match(v)))
}

impl Selectors {
    /// Compiles the configured selectors; `key` is the configuration path for error messages.
    pub fn compile(configs: &[SelectorConfig], key: &str) -> Result<Self> {
        let mut out = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let labels = |map: &BTreeMap<String, String>, field: &str| {
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), compile(v, &format!("{key}.{field}.{k}"))?)))
                    .collect::<Result<Vec<_>>>()
            };
            let mode = c.mode.ok_or_else(|| {
                Error::config(
                    format!("{key}.mode"),
                    "required (policy, analysis or breakglass)",
                )
            })?;
            out.push(Selector {
                name: c.name.clone().unwrap_or_else(|| format!("selectors[{i}]")),
                namespace: c
                    .namespace
                    .as_deref()
                    .map(|p| compile(p, &format!("{key}.namespace")))
                    .transpose()?,
                namespace_labels: labels(&c.namespace_labels, "namespace_labels")?,
                object_labels: labels(&c.object_labels, "object_labels")?,
                mode,
                bundle: c.bundle.clone(),
            });
        }
        Ok(Selectors(out))
    }

    /// Whether any selector looks at namespace labels (only then are they fetched).
    pub fn need_namespace_labels(&self) -> bool {
        self.0.iter().any(|s| !s.namespace_labels.is_empty())
    }

    /// The first selector matching `subject`.
    pub fn first_match(&self, subject: Subject<'_>) -> Option<&Selector> {
        self.0.iter().find(|s| {
            s.namespace
                .as_ref()
                .is_none_or(|re| re.is_match(subject.namespace))
                && labels_match(&s.namespace_labels, subject.namespace_labels)
                && labels_match(&s.object_labels, Some(subject.object_labels))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selectors(json: &str) -> Selectors {
        let configs: Vec<SelectorConfig> = serde_json::from_str(json).unwrap();
        Selectors::compile(&configs, "s").unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn first_match_wins_and_all_conditions_must_hold() {
        let s = selectors(
            r#"[{"name":"ops","namespace":"^ops$","object_labels":{"tier":"^(debug|tools)$"},"mode":"breakglass"},
                {"name":"prod","namespace_labels":{"env":"^prod"},"mode":"policy","bundle":"strict"},
                {"namespace":"^dev-","mode":"analysis"}]"#,
        );
        let none = BTreeMap::new();
        let debug = labels(&[("tier", "debug")]);
        let prod = labels(&[("env", "production")]);
        let pick =
            |ns: &str, nsl: Option<&BTreeMap<String, String>>, ol: &BTreeMap<String, String>| {
                s.first_match(Subject {
                    namespace: ns,
                    namespace_labels: nsl,
                    object_labels: ol,
                })
                .map(|m| m.name.clone())
            };
        assert_eq!(pick("ops", None, &debug).as_deref(), Some("ops"));
        // The namespace matches but the object label does not: the next selectors are tried.
        assert_eq!(pick("ops", None, &none), None);
        assert_eq!(pick("ops", Some(&prod), &none).as_deref(), Some("prod"));
        assert_eq!(pick("dev-a", None, &none).as_deref(), Some("selectors[2]"));
        // Unknown namespace labels never match a label condition.
        assert_eq!(pick("shop", None, &none), None);
        assert!(s.need_namespace_labels());
    }

    #[test]
    fn a_selector_without_mode_is_refused() {
        let configs: Vec<SelectorConfig> = serde_json::from_str(r#"[{"namespace":"x"}]"#).unwrap();
        let e = Selectors::compile(&configs, "k").unwrap_err().to_string();
        assert!(e.starts_with("k[0].mode:"), "{e}");
    }
}
