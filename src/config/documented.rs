//! The README's configuration table and `docs/autoscaler.md`'s key table against the code: every key they
//! name exists, and every default they state is the code's default.

use std::time::Duration;

use serde_json::Value;

use super::*;

/// `(key, default)` of each table row whose first cell starts with a backticked key.
fn rows(doc: &str, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(key_cell), Some(default)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let key = key_cell.split('`').nth(1).unwrap_or_default();
        let keys: Vec<&str> = key.split(" / ").collect();
        let defaults: Vec<&str> = default.split(" / ").collect();
        for (i, k) in keys.iter().enumerate() {
            let d = defaults.get(i).unwrap_or(&defaults[0]);
            out.push((format!("{prefix}{k}"), d.trim_matches('`').to_string()));
        }
        // `a` / `b` pairs written as two backticked keys in one cell.
        let more: Vec<&str> = key_cell.split('`').skip(3).step_by(2).collect();
        for (i, k) in more.iter().enumerate() {
            if let Some(d) = defaults.get(i + 1) {
                out.push((format!("{prefix}{k}"), d.trim_matches('`').to_string()));
            }
        }
    }
    out
}

fn lookup<'a>(tree: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(tree, |node, part| node.get(part))
}

fn agrees(doc: &str, code: &Value) -> bool {
    match code {
        // Unset by default: the doc says what stands in (`$DATABASE_URL`, CPUs, ...).
        Value::Null => true,
        Value::Bool(b) => doc == b.to_string(),
        Value::Number(n) => {
            doc == n.to_string()
                || doc
                    .strip_suffix(" MiB")
                    .and_then(|m| m.parse::<u64>().ok())
                    .is_some_and(|m| Some(m << 20) == n.as_u64())
        }
        Value::String(s) => {
            doc == s
                || matches!(
                    (humantime::parse_duration(doc), humantime::parse_duration(s)),
                    (Ok(a), Ok(b)) if a == b && a > Duration::ZERO
                )
        }
        Value::Array(items) if items.is_empty() => doc == "[]",
        Value::Array(items) => {
            let listed: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            listed.len() == items.len() && doc == listed.join(", ")
        }
        Value::Object(_) => false,
    }
}

fn check(doc: &str, prefix: &str, min_rows: usize) {
    let code = serde_json::to_value(FathomConfig::default()).unwrap();
    let rows = rows(doc, prefix);
    assert!(
        rows.len() >= min_rows,
        "only {} rows read: {rows:?}",
        rows.len()
    );
    for (key, default) in rows {
        if key.ends_with('*') {
            continue;
        }
        let value =
            lookup(&code, &key).unwrap_or_else(|| panic!("documented key {key} does not exist"));
        assert!(
            agrees(&default, value),
            "{key}: documented default {default:?}, code {value}"
        );
    }
}

#[test]
fn readme_configuration_table_matches_the_code() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("## Configuration")
        .expect("README has a Configuration section");
    let section = &readme[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    check(&section[..end], "", 30);
}

#[test]
fn autoscaler_doc_table_matches_the_code() {
    let doc = include_str!("../../docs/autoscaler.md");
    let start = doc
        .find("| key | default | meaning |")
        .expect("docs/autoscaler.md has a key table");
    check(&doc[start..], "services.autoscaler.", 18);
}
