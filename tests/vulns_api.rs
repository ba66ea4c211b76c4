//! Vulnerabilities end to end over the API: sample images pushed to a real registry and analyzed by a real
//! worker, a core whose feed cycle syncs a generated OSV feed directory (sample data: no feed can be
//! downloaded here) and matches the images, the answers read through `/v1`, and a feed update that
//! changes an answer with no new analysis.

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::osv;
use fathom_testkit::pg::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::{WorkerProc, WorkerSpec};

/// A database with the queue's, the store's and the feeds' migrations (what `fathom migrate` applies).
async fn db() -> TestDb {
    TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
    ])
    .await
    .expect("test database")
}

/// `services.feeds` lines turning the core's cycle on over the sample feed in `feed`.
fn feeds_section(feed: &std::path::Path) -> String {
    format!(
        "  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [{}]\n    rematch_interval: 1s\n",
        feed.display(),
        osv::SAMPLE_FEEDS.join(", ")
    )
}

/// Submits `reference` and waits until it is analyzed; returns the image's digest.
async fn analyze(client: &Client, reference: &str) -> String {
    let (status, submitted) = client
        .post("/v1/images", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let job = submitted["job_id"].as_i64().unwrap();
    let done = poll(client, &format!("/v1/images/by-job/{job}"), |e| {
        matches!(e["status"].as_str(), Some("analyzed" | "failed"))
    })
    .await;
    assert_eq!(done["status"], "analyzed", "{done}");
    done["digest"].as_str().unwrap().to_string()
}

async fn poll(client: &Client, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, answer) = client.get(path).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never got there: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The image's matches once the core's cycle has indexed it.
async fn vulns(client: &Client, digest: &str, query: &str) -> Vec<Value> {
    let answer = poll(
        client,
        &format!("/v1/images/{digest}/vulnerabilities{query}"),
        |a| a["matched"] == true,
    )
    .await;
    answer["vulnerabilities"].as_array().unwrap().clone()
}

fn find<'a>(matches: &'a [Value], id: &str) -> Option<&'a Value> {
    matches.iter().find(|m| m["id"] == id)
}

