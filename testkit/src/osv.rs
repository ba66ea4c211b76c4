//! A small OSV feed directory generated in code (`ecosystems.txt`, `<ECOSYSTEM>/all.zip`), laid out like
//! OSV's bucket, whose records match packages of the [`crate::samples`] images. It is sample data, not
//! real advisories: ids are `FATHOM-SAMPLE-*`, aliases `CVE-2099-*`. `fathom demo` and the tests sync it
//! where no real feed can be downloaded.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use crate::{Error, Result};

/// The feeds the sample directory holds.
pub const SAMPLE_FEEDS: [&str; 4] = ["Debian", "Alpine", "PyPI", "npm"];

/// glibc (`libc6 2.36-9+deb12u14` in both Debian samples), fixed in a later stable update.
pub const GLIBC: &str = "FATHOM-SAMPLE-0001";
/// follow-redirects 1.15.9 (debian-python-npm), fixed in 1.15.10.
pub const FOLLOW_REDIRECTS: &str = "FATHOM-SAMPLE-0002";
/// pygments 2.18.0 (debian-python-npm): no fix in the first edition, fixed in 2.19.0 in the second.
pub const PYGMENTS: &str = "FATHOM-SAMPLE-0003";
/// numpy before 1.22.0: the sample's 2.1.3 is not affected.
pub const NUMPY_OLD: &str = "FATHOM-SAMPLE-0004";
/// openssl (`libssl3`/`libcrypto3 3.1.4-r5` in alpine-apk), fixed in 3.1.4-r6.
pub const OPENSSL: &str = "FATHOM-SAMPLE-0005";

/// The CVE-style alias of a sample record (`FATHOM-SAMPLE-0001` → `CVE-2099-0001`).
pub fn alias(id: &str) -> String {
    format!("CVE-2099-{}", id.trim_start_matches("FATHOM-SAMPLE-"))
}

const CRITICAL: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
const HIGH: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H";
const MEDIUM: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N";

fn record(id: &str, vector: &str, ecosystem: &str, name: &str, events: Value) -> Value {
    json!({
        "id": id,
        "modified": "2026-11-01T00:00:00Z",
        "aliases": [alias(id)],
        "summary": format!("generated sample advisory for {name} (not a real vulnerability)"),
        "severity": [{"type": "CVSS_V3", "score": vector}],
        "references": [{"type": "WEB", "url": format!("https://example.invalid/advisories/{id}")}],
        "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}]}]
    })
}

/// The records per feed; `second_edition` adds the pygments fix (a feed update that changes an answer).
pub fn sample_records(second_edition: bool) -> Vec<(&'static str, Vec<Value>)> {
    let pygments = if second_edition {
        json!([{"introduced": "2.0.0"}, {"fixed": "2.19.0"}])
    } else {
        json!([{"introduced": "2.0.0"}])
    };
    vec![
        (
            "Debian",
            vec![record(
                GLIBC,
                CRITICAL,
                "Debian:12",
                "glibc",
                json!([{"introduced": "0"}, {"fixed": "2.36-9+deb12u15"}]),
            )],
        ),
        (
            "Alpine",
            vec![record(
                OPENSSL,
                HIGH,
                "Alpine:v3.19",
                "openssl",
                json!([{"introduced": "0"}, {"fixed": "3.1.4-r6"}]),
            )],
        ),
        (
            "PyPI",
            vec![
                record(PYGMENTS, HIGH, "PyPI", "pygments", pygments),
                record(
                    NUMPY_OLD,
                    MEDIUM,
                    "PyPI",
                    "numpy",
                    json!([{"introduced": "0"}, {"fixed": "1.22.0"}]),
                ),
            ],
        ),
        (
            "npm",
            vec![record(
                FOLLOW_REDIRECTS,
                MEDIUM,
                "npm",
                "follow-redirects",
                json!([{"introduced": "0"}, {"fixed": "1.15.10"}]),
            )],
        ),
    ]
}

/// Writes the sample feed directory into `dir` (replacing an earlier edition's files).
pub fn write_sample_feed(dir: &Path, second_edition: bool) -> Result<()> {
    let io =
        |what: &str, e: &dyn std::fmt::Display| Error::Harness(format!("sample feed {what}: {e}"));
    std::fs::write(dir.join("ecosystems.txt"), SAMPLE_FEEDS.join("\n") + "\n")
        .map_err(|e| io("ecosystems.txt", &e))?;
    for (feed, records) in sample_records(second_edition) {
        let folder = dir.join(feed);
        std::fs::create_dir_all(&folder).map_err(|e| io(feed, &e))?;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        // A fixed entry time keeps the bytes of an unchanged feed identical across editions.
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        for r in &records {
            let id = r["id"].as_str().unwrap_or("record");
            zip.start_file(format!("{id}.json"), options)
                .map_err(|e| io(feed, &e))?;
            zip.write_all(r.to_string().as_bytes())
                .map_err(|e| io(feed, &e))?;
        }
        let bytes = zip.finish().map_err(|e| io(feed, &e))?.into_inner();
        let target = folder.join("all.zip");
        // Like a mirror: an unchanged feed keeps its file (and mtime), so a sync finds it unchanged.
        if std::fs::read(&target).is_ok_and(|old| old == bytes) {
            continue;
        }
        // Written aside and renamed, so a reader never sees half a zip.
        let part = folder.join("all.zip.part");
        std::fs::write(&part, &bytes).map_err(|e| io(feed, &e))?;
        std::fs::rename(&part, &target).map_err(|e| io(feed, &e))?;
    }
    Ok(())
}
