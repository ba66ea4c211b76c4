//! Policy checks through the core: a real `fathom run` (release build) on the shared test Postgres, the
//! sample image `debian-python-npm` analyzed by a real worker and matched by the core's feed cycle
//! against a generated OSV feed (a few advisories per package of the image, so the default bundle has
//! matches to fire on), and `GET /v1/images/{digest}/check` from one client — once against a core with the
//! evaluation cache off (every check loads the facts and evaluates) and once with it on. Two bundles: the
//! built-in default and a 1,000-rule bundle with a 1,000-item whitelist, stored over the API.
//!
//! One line per (bundle, mode): `policy image=NAME rules=R matches=M eval_ms=X mode=cold|cached
//! packages=P http_p50_ms=Y`, where eval_ms is the p50 of the engine's own time (the `server-timing`
//! header: facts, evaluation or cache lookup, without HTTP and JSON) and http_p50_ms the client's.
//! Run: `cargo bench --bench policy`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use fathom_testkit::pg::TestDb;
use serde_json::{json, Value};
use support::api::{Api, Client, TOKEN};
use support::{WorkerProc, WorkerSpec};

const IMAGE: &str = "debian-python-npm";
const WINDOW: Duration = Duration::from_secs(4);
/// Advisories generated per package of the image.
const PER_PACKAGE: usize = 2;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let db = TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
        &fathom_policy::store::migrator(),
    ])
    .await
    .expect("test database");
    let seed_dir = tempfile::tempdir().expect("tempdir");
    let seeder = Api::start(seed_dir.path(), db.url(), "");
    let (digest, packages) = seed(&seeder, seed_dir.path(), db.url()).await;
    drop(seeder);
    let feed = tempfile::tempdir().expect("tempdir");
    write_feed(feed.path(), &packages);
    let cached_dir = tempfile::tempdir().expect("tempdir");
    let cached = Api::start(
        cached_dir.path(),
        db.url(),
        &format!(
            "  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [Debian, PyPI, npm]\n    \
             rematch_interval: 1s\n",
            feed.path().display()
        ),
    );
    let client = cached.client();
    let matches = matched(&client, &digest).await;
    let (status, stored) = client.post("/v1/policies", big_bundle(1000)).await;
    assert!(status.is_success(), "{stored}");
    let cold_dir = tempfile::tempdir().expect("tempdir");
    let cold = Api::start(
        cold_dir.path(),
        db.url(),
        "  policy_engine:\n    cache: false\n    history_per_image: 0\n",
    );
    for (bundle, rules) in [
        (None, fathom_policy::default_bundle().rule_count()),
        (Some("rules1000"), 1000),
    ] {
        for (mode, api) in [("cold", &cold), ("cached", &cached)] {
            let (eval, http) = measure(api, &digest, bundle).await;
            println!(
                "policy image={IMAGE} rules={rules} matches={matches} eval_ms={eval:.3} mode={mode} \
                 packages={} http_p50_ms={http:.2}",
                packages.len()
            );
        }
    }
}

