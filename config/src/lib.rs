//! fathom's configuration plumbing, shared by every crate that owns a section of the one config file.
//!
//! Overview: each crate defines its section as a serde type with defaults and a `validate()` that returns
//! a [`ConfigError`] naming the dotted key at fault; durations use [`duration`]. The binary composes the
//! sections into one file and overlays the environment with [`env::overlay`]: the variables it honours
//! are derived from the composed defaults ([`env::keys`]), so a new key in any section is settable as
//! `FATHOM_<KEY>` with no list to keep by hand.
#![deny(missing_docs)]

pub mod duration;
pub mod env;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

/// A configuration problem, naming the key (`services.analyzer.concurrency`) and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {key}: {message}")]
pub struct ConfigError {
    /// Dotted key path, or the file when the whole file is unreadable.
    pub key: String,
    /// What is wrong (and which environment variable set it, if one did).
    pub message: String,
}

impl ConfigError {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Parses the YAML `text` read from `origin` into a mapping (empty text → empty mapping).
pub fn parse_yaml(text: Option<&str>, origin: &str) -> Result<Value, ConfigError> {
    let root = match text {
        Some(t) if !t.trim().is_empty() => serde_yaml::from_str::<Value>(t)
            .map_err(|e| ConfigError::new(origin, format!("not valid YAML: {e}")))?,
        _ => Value::Mapping(Mapping::new()),
    };
    if !root.is_mapping() {
        return Err(ConfigError::new(origin, "the top level must be a mapping"));
    }
    Ok(root)
}

/// Deserializes `root`, naming the key of the first error and the environment variable that set it.
pub fn deserialize<T: DeserializeOwned>(
    root: Value,
    origin: &str,
    from_env: &[env::FromEnv],
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(root).map_err(|e| {
        let key = e.path().to_string();
        let mut message = e.inner().to_string();
        if let Some(set) = from_env.iter().find(|s| s.key == key) {
            message.push_str(&format!(" (set by {})", set.variable));
        }
        ConfigError::new(if key == "." { origin.to_string() } else { key }, message)
    })
}
