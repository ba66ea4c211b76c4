//! Feed IO without a database: conditional HTTP against a real local server, directories, and the zip
//! reader's handling of malformed, oversized and non-zip input.

mod support;

use fathom_vulns::feed::{read_zip, Fetched, Source, Validators};
use serde_json::json;
use std::time::Duration;
use support::{osv_zip, record, FeedServer};

#[tokio::test]
async fn unchanged_feed_costs_one_request_answered_304() {
    let server = FeedServer::default();
    server.put(
        "PyPI/all.zip",
        osv_zip(
            &[record(
                "GHSA-1",
                &["CVE-1"],
                "PyPI",
                "django",
                Some("4.2.1"),
            )],
            &[],
        ),
    );
    server.put("Rocky Linux/all.zip", b"x".to_vec()); // axum decodes the %20 the client sent
    let base = server.start().await;
    let source = Source::new(&base, Duration::from_secs(10)).unwrap();

    let Fetched::Fresh {
        file,
        bytes,
        validators,
    } = source
        .fetch("PyPI", &Validators::default(), 1 << 20)
        .await
        .unwrap()
    else {
        panic!("first fetch must download");
    };
    assert!(bytes > 0 && validators.etag.is_some());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), bytes);
    assert!(matches!(
        source.fetch("PyPI", &validators, 1 << 20).await.unwrap(),
        Fetched::NotModified
    ));
    assert_eq!(server.requests(), 2);
    assert_eq!(
        server
            .not_modified
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // A changed feed downloads again; names with spaces are encoded.
    server.put("PyPI/all.zip", osv_zip(&[], &[]));
    assert!(matches!(
        source.fetch("PyPI", &validators, 1 << 20).await.unwrap(),
        Fetched::Fresh { .. }
    ));
    assert!(matches!(
        source
            .fetch("Rocky Linux", &Validators::default(), 1 << 20)
            .await
            .unwrap(),
        Fetched::Fresh { .. }
    ));
    // Too large and missing feeds fail naming the ecosystem.
    let e = source
        .fetch("Rocky Linux", &Validators::default(), 0)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("feed Rocky Linux:") && e.contains("larger"),
        "{e}"
    );
    let e = source
        .fetch("Nope", &Validators::default(), 1 << 20)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("feed Nope:") && e.contains("404"), "{e}");
}

#[tokio::test]
async fn directories_work_like_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("npm")).unwrap();
    std::fs::write(dir.path().join("ecosystems.txt"), "npm\nPyPI\n\n").unwrap();
    std::fs::write(dir.path().join("npm/all.zip"), osv_zip(&[], &[])).unwrap();
    for base in [
        dir.path().display().to_string(),
        format!("file://{}", dir.path().display()),
    ] {
        let source = Source::new(&base, Duration::from_secs(10)).unwrap();
        assert_eq!(source.ecosystems().await.unwrap(), ["npm", "PyPI"]);
        let Fetched::Fresh { validators, .. } = source
            .fetch("npm", &Validators::default(), 1 << 20)
            .await
            .unwrap()
        else {
            panic!("fresh");
        };
        assert!(matches!(
            source.fetch("npm", &validators, 1 << 20).await.unwrap(),
            Fetched::NotModified
        ));
    }
}

#[test]
fn reader_skips_and_names_bad_entries_and_rejects_non_zips() {
    let dir = tempfile::tempdir().unwrap();
    let big = json!({"id": "BIG", "summary": "x".repeat(5000)});
    let zip = osv_zip(
        &[
            record("GOOD-1", &[], "npm", "a", None),
            big,
            record("GOOD-2", &[], "npm", "b", Some("1.0.0")),
        ],
        &[
            (
                "bad.json",
                br#"{"id":"BAD-1","affected":[{"ranges":[{"events":[{"introduced":"0"}]}]}]}"#,
            ),
            ("junk.json", b"{not json"),
        ],
    );
    let path = dir.path().join("all.zip");
    std::fs::write(&path, zip).unwrap();
    let mut ids = vec![];
    let stats = read_zip(&path, "npm", 4096, |r| {
        ids.push(r.id);
        true
    })
    .unwrap();
    assert_eq!(ids, ["GOOD-1", "GOOD-2"]);
    assert_eq!((stats.records, stats.malformed), (2, 3));
    let all = stats.malformed_examples.join("\n");
    assert!(all.contains("BIG.json: larger than 4096"), "{all}");
    assert!(
        all.contains("bad.json: record BAD-1: affected[0].ranges[0]"),
        "{all}"
    );
    assert!(all.contains("junk.json: record ?"), "{all}");

    std::fs::write(&path, b"<html>not a zip</html>").unwrap();
    let e = read_zip(&path, "Debian", 4096, |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("feed Debian: all.zip is not a readable zip"),
        "{e}"
    );
}
