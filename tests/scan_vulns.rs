//! `fathom scan SOURCE --vulns-from URL_OR_DIR`: standalone matching against the testkit's generated OSV
//! feed, served by a real local HTTP server and read from a directory, on generated sample images, through
//! the real binary. The CycloneDX output goes through the upstream validator.

mod support;

use std::collections::BTreeSet;
use std::process::Output;

use fathom_testkit::osv::{alias, FOLLOW_REDIRECTS, GLIBC, NUMPY_OLD, OPENSSL, PYGMENTS};
use serde_json::Value;
use support::fathom;
use support::osv_server::{oci_dir, sample, FeedServer};

fn scan(source: &str, from: &str, output: &str) -> Output {
    fathom()
        .args(["scan", source, "-o", output, "--vulns-from", from])
        .output()
        .unwrap()
}

fn ok(out: &Output) -> &[u8] {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    &out.stdout
}

/// (id, package name) pairs of a JSON output.
fn pairs(doc: &Value) -> BTreeSet<(String, String)> {
    doc["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap().to_string(),
                v["package"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_has_the_api_match_shape_over_http_and_from_a_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = FeedServer::start(&tmp.path().join("feed")).await;
    let source = oci_dir(&tmp.path().join("image"), &sample("debian-python-npm"));

    let over_http: Value = serde_json::from_slice(ok(&scan(&source, &feed.url, "json"))).unwrap();
    // The SBOM document is still all there.
    assert!(over_http["packages"].as_array().unwrap().len() > 50);
    let want: BTreeSet<(String, String)> = [
        (GLIBC, "libc-bin"),
        (GLIBC, "libc6"),
        (FOLLOW_REDIRECTS, "follow-redirects"),
        (PYGMENTS, "pygments"),
    ]
    .iter()
    .map(|(i, n)| (i.to_string(), n.to_string()))
    .collect();
    assert_eq!(
        pairs(&over_http),
        want,
        "numpy 2.1.3 is past {NUMPY_OLD}'s fix"
    );

    let vulns = over_http["vulnerabilities"].as_array().unwrap();
    // Highest CVSS first, like the API.
    assert_eq!(vulns[0]["id"], GLIBC);
    let libc6 = vulns
        .iter()
        .find(|v| v["package"]["name"] == "libc6")
        .unwrap();
    assert_eq!(libc6["aliases"], serde_json::json!([alias(GLIBC)]));
    assert_eq!(libc6["package"]["version"], "2.36-9+deb12u14");
    assert_eq!(libc6["package"]["type"], "deb");
    assert!(libc6["package"]["purl"]
        .as_str()
        .unwrap()
        .starts_with("pkg:deb/debian/libc6@"));
    assert!(libc6["package"]["layer"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(libc6["namespace"], "Debian:12");
    assert_eq!(libc6["severity"], "critical");
    assert_eq!(libc6["cvss_score"], 9.8);
    assert_eq!(
        libc6["fix"],
        serde_json::json!({"state": "fixed", "versions": ["2.36-9+deb12u15"]})
    );
    assert!(libc6["fix_observed_at"].is_null());
    assert_eq!(
        libc6["urls"],
        serde_json::json!([format!("https://example.invalid/advisories/{GLIBC}")])
    );
    let pygments = vulns.iter().find(|v| v["id"] == PYGMENTS).unwrap();
    assert_eq!(
        pygments["fix"],
        serde_json::json!({"state": "not-fixed", "versions": []})
    );
    assert_eq!(pygments["namespace"], "PyPI");

    // Only the ecosystems the image has packages in were fetched: no Alpine.
    let asked = feed.requests();
    for needed in ["/Debian/all.zip", "/PyPI/all.zip", "/npm/all.zip"] {
        assert!(asked.iter().any(|p| p == needed), "{asked:?}");
    }
    assert!(!asked.iter().any(|p| p.starts_with("/Alpine")), "{asked:?}");
    assert_eq!(
        over_http["vulnerability_feeds"]["missing"],
        serde_json::json!([])
    );

    // The same feed read from the directory gives the same matches.
    let from_dir: Value =
        serde_json::from_slice(ok(&scan(&source, &feed.dir.display().to_string(), "json")))
            .unwrap();
    assert_eq!(from_dir["vulnerabilities"], over_http["vulnerabilities"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cyclonedx_vulnerabilities_validate_and_affect_the_matched_components() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = FeedServer::start(&tmp.path().join("feed")).await;
    let source = oci_dir(&tmp.path().join("image"), &sample("alpine-apk"));
    let out = scan(&source, &feed.url, "cyclonedx-json");
    let file = tmp.path().join("bom.json");
    std::fs::write(&file, ok(&out)).unwrap();
    if let Err(findings) = fathom_testkit::validate::cyclonedx(&file) {
        panic!("CycloneDX validation: {findings}");
    }
    let bom: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 1, "{vulns:?}");
    let v = &vulns[0];
    assert_eq!(v["id"], OPENSSL);
    assert_eq!(v["ratings"][0]["severity"], "high");
    assert_eq!(v["references"][0]["id"], alias(OPENSSL));
    assert_eq!(v["references"][0]["source"]["name"], "NVD");
    // libssl3 and libcrypto3 both come from openssl: each affect points at its own component.
    let components = bom["components"].as_array().unwrap();
    let mut affected = BTreeSet::new();
    for a in v["affects"].as_array().unwrap() {
        let c = components
            .iter()
            .find(|c| c["bom-ref"] == a["ref"])
            .unwrap_or_else(|| panic!("no component {}", a["ref"]));
        assert_eq!(a["versions"][0]["version"], c["version"]);
        assert_eq!(a["versions"][0]["status"], "affected");
        assert_eq!(a["versions"][1]["version"], "3.1.4-r6");
        affected.insert(c["name"].as_str().unwrap().to_string());
    }
    assert_eq!(
        affected,
        BTreeSet::from(["libcrypto3".to_string(), "libssl3".to_string()])
    );
    // An Alpine image needs only the Alpine feed.
    let asked = feed.requests();
    assert!(
        asked
            .iter()
            .all(|p| p == "/ecosystems.txt" || p.starts_with("/Alpine/")),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_lists_id_package_installed_fixed_in_and_severity() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = FeedServer::start(&tmp.path().join("feed")).await;
    let source = oci_dir(&tmp.path().join("image"), &sample("debian-python-npm"));
    let out = scan(&source, &feed.url, "table");
    let text = String::from_utf8(ok(&out).to_vec()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        ["ID", "PACKAGE", "INSTALLED", "FIXED IN", "SEVERITY"]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows.contains(&vec![
            FOLLOW_REDIRECTS,
            "follow-redirects",
            "1.15.9",
            "1.15.10",
            "medium"
        ]),
        "{text}"
    );
    assert!(
        rows.contains(&vec![
            GLIBC,
            "libc6",
            "2.36-9+deb12u14",
            "2.36-9+deb12u15",
            "critical"
        ]),
        "{text}"
    );
    // No fix: the FIXED IN cell is empty.
    assert!(
        rows.contains(&vec![PYGMENTS, "pygments", "2.18.0", "high"]),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_feed_fails_naming_it_and_spdx_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = FeedServer::start(&tmp.path().join("feed")).await;
    std::fs::write(feed.dir.join("npm/all.zip"), b"this is not a zip").unwrap();
    let source = oci_dir(&tmp.path().join("image"), &sample("debian-python-npm"));
    let out = scan(&source, &feed.url, "json");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("feed npm"), "{stderr}");
    assert!(out.stdout.is_empty());

    let out = scan(&source, &feed.url, "spdx-json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("SPDX"));
}

/// The standalone matcher and the Postgres fleet matcher answer the same for the same image and feed:
/// the sample images are scanned standalone, their documents stored, the feed synced and the fleet
/// matched, and `vulns_for_image` compared with the standalone `vulnerabilities` (`fix_observed_at` aside,
/// which only the database knows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_matches_equal_the_fleet_matchers() {
    let tmp = tempfile::tempdir().unwrap();
    let feed = FeedServer::start(&tmp.path().join("feed")).await;
    let db = support::test_db().await;
    let store = fathom_worker::store::Store::connect_lazy(db.url(), 2).unwrap();
    let mut standalone = Vec::new();
    for name in [
        "debian-python-npm",
        "debian-java-go",
        "alpine-apk",
        "rocky-rpm",
    ] {
        let source = oci_dir(&tmp.path().join(name), &sample(name));
        let doc: Value =
            serde_json::from_slice(ok(&scan(&source, &feed.dir.display().to_string(), "json")))
                .unwrap();
        let analysis: fathom_analyzer::ImageAnalysis = serde_json::from_value(doc.clone()).unwrap();
        let mut conn = store.pool().acquire().await.unwrap();
        fathom_worker::store::save_analysis_in(
            &mut conn,
            &analysis,
            &format!("example.invalid/{name}:v1"),
            fathom_worker::store::Timings {
                queue_wait: std::time::Duration::ZERO,
                analysis: std::time::Duration::ZERO,
            },
        )
        .await
        .unwrap();
        standalone.push((name, analysis.image.manifest_digest.clone(), doc));
    }
    let config = fathom_vulns::VulnsConfig {
        base_url: feed.dir.display().to_string(),
        ecosystems: fathom_testkit::osv::SAMPLE_FEEDS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..fathom_vulns::VulnsConfig::default()
    };
    let synced = fathom_vulns::Feeds::sync(store.pool(), &config, &|_| {})
        .await
        .unwrap();
    assert!(!synced.failed(), "{synced:?}");
    fathom_vulns::Matcher::rematch(store.pool()).await.unwrap();
    let mut total = 0;
    for (name, digest, doc) in standalone {
        let stored = fathom_vulns::queries::vulns_for_image(
            store.pool(),
            &digest,
            &fathom_vulns::queries::ImageFilter::default(),
        )
        .await
        .unwrap();
        let mut stored = serde_json::to_value(stored).unwrap();
        for m in stored.as_array_mut().unwrap() {
            assert!(m["fix"]["state"] != "fixed" || m["fix_observed_at"].is_string());
            m["fix_observed_at"] = Value::Null;
        }
        assert_eq!(doc["vulnerabilities"], stored, "{name}");
        total += stored.as_array().unwrap().len();
    }
    // debian-python-npm 4, debian-java-go 2 (glibc), alpine-apk 2 (openssl), rocky-rpm none.
    assert_eq!(total, 8);
}
