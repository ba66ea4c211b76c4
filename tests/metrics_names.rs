//! Dashboards and alerts cannot rot: every metric that an expression of `deploy/grafana/fathom.json` or
//! `deploy/prometheus/rules.yaml` selects is exported by a real, running fathom process (real Postgres;
//! the core API, `fathom worker` and `fathom autoscaler` as real processes, scraped over HTTP), with the
//! labels and label values its matchers ask for. A renamed metric, a dropped label or a label value that no code path
//! produces fails here instead of leaving a panel empty or an alert that can never fire.

mod support;

#[path = "metrics_names/promql.rs"]
mod promql;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use promql::{selectors, Selector};
use support::process::{repo, DeployedCore, Running};
use support::{fathom, free_addr, http_get, test_db};

/// Names no fathom process exports, each with why that is right. Empty today: every expression selects
/// only fathom's own metrics (an entry such as `("up", "Prometheus' own scrape health")` goes here).
const EXTERNAL_METRICS: &[(&str, &str)] = &[];

/// fathom's own names whose series exist only per registry host, so an idle process (which has met no
/// registry) cannot export them; each names the test that asserts them after real registry work.
const PER_HOST_METRICS: &[(&str, &str)] = &[
    // Per notification endpoint, likewise: the deployment's core configures none.
    (
        "fathom_notify_deliveries_total",
        "tests/notify_delivery.rs signed_events_arrive_in_order_and_bad_endpoints_block_no_one",
    ),
    (
        "fathom_notify_delivery_latency_seconds_bucket",
        "tests/notify_delivery.rs signed_events_arrive_in_order_and_bad_endpoints_block_no_one",
    ),
    (
        "fathom_worker_registry_requests_total",
        "tests/worker.rs metrics_pass_promtool_and_health_answers",
    ),
    (
        "fathom_catalog_requests_total",
        "tests/catalog.rs an_idle_pass_sends_only_heads_and_500_tags_keep_the_per_host_rate",
    ),
];

/// Labels Prometheus attaches when it scrapes (from the target and the Kubernetes service discovery),
/// so no exposition carries them.
const TARGET_LABELS: &[&str] = &["instance", "job", "pod", "namespace", "container", "node"];

const DASHBOARD: &str = "deploy/grafana/fathom.json";
const RULES: &str = "deploy/prometheus/rules.yaml";

/// Every process whose metrics the dashboards and rules use, idle: the core and the analyzer with the
/// deployment's own ConfigMaps (only the listen addresses, the database and the token come from the
/// environment, as in the pods), and the autoscaler with the local target and min 0 replicas, so with
/// nothing queued it spawns no worker. Whatever a process exports only after some work is pre-created at
/// zero at registration, as Prometheus recommends for known label sets.
fn start_processes(dir: &Path, url: &str) -> Vec<Running> {
    let mut core = DeployedCore::new(dir, url, "metric-names-test-token");
    // The deployment's feed cycle is on; with no network here it reads an empty directory (each
    // feed's sync fails, counted) instead of OSV's bucket.
    core.command
        .env("FATHOM_SERVICES_FEEDS_BASE_URL", dir.join("no-feeds"));
    let worker = free_addr();
    let mut worker_cmd = fathom();
    worker_cmd
        .args(["worker", "--config"])
        .arg(repo().join("deploy/base/worker-config.yaml"))
        .args(["--metrics-address", &worker])
        .env("DATABASE_URL", url)
        .env("POD_NAME", "metric-names-worker");
    let autoscaler = free_addr();
    let mut autoscaler_cmd = fathom();
    autoscaler_cmd
        .args(["autoscaler", "--target", "local"])
        .args(["--min-replicas", "0", "--max-replicas", "1"])
        .args(["--metrics-address", &autoscaler])
        .arg("--state-dir")
        .arg(dir.join("autoscaler-state"))
        .env("DATABASE_URL", url);
    vec![
        Running::spawn("fathom run (core API)", core.command, core.api, dir),
        Running::spawn("fathom worker", worker_cmd, worker, dir),
        Running::spawn(
            "fathom autoscaler --target local",
            autoscaler_cmd,
            autoscaler,
            dir,
        ),
    ]
}

