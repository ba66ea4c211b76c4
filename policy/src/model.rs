//! The policy bundle as written by users: anchore's v1_0 format in canonical (synonym-free) form.

use serde::{Deserialize, Serialize};

/// A v1_0 policy bundle. Deserializing accepts the allowlist/denylist synonyms; serializing writes anchore's
/// names, so two spellings of one bundle serialize (and digest) the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bundle {
    /// Bundle id.
    pub id: String,
    /// Format version; only `1_0` exists.
    pub version: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Named sets of rules.
    #[serde(default)]
    pub policies: Vec<Policy>,
    /// Named sets of trigger matches to ignore.
    #[serde(default, alias = "allowlists")]
    pub whitelists: Vec<Whitelist>,
    /// Which policies and whitelists apply to which images; first match wins.
    #[serde(default)]
    pub mappings: Vec<Mapping>,
    /// Images that always pass.
    #[serde(default, alias = "allowlisted_images")]
    pub whitelisted_images: Vec<ImageRule>,
    /// Images that always fail.
    #[serde(default, alias = "denylisted_images")]
    pub blacklisted_images: Vec<ImageRule>,
}

/// A named list of rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Policy id, referenced by mappings.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Policy version string (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The rules, evaluated in order.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One gate/trigger check with its action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Rule id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Gate name, e.g. `vulnerabilities`.
    pub gate: String,
    /// Trigger name, e.g. `package`.
    pub trigger: String,
    /// What a match of this rule means.
    pub action: Action,
    /// Trigger parameters; every value is a string.
    #[serde(default)]
    pub params: Vec<Param>,
}

/// One `{name, value}` trigger parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// Parameter name.
    pub name: String,
    /// Parameter value, always a string in v1_0 bundles.
    pub value: String,
}

/// A rule's action; ordered worst first (STOP < WARN < GO), so the lowest action wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    /// Fail.
    Stop,
    /// Pass with a warning.
    Warn,
    /// Pass.
    Go,
}

impl Action {
    /// anchore's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Warn => "warn",
            Action::Go => "go",
        }
    }
}

/// A named list of whitelist items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Whitelist {
    /// Whitelist id, referenced by mappings.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Version string (informational).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The items.
    #[serde(default)]
    pub items: Vec<WhitelistItem>,
}

/// One whitelisted trigger match: gate plus trigger id, `*` wildcards allowed in the trigger id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WhitelistItem {
    /// Item id (optional in anchore's schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Gate the match must come from.
    pub gate: String,
    /// Trigger instance id, e.g. `CVE-2023-1234+openssl` or `CVE-2023-1234+*`.
    pub trigger_id: String,
    /// RFC 3339 instant from which the item no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<String>,
}

/// Which images a mapping or image rule selects: `image.type` is tag, digest or id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageSelector {
    /// `tag`, `digest` or `id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The tag pattern (with `*`), digest or id.
    pub value: String,
}

/// A mapping from images to policies and whitelists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    /// Mapping id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Registry pattern.
    pub registry: String,
    /// Repository pattern.
    pub repository: String,
    /// Image selector.
    pub image: ImageSelector,
    /// Policies to evaluate (a lone `policy_id` is read into this list).
    #[serde(default)]
    pub policy_ids: Vec<String>,
    /// Whitelists to apply.
    #[serde(default, alias = "allowlist_ids")]
    pub whitelist_ids: Vec<String>,
}

/// A whitelisted or blacklisted image rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRule {
    /// Rule id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Registry pattern.
    pub registry: String,
    /// Repository pattern.
    pub repository: String,
    /// Image selector.
    pub image: ImageSelector,
}
