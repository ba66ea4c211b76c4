//! `services.webhook`: the webhook's configuration as written (serde), its defaults and its validation.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::selector::Selectors;

/// The key prefix every validation error names.
const KEY: &str = "services.webhook";

/// The API server waits at most 30 s (`timeoutSeconds` maximum); the answer must come before it.
const MAX_TIMEOUT: Duration = Duration::from_secs(29);

/// A verdict older than this says little about the image today (feeds and bundles move daily).
const MAX_STALE_IF_ERROR: Duration = Duration::from_secs(24 * 3600);

/// What the webhook checks for the workloads a selector (or the default) covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every image must be analyzed and the active (or named) policy bundle must not say STOP.
    Policy,
    /// Every image must be analyzed; no policy is evaluated.
    Analysis,
    /// Everything is admitted; each admission is logged and counted.
    Breakglass,
}

impl Mode {
    /// The metric label and message word.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Policy => "policy",
            Mode::Analysis => "analysis",
            Mode::Breakglass => "breakglass",
        }
    }
}

/// How a request is answered when the webhook cannot decide in time or the store is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Admit (the cluster keeps deploying while fathom is down; matches `failurePolicy: Ignore`).
    Allow,
    /// Deny (nothing unchecked runs; matches `failurePolicy: Fail`).
    Deny,
}

/// How a policy rule with action STOP that could not be evaluated (its data, e.g. vulnerability
/// matches, is unavailable: feeds off or failing) counts in an admission. The policy engine reports it as
/// WARN, as anchore does; admitting on that would let missing data wave through what the rule stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unevaluable {
    /// Deny, naming the rule and this key.
    Stop,
    /// Admit with a warning (the policy engine's own reading).
    Warn,
}

/// How an image no mapping of the bundle selects is admitted. The policy engine answers such an image
/// with anchore's fall-through GO; an admission controller that let it through would admit whatever
/// the bundle forgot to map, so the default denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmapped {
    /// Deny, naming the bundle and this key.
    Deny,
    /// Admit (anchore's GO), with a warning saying no mapping selected the image.
    Allow,
}

/// One `services.webhook.selectors[i]` entry. Every condition given must match (regexes, unanchored
/// unless written with `^...$`); the first matching selector picks the mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelectorConfig {
    /// A name for messages and audit annotations (default: `selectors[i]`).
    pub name: Option<String>,
    /// Regex on the namespace name.
    pub namespace: Option<String>,
    /// Label key → regex on its value, over the namespace's labels. The AdmissionReview carries only the
    /// namespace name, so these come from [`ImageOracle::namespace_labels`](crate::ImageOracle); an
    /// oracle that knows no labels makes such a selector never match.
    pub namespace_labels: BTreeMap<String, String>,
    /// Label key → regex on its value, over the admitted object's own `metadata.labels`.
    pub object_labels: BTreeMap<String, String>,
    /// The mode for matching workloads.
    pub mode: Option<Mode>,
    /// Policy bundle for `mode: policy` (default: `services.webhook.bundle`).
    pub bundle: Option<String>,
}

