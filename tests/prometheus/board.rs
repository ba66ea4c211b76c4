//! What the dashboard and the rules ask Prometheus: the dashboard's panels with their targets (Grafana's
//! variables replaced as Grafana does for a given range and step), and the rules with their expressions
//! and, for alerts, the value the threshold is compared with.

use std::path::Path;

use serde::Deserialize;

/// One query of a panel.
#[derive(Debug, Clone)]
pub struct Target {
    pub expr: String,
    /// Asked at one instant (bar gauges of a whole range) rather than over the range.
    pub instant: bool,
}

/// One panel (rows left out): what an operator sees under `title`.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub targets: Vec<Target>,
}

/// Every non-row panel of the dashboard, rows' nested panels included.
pub fn panels(dashboard: &Path) -> Vec<Panel> {
    fn walk(items: &[serde_json::Value], out: &mut Vec<Panel>) {
        for p in items {
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or_default().to_string();
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("panel {title:?} has no targets"))
                .iter()
                .map(|t| Target {
                    expr: t["expr"]
                        .as_str()
                        .unwrap_or_else(|| panic!("a target of {title:?} has no expr"))
                        .to_string(),
                    instant: t["instant"] == true,
                })
                .collect();
            out.push(Panel { title, targets });
        }
    }
    let text = std::fs::read_to_string(dashboard).expect("dashboard");
    let json: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    walk(json["panels"].as_array().expect("panels"), &mut out);
    out
}

/// `expr` as Grafana sends it for a range of `range_s` seconds plotted at `step_s` with Prometheus
/// scraping every `scrape_s`: `$__rate_interval` is max(step + scrape, 4 × scrape). Any other variable
/// is an error: the dashboard defines none.
pub fn grafana_expr(
    expr: &str,
    range_s: u64,
    step_s: u64,
    scrape_s: u64,
) -> Result<String, String> {
    let rate = (step_s + scrape_s).max(4 * scrape_s);
    let out = expr
        .replace("$__rate_interval", &format!("{rate}s"))
        .replace("$__interval", &format!("{step_s}s"))
        .replace("$__range", &format!("{range_s}s"));
    match out.find('$') {
        Some(at) => Err(format!("unknown Grafana variable at {:?}", &out[at..])),
        None => Ok(out),
    }
}

/// A rule of `rules.yaml`.
#[derive(Debug, Clone, Deserialize)]
pub struct Rule {
    pub alert: Option<String>,
    pub record: Option<String>,
    pub expr: String,
}

impl Rule {
    /// The alert's or the recording's name.
    pub fn name(&self) -> &str {
        self.alert
            .as_deref()
            .or(self.record.as_deref())
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct Groups {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    rules: Vec<Rule>,
}

/// Every rule of a Prometheus rules file, in order.
pub fn rules(file: &Path) -> Vec<Rule> {
    let text = std::fs::read_to_string(file).expect("rules file");
    let parsed: Groups = serde_yaml::from_str(&text).expect("rules YAML");
    parsed.groups.into_iter().flat_map(|g| g.rules).collect()
}

/// The part of an alert expression before its first comparison at the top level (outside parentheses,
/// braces, brackets and strings): the value the alert compares with its threshold, e.g. the 5xx ratio of
/// `ratio > 0.05 and on() volume > 0.05`. The whole expression when it compares nothing.
pub fn value_part(expr: &str) -> &str {
    let bytes = expr.as_bytes();
    let (mut depth, mut quote) = (0i32, None::<u8>);
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match quote {
            Some(_) if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' | b'`' => quote = Some(c),
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => depth -= 1,
                b'>' | b'<' if depth == 0 => return expr[..i].trim(),
                b'=' | b'!' if depth == 0 && bytes.get(i + 1) == Some(&b'=') => {
                    return expr[..i].trim()
                }
                _ => {}
            },
        }
        i += 1;
    }
    expr.trim()
}

#[cfg(test)]
mod tests {
    use super::{grafana_expr, value_part};

    #[test]
    fn value_part_stops_at_the_first_top_level_comparison() {
        assert_eq!(
            value_part("sum(rate(x{s=~\"5..\",a!=\"b\"}[5m])) / clamp_min(y, 1e-9)\n> 0.05\n and on() z > 1"),
            "sum(rate(x{s=~\"5..\",a!=\"b\"}[5m])) / clamp_min(y, 1e-9)"
        );
        assert_eq!(
            value_part("max(a{m!=\"none\"}) == 1"),
            "max(a{m!=\"none\"})"
        );
        assert_eq!(value_part("min by (f) (age) >= 3"), "min by (f) (age)");
        assert_eq!(value_part("sum(x{l=\">\"})"), "sum(x{l=\">\"})");
    }

    #[test]
    fn grafana_variables_are_replaced_or_refused() {
        assert_eq!(
            grafana_expr(
                "rate(x[$__rate_interval]) + increase(y[$__range])",
                90,
                1,
                1
            )
            .unwrap(),
            "rate(x[4s]) + increase(y[90s])"
        );
        assert!(grafana_expr("x{pod=\"$pod\"}", 90, 1, 1).is_err());
    }
}
