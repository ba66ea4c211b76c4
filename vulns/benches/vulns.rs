//! `cargo bench -p fathom-vulns --bench vulns`: a generated feed (Debian, PyPI, npm; 210k records by
//! default) synced from a directory, a generated fleet (10k images of 500 packages) indexed and matched,
//! the feed changed and the fleet re-matched, per-image and by-vulnerability reads timed. Prints the
//! issue's three lines (`vulns sync ...`, `vulns match ...`, `vulns fleet ...`) plus detail lines.
//! Sizes: VULNS_RECORDS, VULNS_IMAGES, VULNS_PACKAGES.

use std::io::Write;
use std::time::Instant;

use fathom_testkit::pg::TestDb;
use fathom_vulns::queries::{self, ImageFilter};
use fathom_vulns::{Feeds, Matcher, VulnsConfig};
use serde_json::json;
use sqlx::PgPool;

/// Distinct package names across the three ecosystems (a third each).
const DISTINCT: usize = 20_000;

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

/// How a generation of the feed differs from the first one: `changed` (a fix moves for every 100th
/// record, every 250th is withdrawn, every 500th removed, 1% new records appear).
fn feed_zip(path: &std::path::Path, ecosystem: &str, records: usize, changed: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let packages = DISTINCT / 3;
    let total = if changed {
        records + records / 100
    } else {
        records
    };
    for i in 0..total {
        if changed && i % 500 == 3 {
            continue;
        }
        let minor = if changed && i % 100 == 0 { 8 } else { i % 7 };
        let (eco, name, fixed) = match ecosystem {
            "Debian" => (
                "Debian:12".to_string(),
                format!("src{}", i % packages),
                format!("1.{minor}-1+deb12u1"),
            ),
            "PyPI" => (
                "PyPI".to_string(),
                format!("py-pkg{}", i % packages),
                format!("1.{minor}.0"),
            ),
            _ => (
                "npm".to_string(),
                format!("js-pkg{}", i % packages),
                format!("1.{minor}.0"),
            ),
        };
        let id = format!("{ecosystem}-{i}");
        let mut r = json!({"id": id, "modified": "2026-01-01T00:00:00Z", "aliases": [format!("CVE-2026-{i}")],
            "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
            "references": [{"type": "ADVISORY", "url": format!("https://example.test/{id}")}],
            "affected": [{"package": {"ecosystem": eco, "name": name},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]});
        if changed && i % 250 == 1 {
            r["withdrawn"] = json!("2026-02-01T00:00:00Z");
        }
        zip.start_file(format!("{id}.json"), opts).unwrap();
        zip.write_all(serde_json::to_string(&r).unwrap().as_bytes())
            .unwrap();
    }
    zip.finish().unwrap();
}

/// The packages of image `i`: drawn from the distinct pool, so keys repeat across images.
fn image_doc(i: usize, per_image: usize) -> Vec<u8> {
    let packages: Vec<_> = (0..per_image)
        .map(|k| {
            let n = (i * 37 + k * 101) % DISTINCT;
            let (t, name, version) = match n % 3 {
                0 => ("deb", format!("src{}", n / 3), format!("1.{}-1", n % 9)),
                1 => ("python", format!("py-pkg{}", n / 3), format!("1.{}.0", n % 9)),
                _ => ("npm", format!("js-pkg{}", n / 3), format!("1.{}.0", n % 9)),
            };
            let meta = if t == "deb" {
                json!({"source": name})
            } else {
                json!({})
            };
            json!({"name": name, "version": version, "package_type": t, "purl": "", "metadata": meta,
                   "introduced_in": {"index": 0, "digest": "sha256:l"}})
        })
        .collect();
    let doc = json!({"distro": {"id": "debian", "version_id": "12"}, "packages": packages});
    zstd::bulk::compress(&serde_json::to_vec(&doc).unwrap(), 3).unwrap()
}

async fn store_images(pool: &PgPool, images: usize, per_image: usize) {
    for start in (0..images).step_by(500) {
        let end = (start + 500).min(images);
        let digests: Vec<String> = (start..end).map(|i| format!("sha256:img{i:06}")).collect();
        let docs: Vec<Vec<u8>> = (start..end).map(|i| image_doc(i, per_image)).collect();
        sqlx::query(
            "INSERT INTO fathom_images (manifest_digest, config_digest, platform, layers, status, analyzer_version, cache_key, document)
             SELECT d, 'c', 'linux/amd64', ARRAY['sha256:l'], 'analyzed', 'b', 'k', doc FROM unnest($1::text[], $2::bytea[]) AS x(d, doc)",
        )
        .bind(&digests)
        .bind(&docs)
        .execute(pool)
        .await
        .unwrap();
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let records = env("VULNS_RECORDS", 210_000) / 3;
    let images = env("VULNS_IMAGES", 10_000);
    let per_image = env("VULNS_PACKAGES", 500);
    let db = TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
    ])
    .await
    .unwrap();
    let pool = PgPool::connect(db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let feeds = ["Debian", "PyPI", "npm"];
    for eco in feeds {
        feed_zip(&dir.path().join(eco).join("all.zip"), eco, records, false);
    }
    let cfg = VulnsConfig {
        base_url: dir.path().display().to_string(),
        ecosystems: feeds.iter().map(|s| s.to_string()).collect(),
        ..VulnsConfig::default()
    };
    let rss_before = peak_mib();
    let t = Instant::now();
    let report = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert!(!report.failed(), "{report:?}");
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM fathom_vuln_affected")
        .fetch_one(&pool)
        .await
        .unwrap();
    println!(
        "vulns sync records={} wall_s={:.2} peak_mib={:.0}",
        records * 3,
        t.elapsed().as_secs_f64(),
        peak_mib(),
    );
    println!("  (affected entries {entries}; process peak before the sync {rss_before:.0} MiB)");

    store_images(&pool, images, per_image).await;
    let t = Instant::now();
    let rm = Matcher::rematch(&pool).await.unwrap();
    println!(
        "  fleet first round: images={} index+match_s={:.2} keys={} matches={} (every key new: a full match)",
        rm.images_indexed,
        t.elapsed().as_secs_f64(),
        rm.keys_matched,
        rm.matches,
    );
    sqlx::query("VACUUM ANALYZE").execute(&pool).await.unwrap();

    let digest = "sha256:img000007";
    let cold = Instant::now();
    let m = queries::vulns_for_image(&pool, digest, &ImageFilter::default())
        .await
        .unwrap();
    let cold_ms = cold.elapsed().as_secs_f64() * 1000.0;
    let mut lat = vec![];
    for _ in 0..21 {
        let t = Instant::now();
        let again = queries::vulns_for_image(&pool, digest, &ImageFilter::default())
            .await
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(again.len(), m.len());
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "vulns match image=img000007 packages={per_image} matches={} wall_ms={:.1}",
        m.len(),
        percentile(&lat, 0.5)
    );
    println!(
        "  (median of 21 reads; first read {cold_ms:.1} ms, slowest {:.1} ms)",
        lat[lat.len() - 1]
    );

    // The feed changes (Debian and PyPI; npm unchanged): only the names those records touch re-match.
    for eco in ["Debian", "PyPI"] {
        feed_zip(&dir.path().join(eco).join("all.zip"), eco, records, true);
    }
    let t = Instant::now();
    let report = Feeds::sync(&pool, &cfg, &|_| {}).await.unwrap();
    assert!(!report.failed(), "{report:?}");
    let dirty: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT (ecosystem, name)) FROM fathom_vuln_dirty")
            .fetch_one(&pool)
            .await
            .unwrap();
    println!(
        "  feed change synced in {:.2} s: {dirty} dirty names",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let rm = Matcher::rematch(&pool).await.unwrap();
    let rematch_s = t.elapsed().as_secs_f64();
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM fathom_vuln_keys")
        .fetch_one(&pool)
        .await
        .unwrap();

    let mut lat = vec![];
    for i in 0..220 {
        let t = Instant::now();
        let hits =
            queries::images_by_vuln(&pool, &format!("CVE-2026-{}", i * 97 % records), "", 100)
                .await
                .unwrap();
        std::hint::black_box(hits);
        if i >= 20 {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "vulns fleet images={images} rematch_s={rematch_s:.2} by_vuln_p99_ms={:.1}",
        percentile(&lat, 0.99)
    );
    println!(
        "  (re-matched {} of {keys} distinct keys, {} matches; by-vulnerability p50 {:.1} ms over 200 lookups, 100 per page)",
        rm.keys_matched,
        rm.matches,
        percentile(&lat, 0.5)
    );

    // The worst case of a feed change: every key re-matched (what each change cost before).
    sqlx::query("UPDATE fathom_vuln_keys SET matched_stamp = -1")
        .execute(&pool)
        .await
        .unwrap();
    let t = Instant::now();
    let rm = Matcher::rematch(&pool).await.unwrap();
    println!(
        "  (every key re-matched: {} keys, {} matches in {:.2} s)",
        rm.keys_matched,
        rm.matches,
        t.elapsed().as_secs_f64()
    );
}
