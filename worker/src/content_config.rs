//! The content pass's keys in `services.analyzer` (file digests, licenses, `secrets.*`,
//! `content_search`) and their conversion into the engine's [`ContentOptions`].

use fathom_analyzer::content::{
    default_exclude, default_rules, ContentOptions, ContentPass, ContentRule, ContentSearcher,
    SecretOptions, SecretRule,
};
use fathom_config::ConfigError;
use serde::{Deserialize, Serialize};

/// `services.analyzer.secrets`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// Whether to search file contents for secrets.
    pub enabled: bool,
    /// Only files up to this size are searched.
    pub max_file_bytes: u64,
    /// Named regexes; empty means the built-in rules (AWS keys, PEM private keys, API keys, GitHub,
    /// GitLab and Slack tokens, docker auth).
    pub rules: Vec<SecretRule>,
    /// Path regexes: when any is given, only matching paths are searched.
    pub include: Vec<String>,
    /// Path regexes never searched.
    pub exclude: Vec<String>,
}

impl Default for SecretsConfig {
    fn default() -> Self {
        let engine = SecretOptions::default();
        SecretsConfig {
            enabled: engine.enabled,
            max_file_bytes: engine.max_file_bytes,
            rules: Vec::new(),
            include: Vec::new(),
            exclude: default_exclude(),
        }
    }
}

/// The content pass's keys of `services.analyzer`, as one borrow.
#[derive(Debug, Clone, Copy)]
pub struct ContentKeys<'a> {
    /// `content`.
    pub content: bool,
    /// `file_digest_max_bytes`.
    pub file_digest_max_bytes: u64,
    /// `licenses`.
    pub licenses: bool,
    /// `secrets`.
    pub secrets: &'a SecretsConfig,
    /// `content_search`.
    pub content_search: &'a [ContentRule],
}

/// Builds the engine's content options from the keys, compiling the rules once so that a bad pattern
/// stops start-up with the key named instead of failing every job.
pub fn content_options(keys: ContentKeys<'_>) -> Result<ContentOptions, ConfigError> {
    let ContentKeys {
        content,
        file_digest_max_bytes,
        licenses,
        secrets,
        content_search,
    } = keys;
    // Compiled on their own first so the error names the entry at fault.
    ContentSearcher::new(content_search).map_err(|e| {
        ConfigError::new(
            format!("services.analyzer.content_search[{}]", e.index),
            e.message,
        )
    })?;
    let options = ContentOptions {
        enabled: content,
        file_digest_max_bytes,
        licenses,
        secrets: SecretOptions {
            enabled: secrets.enabled,
            rules: if secrets.rules.is_empty() {
                default_rules()
            } else {
                secrets.rules.clone()
            },
            max_file_bytes: secrets.max_file_bytes,
            include: secrets.include.clone(),
            exclude: secrets.exclude.clone(),
        },
        content_search: content_search.to_vec(),
        entries_in_document: false,
    };
    ContentPass::new(options.clone())
        .map_err(|m| ConfigError::new("services.analyzer.secrets", m))?;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(secrets: &'a SecretsConfig, content_search: &'a [ContentRule]) -> ContentKeys<'a> {
        ContentKeys {
            content: true,
            file_digest_max_bytes: 1 << 20,
            licenses: true,
            secrets,
            content_search,
        }
    }

    #[test]
    fn defaults_are_the_engine_defaults() {
        let o = content_options(keys(&SecretsConfig::default(), &[])).unwrap();
        assert_eq!(o, ContentOptions::default());
    }

    #[test]
    fn a_bad_content_search_rule_names_its_entry() {
        let rules = [
            ContentRule {
                name: "FINE".into(),
                pattern: "ok".into(),
                store_match: false,
            },
            ContentRule {
                name: "PASSWORD".into(),
                pattern: "password=(".into(),
                store_match: true,
            },
        ];
        let e = content_options(keys(&SecretsConfig::default(), &rules)).unwrap_err();
        assert_eq!(e.key, "services.analyzer.content_search[1]");
        assert!(e.to_string().contains("PASSWORD"), "{e}");
        let o = content_options(keys(&SecretsConfig::default(), &rules[..1])).unwrap();
        assert_eq!(o.content_search, rules[..1]);
        // Rules change the layer cache key; no rules leave it as it always was.
        assert_ne!(o.key(), ContentOptions::default().key());
    }

    #[test]
    fn a_bad_rule_names_the_key_and_the_rule() {
        let secrets = SecretsConfig {
            rules: vec![SecretRule {
                name: "MINE".into(),
                pattern: "[unclosed".into(),
            }],
            ..Default::default()
        };
        let e = content_options(keys(&secrets, &[])).unwrap_err();
        assert_eq!(e.key, "services.analyzer.secrets");
        assert!(e.to_string().contains("MINE"), "{e}");
    }
}
