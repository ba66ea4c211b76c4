//! `cargo bench -p fathom-vulns --bench vulns`: a generated feed (Debian, PyPI, npm) synced from a
//! directory, a generated fleet matched, by-vulnerability lookups timed. Prints one line per figure.

use std::io::Write;
use std::time::Instant;

use fathom_testkit::pg::TestDb;
use fathom_vulns::queries::{self, ImageFilter};
use fathom_vulns::{Feeds, Matcher, VulnsConfig};
use serde_json::json;
use sqlx::PgPool;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// (feed dir, ecosystem, name, version-of-record-n)
fn feed_zip(path: &std::path::Path, ecosystem: &str, records: usize, packages: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..records {
        let (eco, name, fixed) = match ecosystem {
            "Debian" => (
                "Debian:12".to_string(),
                format!("src{}", i % packages),
                format!("1.{}-1+deb12u1", i % 7),
            ),
            "PyPI" => (
                "PyPI".to_string(),
                format!("py-pkg{}", i % packages),
                format!("1.{}.0", i % 7),
            ),
            _ => (
                "npm".to_string(),
                format!("js-pkg{}", i % packages),
                format!("1.{}.0", i % 7),
            ),
        };
        let id = format!("{ecosystem}-{i}");
        let r = json!({"id": id, "modified": "2026-01-01T00:00:00Z", "aliases": [format!("CVE-2026-{i}")],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "affected": [{"package": {"ecosystem": eco, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]});
        zip.start_file(format!("{id}.json"), opts).unwrap();
        zip.write_all(serde_json::to_string(&r).unwrap().as_bytes())
            .unwrap();
    }
    zip.finish().unwrap();
}

async fn store_image(pool: &PgPool, digest: &str, pkgs: &[(String, String, String)]) {
    let packages: Vec<_> = pkgs
        .iter()
        .map(|(t, n, v)| {
            let meta = if t == "deb" {
                json!({"source": n})
            } else {
                json!({})
            };
            json!({"name": n, "version": v, "package_type": t, "purl": "", "metadata": meta,
                   "introduced_in": {"index": 0, "digest": "sha256:l"}})
        })
        .collect();
    let doc = json!({"distro": {"id": "debian", "version_id": "12"}, "packages": packages});
    let bytes = zstd::bulk::compress(&serde_json::to_vec(&doc).unwrap(), 3).unwrap();
    sqlx::query(
        "INSERT INTO fathom_images (manifest_digest, config_digest, platform, layers, status, analyzer_version, cache_key, document)
         VALUES ($1, 'c', 'linux/amd64', ARRAY['sha256:l'], 'analyzed', 'b', 'k', $2)",
    )
    .bind(digest)
    .bind(bytes)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::main]
async fn main() {
    let records = env("VULNS_RECORDS", 50_000);
    let images = env("VULNS_IMAGES", 1_000);
    let per_image = env("VULNS_PACKAGES", 500);
    let distinct = 20_000usize;
    let db = TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
    ])
    .await
    .unwrap();
    let pool = PgPool::connect(db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for eco in ["Debian", "PyPI", "npm"] {
        feed_zip(
            &dir.path().join(eco).join("all.zip"),
            eco,
            records / 3,
            distinct / 3,
        );
    }
    let cfg = VulnsConfig {
        base_url: dir.path().display().to_string(),
        ecosystems: vec!["Debian".into(), "PyPI".into(), "npm".into()],
        ..VulnsConfig::default()
    };
    let rss_before = peak_mib();
    let t = Instant::now();
    let report = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert!(!report.failed(), "{report:?}");
    println!(
        "vulns sync records={} wall_s={:.2} peak_mib={:.0} (process peak before sync {:.0})",
        records / 3 * 3,
        t.elapsed().as_secs_f64(),
        peak_mib(),
        rss_before
    );

    // Fleet: every image draws packages from the distinct pool, so keys repeat across images.
    for i in 0..images {
        let pkgs: Vec<_> = (0..per_image)
            .map(|k| {
                let n = (i * 37 + k * 101) % distinct;
                match n % 3 {
                    0 => (
                        "deb".into(),
                        format!("src{}", n / 3),
                        format!("1.{}-1", n % 9),
                    ),
                    1 => (
                        "python".into(),
                        format!("py-pkg{}", n / 3),
                        format!("1.{}.0", n % 9),
                    ),
                    _ => (
                        "npm".into(),
                        format!("js-pkg{}", n / 3),
                        format!("1.{}.0", n % 9),
                    ),
                }
            })
            .collect();
        store_image(&pool, &format!("sha256:img{i:06}"), &pkgs).await;
    }
    let t = Instant::now();
    let rm = Matcher::rematch(&pool).await.unwrap();
    println!(
        "vulns fleet images={} index+match_s={:.2} keys={} matches={} keys_per_s={:.0}",
        rm.images_indexed,
        t.elapsed().as_secs_f64(),
        rm.keys_matched,
        rm.matches,
        rm.keys_matched as f64 / t.elapsed().as_secs_f64()
    );
    // A feed change re-matches distinct keys only (no image is re-indexed).
    sqlx::query("UPDATE fathom_vuln_keys SET matched_stamp = -1")
        .execute(&pool)
        .await
        .unwrap();
    let t = Instant::now();
    let rm = Matcher::rematch(&pool).await.unwrap();
    println!(
        "vulns fleet images={images} rematch_s={:.2} keys={}",
        t.elapsed().as_secs_f64(),
        rm.keys_matched
    );

    let t = Instant::now();
    let m = queries::vulns_for_image(&pool, "sha256:img000007", &ImageFilter::default())
        .await
        .unwrap();
    println!(
        "vulns match image=img000007 packages={per_image} matches={} wall_ms={:.1}",
        m.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );
    let mut lat = vec![];
    for i in 0..200 {
        let t = Instant::now();
        let hits = queries::images_by_vuln(
            &pool,
            &format!("CVE-2026-{}", i * 97 % (records / 3)),
            "",
            100,
        )
        .await
        .unwrap();
        std::hint::black_box(hits);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "vulns fleet images={images} by_vuln_p50_ms={:.1} by_vuln_p99_ms={:.1}",
        lat[100], lat[197]
    );
}
