//! The bundles the admission webhook names (`services.webhook.bundle`, each selector's `bundle`): a
//! missing one stops the core at startup, naming the key, and a named one cannot be deleted, so a
//! misspelled or removed bundle never turns into admissions answered by failure policy.

use fathom_webhook::WebhookConfig;

/// (bundle id, the key naming it), in configuration order.
#[derive(Debug, Clone, Default)]
pub struct InUse(Vec<(String, String)>);

impl InUse {
    /// The bundles `hook` names, when it is enabled (none otherwise).
    pub fn of(hook: &WebhookConfig) -> InUse {
        if !hook.enabled {
            return InUse::default();
        }
        let mut named = Vec::new();
        if let Some(id) = &hook.bundle {
            named.push((id.clone(), "services.webhook.bundle".to_string()));
        }
        for (i, s) in hook.selectors.iter().enumerate() {
            if let Some(id) = &s.bundle {
                named.push((
                    id.clone(),
                    format!("services.webhook.selectors[{i}].bundle"),
                ));
            }
        }
        InUse(named)
    }

    /// Every (bundle id, key).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(id, key)| (id.as_str(), key.as_str()))
    }

    /// The first key naming bundle `id`, if any.
    pub fn key_of(&self, id: &str) -> Option<&str> {
        self.iter().find(|(b, _)| *b == id).map(|(_, key)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fathom_webhook::SelectorConfig;

    #[test]
    fn names_the_default_and_every_selectors_bundle_only_when_enabled() {
        let mut hook = WebhookConfig {
            bundle: Some("strict".into()),
            selectors: vec![
                SelectorConfig::default(),
                SelectorConfig {
                    bundle: Some("dev".into()),
                    ..SelectorConfig::default()
                },
            ],
            ..WebhookConfig::default()
        };
        assert!(InUse::of(&hook).key_of("strict").is_none());
        hook.enabled = true;
        let in_use = InUse::of(&hook);
        assert_eq!(in_use.key_of("strict"), Some("services.webhook.bundle"));
        assert_eq!(
            in_use.key_of("dev"),
            Some("services.webhook.selectors[1].bundle")
        );
        assert_eq!(in_use.key_of("other"), None);
    }
}