/// Analyzes the sample through the API and a real worker; returns its digest and its packages.
async fn seed(api: &Api, dir: &Path, url: &str) -> (String, Vec<Value>) {
    let pushed = support::push_samples(&[IMAGE]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let worker = WorkerProc::start(dir, "bench-seed", url, &WorkerSpec::default());
    let client = api.client();
    let done = client.submit_and_wait(&reference).await;
    drop(worker);
    let digest = done["digest"].as_str().expect("digest").to_string();
    let (_, listed) = client.get(&format!("/v1/images/{digest}/packages")).await;
    let packages = listed["packages"].as_array().cloned().unwrap_or_default();
    assert!(!packages.is_empty(), "no packages listed: {listed}");
    (digest, packages)
}

/// An OSV feed directory with [`PER_PACKAGE`] advisories for every deb, Python and npm package: all
/// versions affected, every third without a fix, severities and scores rotating.
fn write_feed(dir: &Path, packages: &[Value]) {
    let vectors = [
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N",
        "CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N",
    ];
    let mut feeds: Vec<(&str, Vec<Value>)> =
        vec![("Debian", vec![]), ("PyPI", vec![]), ("npm", vec![])];
    let mut n = 0;
    for p in packages {
        // A fix version far above any installed one, valid in each ecosystem's own syntax (a record whose
        // range cannot be parsed is skipped as malformed).
        let (slot, ecosystem, fixed) = match p["package_type"].as_str().unwrap_or_default() {
            "deb" => (0, "Debian:12", "99999:99"),
            "python" => (1, "PyPI", "99999"),
            "npm" => (2, "npm", "99999.0.0"),
            _ => continue,
        };
        let mut names = vec![p["name"].as_str().unwrap_or_default().to_string()];
        if let Some(source) = p["source"].as_str().or(p["metadata"]["source"].as_str()) {
            if !names.iter().any(|n| n == source) {
                names.push(source.to_string());
            }
        }
        for _ in 0..PER_PACKAGE {
            n += 1;
            let id = format!("FATHOM-BENCH-{n:05}");
            let events = if n % 3 == 0 {
                json!([{"introduced": "0"}])
            } else {
                json!([{"introduced": "0"}, {"fixed": fixed}])
            };
            let affected: Vec<Value> = names
                .iter()
                .map(|name| {
                    json!({"package": {"ecosystem": ecosystem, "name": name},
                                   "ranges": [{"type": "ECOSYSTEM", "events": events}]})
                })
                .collect();
            feeds[slot].1.push(json!({
                "id": id, "modified": "2026-11-01T00:00:00Z", "aliases": [format!("CVE-2099-{n:05}")],
                "summary": "generated benchmark advisory (not a real vulnerability)",
                "severity": [{"type": "CVSS_V3", "score": vectors[n % vectors.len()]}],
                "affected": affected,
            }));
        }
    }
    std::fs::write(dir.join("ecosystems.txt"), "Debian\nPyPI\nnpm\n").expect("ecosystems.txt");
    for (feed, records) in feeds {
        std::fs::create_dir_all(dir.join(feed)).expect("feed dir");
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        for r in &records {
            zip.start_file(format!("{}.json", r["id"].as_str().unwrap_or("r")), options)
                .expect("zip entry");
            zip.write_all(r.to_string().as_bytes()).expect("zip write");
        }
        let bytes = zip.finish().expect("zip").into_inner();
        std::fs::write(dir.join(feed).join("all.zip"), bytes).expect("all.zip");
    }
}

/// Waits until the feed cycle has matched every package of the image; returns the match count.
async fn matched(client: &Client, digest: &str) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, body) = client
            .get(&format!("/v1/images/{digest}/vulnerabilities"))
            .await;
        let count = body["vulnerabilities"].as_array().map_or(0, Vec::len);
        if body["matched"] == true && count > 0 {
            return count;
        }
        if Instant::now() >= deadline {
            let (_, feeds) = client.get("/v1/feeds").await;
            panic!("the image was never matched: {body}\nfeeds: {feeds}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Sequential checks for [`WINDOW`] after a short warm-up; (p50 of the engine's time, p50 over HTTP).
async fn measure(api: &Api, digest: &str, policy_id: Option<&str>) -> (f64, f64) {
    let http = reqwest::Client::new();
    let mut url = format!("{}/v1/images/{digest}/check", api.base);
    if let Some(id) = policy_id {
        url.push_str(&format!("?policy_id={id}"));
    }
    let (mut engine, mut total) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while started.elapsed() < WINDOW + Duration::from_millis(500) {
        let sent = Instant::now();
        let response = http
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("check");
        assert!(response.status().is_success(), "{}", response.status());
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("dur=").nth(1))
            .and_then(|d| d.parse::<f64>().ok())
            .expect("server-timing header");
        response.bytes().await.expect("evaluation");
        if started.elapsed() > Duration::from_millis(500) {
            engine.push(timing);
            total.push(sent.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (p50(&mut engine), p50(&mut total))
}

/// `rules` rules over four gates (a quarter of them vulnerability rules) and a 1,000-item whitelist.
fn big_bundle(rules: usize) -> Value {
    let severities = ["low", "medium", "high", "critical"];
    let rules: Vec<_> = (0..rules)
        .map(|i| match i % 4 {
            0 => json!({"id": format!("r{i}"), "gate": "vulnerabilities", "trigger": "package", "action": "WARN",
                        "params": [{"name": "package_type", "value": "all"}, {"name": "severity_comparison", "value": ">="},
                                   {"name": "severity", "value": severities[i / 4 % 4]},
                                   {"name": "cvss_v3_base_score", "value": format!("{}", i % 10)}]}),
            1 => json!({"id": format!("r{i}"), "gate": "metadata", "trigger": "attribute", "action": "WARN",
                        "params": [{"name": "attribute", "value": "size"}, {"name": "check", "value": ">"},
                                   {"name": "value", "value": format!("{i}MB")}]}),
            2 => json!({"id": format!("r{i}"), "gate": "packages", "trigger": "blacklist", "action": "STOP",
                        "params": [{"name": "name", "value": format!("pkg{i}")}]}),
            _ => json!({"id": format!("r{i}"), "gate": "dockerfile", "trigger": "exposed_ports", "action": "STOP",
                        "params": [{"name": "ports", "value": format!("{}", 1000 + i)}, {"name": "type", "value": "blacklist"}]}),
        })
        .collect();
    let items: Vec<_> = (0..1000)
        .map(|i| json!({"id": format!("i{i}"), "gate": "vulnerabilities", "trigger_id": format!("CVE-2099-{i:05}+*")}))
        .collect();
    json!({
        "id": "rules1000", "version": "1_0",
        "policies": [{"id": "p", "version": "1_0", "rules": rules}],
        "whitelists": [{"id": "w", "version": "1_0", "items": items}],
        "mappings": [{"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p", "whitelist_ids": ["w"]}],
    })
}