fn ids(matches: &[Value]) -> Vec<&str> {
    let mut v: Vec<&str> = matches.iter().filter_map(|m| m["id"].as_str()).collect();
    v.sort();
    v.dedup();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_syncs_matches_and_serves_vulnerabilities_by_image_and_by_id() {
    let db = db().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let pushed = support::push_samples(&["debian-python-npm", "debian-java-go"]).await;
    let api = Api::start(dir.path(), db.url(), &feeds_section(feed.path()));
    let client = api.client();
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let mut digests = Vec::new();
    for (path, _) in &pushed {
        digests.push(analyze(&client, &format!("{}/{path}", support::registry())).await);
    }
    let python = &digests[0];
    assert_eq!(
        ids(&vulns(&client, &digests[1], "").await),
        [osv::GLIBC],
        "debian-java-go carries glibc only"
    );

    let all = vulns(&client, python, "").await;
    assert_eq!(
        ids(&all),
        [osv::GLIBC, osv::FOLLOW_REDIRECTS, osv::PYGMENTS],
        "numpy 2.1.3 is past the sample's fix, and the Alpine record is not for Debian: {all:#?}"
    );
    // Debian advisories are keyed by source package: libc-bin and libc6 are built from glibc.
    let glibc_packages: Vec<&Value> = all
        .iter()
        .filter(|m| m["id"] == osv::GLIBC)
        .map(|m| &m["package"]["name"])
        .collect();
    assert_eq!(glibc_packages, [&json!("libc-bin"), &json!("libc6")]);
    let glibc = find(&all, osv::GLIBC).unwrap();
    assert_eq!(glibc["package"]["version"], "2.36-9+deb12u14");
    assert_eq!(glibc["namespace"], "Debian:12");
    assert_eq!(glibc["severity"], "critical");
    assert_eq!(glibc["cvss_score"], 9.8);
    assert_eq!(glibc["aliases"], json!([osv::alias(osv::GLIBC)]));
    assert_eq!(
        glibc["fix"],
        json!({"state": "fixed", "versions": ["2.36-9+deb12u15"]})
    );
    assert!(glibc["fix_observed_at"].is_string(), "{glibc}");
    assert_eq!(
        find(&all, osv::PYGMENTS).unwrap()["fix"]["state"],
        "not-fixed"
    );
    // Most severe first.
    assert_eq!(all[0]["id"], osv::GLIBC);

    let os = vulns(&client, python, "?type=os").await;
    assert_eq!(ids(&os), [osv::GLIBC]);
    let non_os = vulns(&client, python, "?type=non-os").await;
    assert_eq!(ids(&non_os), [osv::FOLLOW_REDIRECTS, osv::PYGMENTS]);
    let fixed = vulns(&client, python, "?fixed_only=true").await;
    assert_eq!(ids(&fixed), [osv::GLIBC, osv::FOLLOW_REDIRECTS]);
    let high = vulns(&client, python, "?min_severity=high").await;
    assert_eq!(ids(&high), [osv::GLIBC, osv::PYGMENTS]);

    // By id and by alias, fleet-wide, paged by digest.
    let (_, first) = client
        .get(&format!(
            "/v1/vulnerabilities/{}/images?limit=1",
            osv::alias(osv::GLIBC)
        ))
        .await;
    let next = first["next"].as_str().expect("a second page").to_string();
    let (_, second) = client
        .get(&format!(
            "/v1/vulnerabilities/{}/images?limit=1&cursor={next}",
            osv::alias(osv::GLIBC)
        ))
        .await;
    assert!(second["next"].is_null(), "{second}");
    let mut carriers: Vec<&str> = [&first, &second]
        .iter()
        .flat_map(|p| p["items"].as_array().unwrap())
        .map(|h| h["manifest_digest"].as_str().unwrap())
        .collect();
    carriers.sort();
    let mut expected: Vec<&str> = digests.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(carriers, expected);
    assert_eq!(first["items"][0]["ids"], json!([osv::GLIBC]));
    assert_eq!(
        first["items"][0]["packages"],
        json!(["libc-bin@2.36-9+deb12u14", "libc6@2.36-9+deb12u14"])
    );
    let (_, only_python) = client
        .get(&format!(
            "/v1/vulnerabilities/{}/images",
            osv::FOLLOW_REDIRECTS
        ))
        .await;
    assert_eq!(only_python["items"].as_array().unwrap().len(), 1);
    assert_eq!(only_python["items"][0]["manifest_digest"], *python);
    let (_, nobody) = client
        .get(&format!("/v1/vulnerabilities/{}/images", osv::NUMPY_OLD))
        .await;
    assert_eq!(nobody["items"], json!([]), "{nobody}");

    let (status, feeds) = client.get("/v1/feeds").await;
    assert_eq!(status, StatusCode::OK);
    let feeds = feeds["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), osv::SAMPLE_FEEDS.len(), "{feeds:?}");
    for f in feeds {
        assert!(f["generation"].is_i64(), "{f}");
        assert!(f["last_success_at"].is_string(), "{f}");
        assert!(f["last_error"].is_null(), "{f}");
    }
    let pypi = feeds.iter().find(|f| f["feed"] == "PyPI").unwrap();
    assert_eq!(pypi["records"], 2);

    let (_, metrics) = client.get("/metrics").await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "fathom_feed_sync_total{feed=\"PyPI\",outcome=\"updated\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "fathom_feed_records{feed=\"PyPI\"} 2"),
        "{metrics}"
    );
    let age = support::metric(metrics, "fathom_feed_age_seconds{feed=\"Debian\"}");
    assert!(age.is_finite() && age >= 0.0, "{age}");
    // Distinct keys × records: glibc's source key (libc6 and libc-bin share it), pygments, follow-redirects.
    // The gauge is set at the end of the round that matched, so it may trail the answers briefly.
    let matches = poll(&client, "/metrics", |m| {
        support::metric(m.as_str().unwrap_or_default(), "fathom_vuln_matches ") == 3.0
    })
    .await;
    assert!(matches.is_string());

    // Bad questions answer 400/404 with the field named.
    let (status, bad) = client
        .get(&format!("/v1/images/{python}/vulnerabilities?type=kernel"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    assert!(bad["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("type:"));
    let (status, bad) = client
        .get(&format!(
            "/v1/images/{python}/vulnerabilities?min_severity=bad"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let missing = format!("sha256:{}", "0".repeat(64));
    let (status, _) = client
        .get(&format!("/v1/images/{missing}/vulnerabilities"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = client.get("/v1/vulnerabilities/X/images?cursor=nope").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_update_changes_the_answer_without_a_new_analysis() {
    let db = db().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let api = Api::start(dir.path(), db.url(), &feeds_section(feed.path()));
    let client = api.client();
    let mut worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let digest = analyze(&client, &format!("{}/{}", support::registry(), pushed[0].0)).await;
    let before = vulns(&client, &digest, "").await;
    assert_eq!(
        find(&before, osv::PYGMENTS).unwrap()["fix"]["state"],
        "not-fixed"
    );
    // No analyzer from here on: whatever changes, changes without one.
    worker.signal("TERM");
    assert!(worker.wait_exit(Duration::from_secs(30)).is_some());
    let (_, image_before) = client.get(&format!("/v1/images/{digest}")).await;
    let (_, queue_before) = client.get("/v1/queue").await;

    // The feed's second edition adds the pygments fix; `fathom vulns sync` stores it and re-matches
    // (waiting for the core's round if it holds the feed lock).
    osv::write_sample_feed(feed.path(), true).unwrap();
    let out = support::fathom()
        .args([
            "vulns",
            "sync",
            "--json",
            "--database-url",
            db.url(),
            "--from",
        ])
        .arg(feed.path())
        .args(["--ecosystems", &osv::SAMPLE_FEEDS.join(",")])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report}");
    let pypi = report["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feed"] == "PyPI")
        .unwrap();
    assert_eq!(pypi["outcome"], "updated", "{report}");
    let debian = report["feeds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feed"] == "Debian")
        .unwrap();
    assert_eq!(debian["outcome"], "unchanged", "{report}");

    let after = vulns(&client, &digest, "").await;
    assert_eq!(
        find(&after, osv::PYGMENTS).unwrap()["fix"],
        json!({"state": "fixed", "versions": ["2.19.0"]}),
        "{after:#?}"
    );
    assert_eq!(ids(&after), ids(&before));
    let fixed = vulns(&client, &digest, "?fixed_only=true").await;
    assert!(find(&fixed, osv::PYGMENTS).is_some());
    let (_, image_after) = client.get(&format!("/v1/images/{digest}")).await;
    assert_eq!(image_after["analyzed_at"], image_before["analyzed_at"]);
    let (_, queue_after) = client.get("/v1/queue").await;
    for state in ["ready", "scheduled", "running", "succeeded", "failed"] {
        assert_eq!(
            queue_after[state], queue_before[state],
            "no job was queued or run: {state}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_reports_what_a_partial_mirror_does_not_offer_without_failing_or_staleness() {
    let db = db().await;
    let dir = tempfile::tempdir().unwrap();
    // The sample feed's `ecosystems.txt` lists Debian, Alpine, PyPI and npm: a mirror of those only.
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let section = format!(
        "  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [PyPI, Go, crates.io]\n    rematch_interval: 1s\n",
        feed.path().display()
    );
    let api = Api::start(dir.path(), db.url(), &section);
    let client = api.client();
    let synced = poll(&client, "/v1/feeds", |f| {
        f["feeds"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;
    for f in synced["feeds"].as_array().unwrap() {
        assert!(f["last_error"].is_null(), "{f}");
        let want = if f["feed"] == "PyPI" {
            "ok"
        } else {
            "not_offered"
        };
        assert_eq!(f["status"], want, "{f}");
    }
    // The age gauge stays for what is offered and is absent for the rest, so the stale-feed alert
    // (`min by (feed) (fathom_feed_age_seconds) > 2d`) cannot fire for Go; no sync counted as failed.
    let metrics = poll(&client, "/metrics", |m| {
        !m.as_str()
            .unwrap_or_default()
            .contains("fathom_feed_age_seconds{feed=\"Go\"}")
    })
    .await;
    let metrics = metrics.as_str().unwrap();
    for feed in ["Go", "crates.io"] {
        let series = format!("fathom_feed_sync_total{{feed=\"{feed}\",outcome=\"not_offered\"}}");
        assert_eq!(support::metric(metrics, &series), 1.0, "{metrics}");
        let failed = format!("fathom_feed_sync_total{{feed=\"{feed}\",outcome=\"failed\"}}");
        assert_eq!(support::metric(metrics, &failed), 0.0, "{metrics}");
        assert!(
            !metrics.contains(&format!("fathom_feed_age_seconds{{feed=\"{feed}\"}}")),
            "{metrics}"
        );
    }
    let age = support::metric(metrics, "fathom_feed_age_seconds{feed=\"PyPI\"}");
    assert!(age.is_finite() && age >= 0.0, "{age}");
}

/// The core's log lines from the feed cycle (`feed cycle: ...` warnings), waiting up to 30 s for at
/// least `n`.
async fn feed_cycle_warnings(api: &Api, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Logs go to stderr (`core.err` beside the stdout log).
        let log = std::fs::read_to_string(api.log.with_file_name("core.err")).unwrap_or_default();
        let lines: Vec<String> = log
            .lines()
            .filter(|l| l.contains("feed cycle:"))
            .map(str::to_string)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "no feed cycle warning:\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_cycle_blames_the_database_when_it_is_down_and_migrations_only_when_tables_are_missing(
) {
    use fathom_testkit::pg::{Durability, OwnedCluster};
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();

    // Reachable, but the feeds' migrations never ran: that is what `fathom migrate` fixes.
    let unmigrated =
        TestDb::create(&[&fathom_queue::migrator(), &fathom_worker::store::migrator()])
            .await
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), unmigrated.url(), &feeds_section(feed.path()));
    let warning = feed_cycle_warnings(&api, 1).await.remove(0);
    assert!(warning.contains("has `fathom migrate` run?"), "{warning}");
    drop(api);

    // Migrated, then Postgres stops: the database is the problem, not the migrations.
    let cluster = tokio::task::spawn_blocking(|| OwnedCluster::start(Durability::Throwaway))
        .await
        .unwrap()
        .expect("a cluster of our own to stop");
    let url = cluster.info().url("postgres");
    let out = support::cli(&url, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &url, &feeds_section(feed.path()));
    let client = api.client();
    poll(&client, "/v1/feeds", |f| {
        f["feeds"]
            .as_array()
            .is_some_and(|a| a.len() == osv::SAMPLE_FEEDS.len())
    })
    .await;
    let before = feed_cycle_warnings(&api, 0).await.len();
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop postgres");
        cluster
    })
    .await
    .unwrap();
    let warning = feed_cycle_warnings(&api, before + 1).await.remove(before);
    assert!(!warning.contains("fathom migrate"), "{warning}");
    assert!(warning.contains("the database did not answer"), "{warning}");
}
