//! `fathom vulns` end to end on a real Postgres: a generated OSV feed directory (labelled sample data: no
//! feed can be downloaded here) is synced, a malformed record is counted without failing the sync, an
//! unchanged feed is not stored again, `fathom vulns feeds` reports the generation, and a partial mirror's
//! unlisted ecosystems are `not_offered`, not failed.

mod support;

use std::io::Write;

use support::{fathom, test_db};

/// Writes `<dir>/ecosystems.txt` and `<dir>/PyPI/all.zip` with two good records and one broken one.
fn write_feed(dir: &std::path::Path) {
    std::fs::write(dir.join("ecosystems.txt"), "PyPI\n").unwrap();
    std::fs::create_dir_all(dir.join("PyPI")).unwrap();
    let file = std::fs::File::create(dir.join("PyPI/all.zip")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in [
        (
            "SAMPLE-0001.json",
            r#"{"id":"SAMPLE-0001","modified":"2026-11-01T00:00:00Z","aliases":["CVE-2099-0001"],
               "affected":[{"package":{"ecosystem":"PyPI","name":"requests"},
               "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.31.0"}]}]}]}"#,
        ),
        (
            "SAMPLE-0002.json",
            r#"{"id":"SAMPLE-0002","modified":"2026-11-01T00:00:00Z",
               "affected":[{"package":{"ecosystem":"PyPI","name":"urllib3"},"versions":["1.26.0"]}]}"#,
        ),
        ("SAMPLE-BROKEN.json", r#"{"id": 7, "affected": "#),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

fn vulns(url: &str, args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = fathom()
        .arg("vulns")
        .args(args)
        .args(["--json", "--database-url", url])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), json, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_from_a_directory_counts_bad_records_and_skips_unchanged_feeds() {
    let db = test_db().await;
    let migrate = fathom()
        .args(["migrate", "--database-url", db.url()])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let feed = tempfile::tempdir().unwrap();
    write_feed(feed.path());
    let from = feed.path().to_str().unwrap();

    let (ok, report, stderr) = vulns(db.url(), &["sync", "--from", from, "--ecosystems", "PyPI"]);
    assert!(ok, "{report}\n{stderr}");
    let pypi = &report["feeds"][0];
    assert_eq!(pypi["feed"], "PyPI", "{report}");
    assert_eq!(pypi["records"], 2, "{report}");
    assert_eq!(pypi["malformed"], 1, "{report}");

    // Nothing changed: the second sync stores nothing new.
    let (ok, again, _) = vulns(db.url(), &["sync", "--from", from, "--ecosystems", "PyPI"]);
    assert!(ok);
    assert!(
        again["feeds"][0]["records"].is_null(),
        "unchanged feed stored again: {again}"
    );

    let (ok, feeds, _) = vulns(db.url(), &["feeds"]);
    assert!(ok);
    let text = feeds.to_string();
    assert!(text.contains("PyPI"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_feed_fails_the_sync_with_its_name() {
    let db = test_db().await;
    let migrate = fathom()
        .args(["migrate", "--database-url", db.url()])
        .output()
        .unwrap();
    assert!(migrate.status.success());
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("ecosystems.txt"), "PyPI\n").unwrap();
    let (ok, report, _) = vulns(
        db.url(),
        &[
            "sync",
            "--from",
            empty.path().to_str().unwrap(),
            "--ecosystems",
            "PyPI",
        ],
    );
    assert!(!ok, "a feed without all.zip must fail the sync: {report}");
    assert!(report.to_string().contains("PyPI"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecosystems_a_partial_mirror_does_not_list_are_not_offered_not_failed() {
    let db = test_db().await;
    let migrate = fathom()
        .args(["migrate", "--database-url", db.url()])
        .output()
        .unwrap();
    assert!(migrate.status.success());
    // An air-gapped mirror of PyPI only (its `ecosystems.txt` lists only PyPI).
    let feed = tempfile::tempdir().unwrap();
    write_feed(feed.path());
    let from = feed.path().to_str().unwrap();
    let (ok, report, stderr) = vulns(
        db.url(),
        &["sync", "--from", from, "--ecosystems", "PyPI,Debian,npm"],
    );
    assert!(
        ok,
        "a partial mirror is not a failed sync: {report}\n{stderr}"
    );
    let outcome = |r: &serde_json::Value, feed: &str| {
        r["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feed"] == feed)
            .unwrap_or_else(|| panic!("{feed} missing: {r}"))
            .clone()
    };
    assert_eq!(outcome(&report, "PyPI")["outcome"], "updated", "{report}");
    for feed in ["Debian", "npm"] {
        let f = outcome(&report, feed);
        assert_eq!(f["outcome"], "not_offered", "{report}");
        assert!(f["error"].is_null(), "{report}");
    }
    assert!(!stderr.contains("feed sync failed"), "{stderr}");

    let (ok, feeds, _) = vulns(db.url(), &["feeds"]);
    assert!(ok);
    let listed = serde_json::json!({"feeds": feeds});
    let debian = outcome(&listed, "Debian");
    assert_eq!(debian["status"], "not_offered", "{feeds}");
    assert!(debian["last_error"].is_null(), "{feeds}");
    assert!(debian["last_checked_at"].is_string(), "{feeds}");
    assert_eq!(outcome(&listed, "PyPI")["status"], "ok", "{feeds}");

    // The mirror starts offering Debian (listed, but its zip is broken): now it is a failure.
    std::fs::write(feed.path().join("ecosystems.txt"), "PyPI\nDebian\n").unwrap();
    let (ok, report, _) = vulns(
        db.url(),
        &["sync", "--from", from, "--ecosystems", "PyPI,Debian"],
    );
    assert!(!ok, "{report}");
    assert_eq!(outcome(&report, "Debian")["outcome"], "failed", "{report}");
    let (_, feeds, _) = vulns(db.url(), &["feeds"]);
    let listed = serde_json::json!({"feeds": feeds});
    assert_eq!(outcome(&listed, "Debian")["status"], "failed", "{feeds}");
}
