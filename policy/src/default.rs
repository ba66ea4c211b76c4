//! The built-in bundle: anchore's default policy, written for fathom.

use std::sync::OnceLock;

use crate::model::Bundle;
use crate::validated::ValidatedBundle;

/// The default bundle's JSON text.
pub const DEFAULT_BUNDLE_JSON: &str = include_str!("default_bundle.json");

/// anchore's defaults: STOP on exposed port 22, WARN without a HEALTHCHECK, WARN on a feed older than two
/// days or missing vulnerability data, WARN on medium and STOP on high or critical vulnerabilities;
/// mapped to every image. Validated once, on first use.
pub fn default_bundle() -> &'static ValidatedBundle {
    static BUNDLE: OnceLock<ValidatedBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| match Bundle::from_json(DEFAULT_BUNDLE_JSON) {
        Ok(bundle) => bundle,
        // A test proves the built-in bundle validates; reaching this is a build defect, not input.
        Err(errors) => panic!("built-in default bundle is invalid: {errors:?}"),
    })
}
