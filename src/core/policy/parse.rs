//! Bundle files and texts as users write them: JSON or YAML, refused with every problem's path.

use fathom_policy::{Bundle, ValidatedBundle};

/// Reads a JSON or YAML bundle file; the error lists every problem with its JSON path.
pub fn read_bundle_file(path: &std::path::Path) -> anyhow::Result<ValidatedBundle> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse_bundle(&text).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        anyhow::anyhow!(
            "{} is not a valid bundle:\n{}",
            path.display(),
            lines.join("\n")
        )
    })
}

/// JSON when the text parses as JSON, else YAML (a superset that would also read most JSON, but with
/// worse messages for broken JSON).
pub fn parse_bundle(text: &str) -> Result<ValidatedBundle, Vec<fathom_policy::ValidationError>> {
    if text.trim_start().starts_with('{') {
        Bundle::from_json(text)
    } else {
        Bundle::from_yaml(text)
    }
}
