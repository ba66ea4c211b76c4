//! Data for the notification tests: a stored image and a feed that newly matches it.

use std::path::Path;

use serde_json::json;
use sqlx::PgPool;

/// One stored Debian image carrying `hotpkg 1.0-1` (a document as the store keeps it).
pub async fn store_image(pool: &PgPool, digest: &str) {
    let doc = json!({"distro": {"id": "debian", "version_id": "12"}, "packages": [
        {"name": "hotpkg", "version": "1.0-1", "package_type": "deb", "purl": "",
         "metadata": {"source": "hotpkg"}, "introduced_in": {"index": 0, "digest": "sha256:l"}}]});
    let doc = zstd::bulk::compress(&serde_json::to_vec(&doc).unwrap(), 3).unwrap();
    sqlx::query(
        "INSERT INTO fathom_images (manifest_digest, config_digest, platform, layers, status, analyzer_version, cache_key, document) \
         VALUES ($1, 'c', 'linux/amd64', ARRAY['sha256:l'], 'analyzed', 'b', 'k', $2)",
    )
    .bind(digest)
    .bind(doc)
    .execute(pool)
    .await
    .unwrap();
}

/// A Debian feed directory with one record for `hotpkg` fixed in 2.0-1.
pub fn hot_feed(dir: &Path) {
    use std::io::Write;
    let path = dir.join("Debian").join("all.zip");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    zip.start_file("HOT-1.json", zip::write::SimpleFileOptions::default())
        .unwrap();
    let record = json!({"id": "HOT-1", "modified": "2026-01-01T00:00:00Z", "aliases": ["CVE-2026-0001"],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "hotpkg"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0-1"}]}]}]});
    zip.write_all(record.to_string().as_bytes()).unwrap();
    zip.finish().unwrap();
}