/// `services.webhook`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// Whether `fathom run` starts it.
    pub enabled: bool,
    /// HTTPS listening address (`/validate`, `/healthz`).
    pub address: SocketAddr,
    /// PEM certificate chain (mounted from a Secret; re-read when it changes).
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// How often the certificate and key files are checked for a rotation.
    #[serde(with = "fathom_config::duration")]
    pub cert_reload_interval: Duration,
    /// Mode of workloads no selector matches.
    pub default_mode: Mode,
    /// Policy bundle by name for `policy` mode; none: the active bundle.
    pub bundle: Option<String>,
    /// First match wins.
    pub selectors: Vec<SelectorConfig>,
    /// Every answer is sent within this (keep it below the ValidatingWebhookConfiguration's
    /// `timeoutSeconds`).
    #[serde(with = "fathom_config::duration")]
    pub timeout: Duration,
    /// How long an image seen for the first time may take to be analyzed before it is denied (0: deny at
    /// once). Must be shorter than `timeout`.
    #[serde(with = "fathom_config::duration")]
    pub analysis_wait: Duration,
    /// The answer when no decision is possible in time or the store cannot be reached.
    pub failure_policy: FailurePolicy,
    /// When the store cannot answer in time, a verdict this process computed for the same image (same
    /// reference, digest, mode and bundle) less than this long ago answers instead of `failure_policy`,
    /// with a warning naming its age (0: never; the failure policy answers).
    #[serde(with = "fathom_config::duration")]
    pub stale_if_error: Duration,
    /// How long a tag → digest resolution is reused (0: not cached).
    #[serde(with = "fathom_config::duration")]
    pub cache_ttl: Duration,
    /// Whether selectors with `namespace_labels` get the namespace's labels from the Kubernetes API
    /// (`GET /api/v1/namespaces/NAME`; the AdmissionReview names the namespace only). Off, such
    /// selectors never match. Only used when some selector has `namespace_labels`.
    pub namespace_labels: bool,
    /// How long a namespace's labels are reused: one API request per namespace per TTL (0: every
    /// request asks, concurrent ones still share one call).
    #[serde(with = "fathom_config::duration")]
    pub namespace_cache_ttl: Duration,
    /// A kubeconfig file for the namespace lookups and the Pod listing (`inventory_sync`); none: the
    /// pod's in-cluster configuration (service account token), else the usual `KUBECONFIG` /
    /// `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Larger AdmissionReview bodies are refused (the API server itself sends at most ~3 MiB objects,
    /// twice on UPDATE).
    pub max_request_bytes: usize,
    /// Images of one request checked at once.
    pub image_concurrency: usize,
    /// Whether selectors with `object_labels` may pick `mode: breakglass`. Off (the default), such a
    /// selector is refused at startup: a Pod's own labels are set by whoever creates it, so the
    /// workload would grant itself breakglass. Namespace labels (`namespace_labels`) are the
    /// admin-controlled way.
    pub allow_object_label_breakglass: bool,
    /// A PEM CA bundle: when set, `/validate` (and `/mutate`) require a client certificate signed by
    /// it (the API server presents one from its AdmissionConfiguration kubeconfig); re-read on change
    /// like the serving certificate.
    pub client_ca_file: Option<PathBuf>,
    /// Analyses admissions may queue per namespace per minute (a token bucket: bursts up to this, then
    /// one every `60 s / N`); past it, unanalyzed images are denied without queueing (0: no limit).
    pub max_enqueues_per_minute: u32,
    /// Whether `POST /mutate` is served: a mutating webhook that rewrites each checked `repo:tag` to
    /// `repo:tag@digest` (the digest checked), so nodes pull what was checked even if the tag moves.
    pub pin_digests: bool,
    /// The platforms (`os/arch[/variant]`) the cluster's nodes run: a multi-platform image is admitted
    /// only when each of these that its index lists is analyzed (and passes policy).
    pub platforms: Vec<String>,
    /// How a STOP rule that could not be evaluated counts: `stop` (deny) or `warn` (admit, warned).
    pub unevaluable: Unevaluable,
    /// How an image no mapping of the bundle selects is admitted: `deny` or `allow`.
    pub unmapped: Unmapped,
    /// Inventory entries (a workload's container running a digest) not seen for this long expire.
    #[serde(with = "fathom_config::duration")]
    pub inventory_ttl: Duration,
    /// Also list Pods through the Kubernetes API every `inventory_sync_interval`, to fill the inventory
    /// with workloads admitted before fathom was installed (RBAC `list pods`: its own overlay).
    pub inventory_sync: bool,
    /// How often `inventory_sync` lists Pods.
    #[serde(with = "fathom_config::duration")]
    pub inventory_sync_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            enabled: false,
            address: SocketAddr::from(([0, 0, 0, 0], 8443)),
            cert_file: PathBuf::from("/etc/fathom/webhook-tls/tls.crt"),
            key_file: PathBuf::from("/etc/fathom/webhook-tls/tls.key"),
            cert_reload_interval: Duration::from_secs(10),
            default_mode: Mode::Policy,
            bundle: None,
            selectors: Vec::new(),
            timeout: Duration::from_secs(3),
            analysis_wait: Duration::ZERO,
            failure_policy: FailurePolicy::Allow,
            stale_if_error: Duration::from_secs(600),
            cache_ttl: Duration::from_secs(60),
            namespace_labels: true,
            namespace_cache_ttl: Duration::from_secs(60),
            kubeconfig: None,
            max_request_bytes: 8 << 20,
            image_concurrency: 16,
            allow_object_label_breakglass: false,
            client_ca_file: None,
            max_enqueues_per_minute: 60,
            pin_digests: false,
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            unevaluable: Unevaluable::Stop,
            unmapped: Unmapped::Deny,
            inventory_ttl: Duration::from_secs(7 * 24 * 3600),
            inventory_sync: false,
            inventory_sync_interval: Duration::from_secs(600),
        }
    }
}

