//! What fathom supports of anchore's gates, beyond the catalog itself: the gates anchore end-of-lifed (and
//! their replacements), anchore's gates fathom does not evaluate yet, and the README's table of both.

use crate::catalog::GATES;

/// A gate anchore has end-of-lifed, and the gate anchore names as its replacement (none for the
/// base-image comparisons, which anchore dropped without one). anchore refuses a bundle whose mapped
/// policies use one (strict validation: `EndOfLifedError`), and so does fathom, naming the replacement.
/// From anchore-engine's `gates/eol/__init__.py` (its `__superceded_by__`; anchore writes `gems` for
/// `gemcheck`, a name no gate has: the gate it means is `ruby_gems`).
pub(crate) static END_OF_LIFE: &[(&str, Option<&str>)] = &[
    ("anchoresec", Some("vulnerabilities")),
    ("dockerfilecheck", Some("dockerfile")),
    ("filecheck", Some("files")),
    ("fileparse_passwd", Some("passwd_file")),
    ("gemcheck", Some("ruby_gems")),
    ("imagecheck", None),
    ("licblacklist", Some("licenses")),
    ("metadatacheck", Some("metadata")),
    ("npmcheck", Some("npms")),
    ("pkgblacklist", Some("packages")),
    ("pkgcheck", Some("packages")),
    ("pkgdiff", None),
    ("secretcheck", Some("secret_scans")),
    ("suiddiff", None),
];

/// The end-of-life gate named `name` (case-insensitive) and its replacement.
pub(crate) fn end_of_life(name: &str) -> Option<(&'static str, Option<&'static str>)> {
    END_OF_LIFE
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(name))
        .copied()
}

/// Gates of anchore-engine's last release that fathom does not evaluate yet, with their triggers and why
/// (none left: kept so the README table can say so again should anchore's catalog ever be re-read).
pub(crate) static NOT_SUPPORTED: &[(&str, &[&str], &str)] = &[];

/// What a gate's feed-dependent triggers do in fathom, for the README table.
fn note(gate: &str, trigger: &str) -> &'static str {
    match (gate, trigger) {
        ("npms" | "ruby_gems", "feed_data_unavailable") => {
            "always fires: anchore's npm/gem metadata feeds are discontinued, fathom has none"
        }
        ("npms" | "ruby_gems", "blacklisted_name_version" | "blacklist") => "",
        ("passwd_file", _) => "reads the retrieved /etc/passwd (`services.analyzer.retrieve_files`)",
        ("retrieved_files", _) => "reads `services.analyzer.retrieve_files`",
        ("malware", _) => "reads the scan of `services.analyzer.malware` (ClamAV clamd)",
        ("npms" | "ruby_gems", _) => {
            "never fires: it reads anchore's discontinued npm/gem metadata feed, as anchore does with that feed empty"
        }
        _ => "",
    }
}

/// The README's table of gates and triggers, rendered from the catalog: supported ones with their
/// parameters (required ones marked `*`), then anchore's gates fathom does not evaluate yet.
pub fn gates_markdown() -> String {
    let mut out = String::from(
        "| gate | trigger | parameters (`*` required) | status |\n|---|---|---|---|\n",
    );
    for gate in GATES {
        for trigger in gate.triggers {
            let params: Vec<String> = trigger
                .params
                .iter()
                .map(|p| format!("`{}`{}", p.name, if p.required { "*" } else { "" }))
                .collect();
            let params = if params.is_empty() {
                "—".to_string()
            } else {
                params.join(", ")
            };
            let status = match note(gate.name, trigger.name) {
                "" => "supported".to_string(),
                n => format!("supported; {n}"),
            };
            out.push_str(&format!(
                "| `{}` | `{}` | {params} | {status} |\n",
                gate.name, trigger.name
            ));
        }
    }
    for (gate, triggers, why) in NOT_SUPPORTED {
        for trigger in *triggers {
            out.push_str(&format!(
                "| `{gate}` | `{trigger}` | — | **not supported**: {why} |\n"
            ));
        }
    }
    out
}