/// One metric family of a scrape: its type and the label sets of its samples (histogram samples
/// `_bucket`, `_sum`, `_count` included).
#[derive(Debug, Default)]
struct Family {
    kind: String,
    series: Vec<BTreeMap<String, String>>,
}

/// `GET http://addr/metrics`, parsed into families by name.
fn scrape(addr: &str) -> BTreeMap<String, Family> {
    let (status, body) =
        http_get(addr, "/metrics").unwrap_or_else(|| panic!("no answer from {addr}/metrics"));
    assert_eq!(status, 200, "{addr}/metrics:\n{body}");
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line has a type");
            families.entry(name.to_string()).or_default().kind = kind.to_string();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let (name, labels) = promql::sample(line)
                .unwrap_or_else(|| panic!("unparseable sample line from {addr}: {line}"));
            let family = families
                .keys()
                .filter(|f| name == **f || name.strip_prefix(f.as_str()).is_some_and(is_suffix))
                .max_by_key(|f| f.len())
                .cloned()
                .unwrap_or_else(|| panic!("sample {name} before its TYPE line from {addr}"));
            families.entry(family).or_default().series.push(labels);
        }
    }
    families
}

fn is_suffix(s: &str) -> bool {
    matches!(s, "_bucket" | "_sum" | "_count")
}

/// The family a selected name belongs to: itself, or a histogram's (summary's) `_bucket`/`_sum`/
/// `_count` series.
fn family_of<'a>(name: &str, families: &'a BTreeMap<String, Family>) -> Option<&'a Family> {
    if let Some(f) = families.get(name) {
        return Some(f);
    }
    for (suffix, kinds) in [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ] {
        if let Some(f) = name
            .strip_suffix(suffix)
            .and_then(|stem| families.get(stem))
        {
            if kinds.contains(&f.kind.as_str()) {
                return Some(f);
            }
        }
    }
    None
}

/// Every `expr` of the dashboard (panel targets at any depth, rows included).
fn dashboard_exprs(text: &str) -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let json: serde_json::Value = serde_json::from_str(text).expect("dashboard JSON");
    let mut out = Vec::new();
    walk(&json, &mut out);
    out
}

/// The `expr` values (inline or block scalars) and `record` names of a Prometheus rules file.
fn rules_exprs_and_records(text: &str) -> (Vec<String>, BTreeSet<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let (mut exprs, mut records) = (Vec::new(), BTreeSet::new());
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let indent = line.len() - line.trim_start().len();
        if let Some(name) = trimmed.strip_prefix("record:") {
            records.insert(name.trim().to_string());
        }
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let block: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(block.join("\n"));
        } else {
            exprs.push(value.trim_matches(|c| c == '"' || c == '\'').to_string());
        }
    }
    (exprs, records)
}