/// Whether `p` reads `os/arch` or `os/arch/variant` (lowercase ASCII letters, digits, `_` and `.`).
fn valid_platform(p: &str) -> bool {
    let parts: Vec<&str> = p.split('/').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        })
}

/// A validated configuration: regexes compiled, limits checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration as given.
    pub config: WebhookConfig,
    /// The compiled selectors.
    pub selectors: Selectors,
}

impl Settings {
    /// Whether namespace labels are looked up in the Kubernetes API: enabled and wanted by a selector.
    pub fn looks_up_namespaces(&self) -> bool {
        self.config.namespace_labels && self.selectors.need_namespace_labels()
    }
}

impl WebhookConfig {
    /// Checks every key and compiles the selectors; errors name the key (`services.webhook.timeout`).
    pub fn validate(&self) -> Result<Settings> {
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(Error::config(
                format!("{KEY}.timeout"),
                format!(
                    "must be between 1ms and {} (below the API server's 30 s limit), got {}",
                    humantime::format_duration(MAX_TIMEOUT),
                    humantime::format_duration(self.timeout)
                ),
            ));
        }
        if self.inventory_sync_interval < Duration::from_secs(1) {
            return Err(Error::config(
                format!("{KEY}.inventory_sync_interval"),
                "must be at least 1s",
            ));
        }
        if self.inventory_ttl < Duration::from_secs(1) {
            return Err(Error::config(
                format!("{KEY}.inventory_ttl"),
                "must be at least 1s",
            ));
        }
        if self.analysis_wait >= self.timeout {
            return Err(Error::config(
                format!("{KEY}.analysis_wait"),
                "must be shorter than services.webhook.timeout (the answer must still be sent in time)",
            ));
        }
        if self.cert_reload_interval.is_zero() {
            return Err(Error::config(
                format!("{KEY}.cert_reload_interval"),
                "must be greater than 0",
            ));
        }
        for (key, path) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if path.as_os_str().is_empty() {
                return Err(Error::config(
                    format!("{KEY}.{key}"),
                    "must name a PEM file",
                ));
            }
        }
        if self.max_request_bytes < 1024 {
            return Err(Error::config(
                format!("{KEY}.max_request_bytes"),
                format!("must be at least 1024, got {}", self.max_request_bytes),
            ));
        }
        if self.stale_if_error > MAX_STALE_IF_ERROR {
            return Err(Error::config(
                format!("{KEY}.stale_if_error"),
                format!(
                    "must be at most {} (feeds and bundles move daily; 0s turns it off), got {}",
                    humantime::format_duration(MAX_STALE_IF_ERROR),
                    humantime::format_duration(self.stale_if_error)
                ),
            ));
        }
        if !(1..=256).contains(&self.image_concurrency) {
            return Err(Error::config(
                format!("{KEY}.image_concurrency"),
                format!("must be between 1 and 256, got {}", self.image_concurrency),
            ));
        }
        if self
            .kubeconfig
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(Error::config(
                format!("{KEY}.kubeconfig"),
                "must name a kubeconfig file (or be left out for the in-cluster configuration)",
            ));
        }
        if self
            .client_ca_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(Error::config(
                format!("{KEY}.client_ca_file"),
                "must name a PEM CA file (or be left out to accept clients without a certificate)",
            ));
        }
        self.refuse_object_label_breakglass()?;
        if self.platforms.is_empty() {
            return Err(Error::config(
                format!("{KEY}.platforms"),
                "must name at least one platform (e.g. linux/amd64): multi-platform images are checked \
                 for these",
            ));
        }
        if let Some((i, bad)) = self
            .platforms
            .iter()
            .enumerate()
            .find(|(_, p)| !valid_platform(p))
        {
            return Err(Error::config(
                format!("{KEY}.platforms[{i}]"),
                format!("{bad:?} is not OS/ARCH[/VARIANT] (e.g. linux/arm64 or linux/arm/v7)"),
            ));
        }
        let selectors = Selectors::compile(&self.selectors, &format!("{KEY}.selectors"))?;
        Ok(Settings {
            config: self.clone(),
            selectors,
        })
    }

    /// A breakglass selector on the object's own labels lets anyone who may create a Pod admit any
    /// image: refused unless `allow_object_label_breakglass` says the operator means it.
    fn refuse_object_label_breakglass(&self) -> Result<()> {
        if self.allow_object_label_breakglass {
            return Ok(());
        }
        let culprit = self
            .selectors
            .iter()
            .position(|s| s.mode == Some(Mode::Breakglass) && !s.object_labels.is_empty());
        match culprit {
            None => Ok(()),
            Some(i) => Err(Error::config(
                format!("{KEY}.selectors[{i}].object_labels"),
                "a breakglass selector on the object's own labels lets anyone who can create a Pod \
                 admit any image; select breakglass by namespace_labels (set by whoever may edit \
                 Namespaces) or namespace instead, or set services.webhook.allow_object_label_breakglass: \
                 true",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> WebhookConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_validate_and_durations_parse() {
        let c = parse("{}");
        assert_eq!(c, WebhookConfig::default());
        c.validate().unwrap();
        let c = parse(r#"{"timeout":"2s 500ms","analysis_wait":1,"failure_policy":"deny"}"#);
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.analysis_wait, Duration::from_secs(1));
        assert_eq!(c.failure_policy, FailurePolicy::Deny);
        assert_eq!(c.unevaluable, Unevaluable::Stop);
        assert_eq!(
            parse(r#"{"unevaluable":"warn"}"#).unevaluable,
            Unevaluable::Warn
        );
        assert_eq!(c.unmapped, Unmapped::Deny);
        assert_eq!(parse(r#"{"unmapped":"allow"}"#).unmapped, Unmapped::Allow);
    }

    #[test]
    fn errors_name_the_key() {
        let err = |json: &str| parse(json).validate().unwrap_err().to_string();
        assert!(err(r#"{"timeout":"31s"}"#).starts_with("services.webhook.timeout:"));
        assert!(err(r#"{"timeout":"2s","analysis_wait":"2s"}"#)
            .starts_with("services.webhook.analysis_wait:"));
        assert!(
            err(r#"{"max_request_bytes":10}"#).starts_with("services.webhook.max_request_bytes:")
        );
        let e =
            err(r#"{"selectors":[{"mode":"policy"},{"namespace":"(unclosed","mode":"policy"}]}"#);
        assert!(
            e.starts_with("services.webhook.selectors[1].namespace:"),
            "{e}"
        );
        assert!(err(r#"{"platforms":[]}"#).starts_with("services.webhook.platforms:"));
        assert!(err(r#"{"stale_if_error":"25h"}"#).starts_with("services.webhook.stale_if_error:"));
        let off = parse(r#"{"stale_if_error":"0s"}"#);
        assert_eq!(off.stale_if_error, Duration::ZERO);
        off.validate().unwrap();
        for bad in [
            "linux",
            "linux/",
            "Linux/amd64",
            "linux/arm/v7/x",
            "linux amd64/x",
        ] {
            let e = err(&format!(r#"{{"platforms":["linux/amd64","{bad}"]}}"#));
            assert!(
                e.starts_with("services.webhook.platforms[1]:"),
                "{bad}: {e}"
            );
        }
        parse(r#"{"platforms":["linux/arm/v7","windows/amd64"]}"#)
            .validate()
            .unwrap();
        let e = err(r#"{"selectors":[{"object_labels":{"app":"[z-a]"},"mode":"analysis"}]}"#);
        assert!(
            e.starts_with("services.webhook.selectors[0].object_labels.app:"),
            "{e}"
        );
    }

    #[test]
    fn object_label_breakglass_is_refused_unless_allowed() {
        let json = r#"{"selectors":[{"namespace":"^ops$","mode":"analysis"},
            {"namespace":"^shop$","object_labels":{"fathom.dev/breakglass":"true"},"mode":"breakglass"}]}"#;
        let e = parse(json).validate().unwrap_err().to_string();
        assert!(
            e.starts_with("services.webhook.selectors[1].object_labels:")
                && e.contains("allow_object_label_breakglass"),
            "{e}"
        );
        let mut allowed = parse(json);
        allowed.allow_object_label_breakglass = true;
        allowed.validate().unwrap();
        // Object labels for another mode, and breakglass by namespace labels, stay allowed.
        parse(
            r#"{"selectors":[{"object_labels":{"tier":"dev"},"mode":"analysis"},
            {"namespace_labels":{"fathom.dev/breakglass":"true"},"mode":"breakglass"}]}"#,
        )
        .validate()
        .unwrap();
        let e = parse(r#"{"client_ca_file":""}"#).validate().unwrap_err();
        assert!(
            e.to_string()
                .starts_with("services.webhook.client_ca_file:"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_modes_are_refused() {
        assert!(serde_json::from_str::<WebhookConfig>(r#"{"timeuot":"3s"}"#).is_err());
        assert!(serde_json::from_str::<WebhookConfig>(r#"{"default_mode":"audit"}"#).is_err());
        assert!(serde_json::from_str::<WebhookConfig>(r#"{"unevaluable":"go"}"#).is_err());
    }
}
