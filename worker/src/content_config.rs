//! The content pass's keys in `services.analyzer` (file digests, licenses, `secrets.*`,
//! `content_search`, `retrieve_files.*`, `malware.*`) and their conversion into the engine's
//! [`ContentOptions`].

use std::time::Duration;

use fathom_analyzer::content::clamd::{ClamdAddress, MalwareOptions};
use fathom_analyzer::content::retrieve::{DEFAULT_MAX_FILE_BYTES, DEFAULT_PATHS};
use fathom_analyzer::content::{
    default_exclude, default_rules, ContentOptions, ContentPass, ContentRule, ContentSearcher,
    RetrieveOptions, SecretOptions, SecretRule,
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

/// `services.analyzer.retrieve_files` (anchore's `retrieve_files` analyzer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrieveFilesConfig {
    /// Files whose contents are kept for the `retrieved_files` and `passwd_file` gates; never a file
    /// holding secrets (`/etc/shadow`, keys, credentials: refused).
    pub paths: Vec<String>,
    /// Larger files are not kept.
    pub max_file_bytes: u64,
}

impl Default for RetrieveFilesConfig {
    fn default() -> Self {
        RetrieveFilesConfig {
            paths: DEFAULT_PATHS.map(String::from).to_vec(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// `services.analyzer.malware`: scanning with ClamAV's clamd, off while `clamd` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MalwareConfig {
    /// clamd's address: `host:port`, `tcp://host:port` or `unix:/path` (empty: no scanning).
    pub clamd: String,
    /// Larger files are not scanned (keep clamd's `StreamMaxLength` at least this).
    pub max_file_size: u64,
    /// How long one file's scan may take, connecting included.
    #[serde(with = "fathom_config::duration")]
    pub timeout: Duration,
}

impl Default for MalwareConfig {
    fn default() -> Self {
        MalwareConfig {
            clamd: String::new(),
            // clamd's own default StreamMaxLength.
            max_file_size: 100 << 20,
            timeout: Duration::from_secs(60),
        }
    }
}

impl MalwareConfig {
    /// The engine's options; `None` when scanning is off.
    pub fn options(&self) -> Result<Option<MalwareOptions>, ConfigError> {
        if self.clamd.trim().is_empty() {
            return Ok(None);
        }
        let clamd: ClamdAddress = self
            .clamd
            .parse()
            .map_err(|e| ConfigError::new("services.analyzer.malware.clamd", e))?;
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "services.analyzer.malware.timeout",
                "must be greater than 0",
            ));
        }
        if self.max_file_size == 0 {
            return Err(ConfigError::new(
                "services.analyzer.malware.max_file_size",
                "must be greater than 0 (leave malware.clamd empty to turn scanning off)",
            ));
        }
        Ok(Some(MalwareOptions {
            clamd,
            max_file_size: self.max_file_size,
            timeout: self.timeout,
        }))
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
    /// `retrieve_files`.
    pub retrieve_files: &'a RetrieveFilesConfig,
    /// `malware`.
    pub malware: &'a MalwareConfig,
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
        retrieve_files,
        malware,
    } = keys;
    let retrieve = RetrieveOptions {
        paths: retrieve_files.paths.clone(),
        max_file_bytes: retrieve_files.max_file_bytes,
    };
    retrieve.check().map_err(|(i, e)| {
        ConfigError::new(format!("services.analyzer.retrieve_files.paths[{i}]"), e)
    })?;
    let malware = malware.options()?;
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
        retrieve,
        malware,
        entries_in_document: false,
    };
    ContentPass::new(options.clone())
        .map_err(|m| ConfigError::new("services.analyzer.secrets", m))?;
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    static RETRIEVE: std::sync::LazyLock<RetrieveFilesConfig> =
        std::sync::LazyLock::new(RetrieveFilesConfig::default);
    static MALWARE: std::sync::LazyLock<MalwareConfig> =
        std::sync::LazyLock::new(MalwareConfig::default);
    static SECRETS: std::sync::LazyLock<SecretsConfig> =
        std::sync::LazyLock::new(SecretsConfig::default);

    fn keys<'a>(secrets: &'a SecretsConfig, content_search: &'a [ContentRule]) -> ContentKeys<'a> {
        ContentKeys {
            content: true,
            file_digest_max_bytes: 1 << 20,
            licenses: true,
            secrets,
            content_search,
            retrieve_files: &RETRIEVE,
            malware: &MALWARE,
        }
    }

    #[test]
    fn shadow_and_secret_files_are_refused_naming_the_entry() {
        let retrieve = RetrieveFilesConfig {
            paths: vec!["/etc/passwd".into(), "/etc/shadow".into()],
            ..Default::default()
        };
        let k = ContentKeys {
            retrieve_files: &retrieve,
            ..keys(&SECRETS, &[])
        };
        let e = content_options(k).unwrap_err();
        assert_eq!(e.key, "services.analyzer.retrieve_files.paths[1]");
        assert!(e.to_string().contains("password hashes"), "{e}");
    }

    #[test]
    fn malware_is_off_by_default_and_a_bad_address_is_named() {
        let o = content_options(keys(&SecretsConfig::default(), &[])).unwrap();
        assert_eq!(o.malware, None);
        let bad = MalwareConfig {
            clamd: "clamd".into(),
            ..Default::default()
        };
        let k = ContentKeys {
            malware: &bad,
            ..keys(&SECRETS, &[])
        };
        assert_eq!(
            content_options(k).unwrap_err().key,
            "services.analyzer.malware.clamd"
        );
        let on = MalwareConfig {
            clamd: "unix:/run/clamav/clamd.ctl".into(),
            ..Default::default()
        };
        let k = ContentKeys {
            malware: &on,
            ..keys(&SECRETS, &[])
        };
        let o = content_options(k).unwrap();
        assert!(o.malware.is_some());
        // Scanning is part of the layer cache key.
        assert_ne!(o.key(), ContentOptions::default().key());
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