/// Why `selector` (used in `place`) is not backed by the scrapes, if it is not.
fn problems(
    selector: &Selector,
    place: &str,
    families: &BTreeMap<String, Family>,
    recorded: &BTreeSet<String>,
) -> Vec<String> {
    let name = selector.name.as_str();
    if recorded.contains(name)
        || EXTERNAL_METRICS
            .iter()
            .chain(PER_HOST_METRICS)
            .any(|(n, _)| *n == name)
    {
        return Vec::new();
    }
    let Some(family) = family_of(name, families) else {
        return vec![format!(
            "{place}: {name} is exported by no running fathom process"
        )];
    };
    let mut out = Vec::new();
    for m in &selector.matchers {
        if TARGET_LABELS.contains(&m.label.as_str()) {
            continue;
        }
        let values: BTreeSet<&str> = family
            .series
            .iter()
            .filter_map(|s| s.get(&m.label).map(String::as_str))
            .collect();
        if values.is_empty() {
            out.push(format!("{place}: {name} has no label {}", m.label));
        } else if m.op == "=" && !values.contains(m.value.as_str()) {
            out.push(format!(
                "{place}: {name}{{{}=\"{}\"}} matches nothing; its values are {values:?}",
                m.label, m.value
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_in_dashboards_and_rules_is_exported_by_a_running_process() {
    let db = test_db().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let processes = start_processes(dir.path(), db.url());
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for p in &processes {
        for (name, family) in scrape(&p.metrics) {
            let merged = families.entry(name).or_default();
            merged.kind = family.kind;
            merged.series.extend(family.series);
        }
    }
    let scraped: Vec<&str> = processes.iter().map(|p| p.what.as_str()).collect();

    let dashboard = std::fs::read_to_string(repo().join(DASHBOARD)).expect("dashboard");
    let rules = std::fs::read_to_string(repo().join(RULES)).expect("rules");
    let (rule_exprs, recorded) = rules_exprs_and_records(&rules);
    let mut used = Vec::new();
    for (file, exprs) in [
        (DASHBOARD, dashboard_exprs(&dashboard)),
        (RULES, rule_exprs),
    ] {
        assert!(!exprs.is_empty(), "no expressions found in {file}");
        for expr in exprs {
            let found = selectors(&expr).unwrap_or_else(|e| panic!("{file}: {e} in {expr}"));
            assert!(!found.is_empty(), "{file}: no metric selected by {expr}");
            used.extend(found.into_iter().map(|s| (format!("{file}: {expr}"), s)));
        }
    }
    let mut wrong: Vec<String> = used
        .iter()
        .flat_map(|(place, s)| problems(s, place, &families, &recorded))
        .collect();
    // Prose names metrics too (alert descriptions, panel descriptions): each `fathom_...` word must exist.
    for (file, text) in [(DASHBOARD, &dashboard), (RULES, &rules)] {
        for word in promql::words(text).filter(|w| w.starts_with("fathom_")) {
            let selector = Selector {
                name: word.to_string(),
                matchers: Vec::new(),
            };
            wrong.extend(problems(
                &selector,
                &format!("{file} (text)"),
                &families,
                &recorded,
            ));
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "names the dashboard or the rules use but no scrape of {scraped:?} backs:\n{}\n\nexported:\n{}",
        wrong.join("\n"),
        families.keys().cloned().collect::<Vec<_>>().join("\n")
    );
    let checked: BTreeSet<&str> = used.iter().map(|(_, s)| s.name.as_str()).collect();
    eprintln!("{} metric names checked against {scraped:?}", checked.len());
}

#[test]
fn selectors_are_found_through_functions_aggregations_and_grafana_variables() {
    let expr = r#"histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route!="/x",s="5"}[$__rate_interval])))
        / clamp_min(sum without (pod) (b_total), 1e-9) > 0.5 and on() max(c{m=~"p.*"}) offset 5m == 1"#;
    let found = selectors(expr).unwrap();
    let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b_total", "c"]);
    let m = &found[0].matchers;
    assert_eq!(
        (m[0].label.as_str(), m[0].op.as_str(), m[0].value.as_str()),
        ("route", "!=", "/x")
    );
    assert_eq!((m[1].label.as_str(), m[1].value.as_str()), ("s", "5"));
    assert_eq!(found[2].matchers[0].op, "=~");
    assert!(selectors("sum(x{a=\"unterminated})").is_err());
}

#[test]
fn rules_file_extraction_reads_inline_and_block_expressions() {
    let (exprs, records) = rules_exprs_and_records(
        "groups:\n  - rules:\n      - record: r:x\n        expr: sum(a)\n      - alert: A\n        expr: |\n          b\n            / c\n        for: 1m\n",
    );
    assert_eq!(exprs, ["sum(a)", "b\n/ c"]);
    assert!(records.contains("r:x"));
}
