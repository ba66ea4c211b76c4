//! Shared test helpers: OSV zips generated in code, a real HTTP server that serves them with ETags and
//! counts requests, and stored images written the way the worker writes them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// A zip with one `<id>.json` entry per record (plus raw extra entries).
pub fn osv_zip(records: &[Value], extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for r in records {
        let id = r["id"].as_str().unwrap_or("x");
        zip.start_file(format!("{id}.json"), opts).unwrap();
        zip.write_all(serde_json::to_string(r).unwrap().as_bytes())
            .unwrap();
    }
    for (name, bytes) in extra {
        zip.start_file(name.to_string(), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// A record affecting one package with `introduced 0` and an optional fix.
pub fn record(
    id: &str,
    aliases: &[&str],
    ecosystem: &str,
    name: &str,
    fixed: Option<&str>,
) -> Value {
    let mut events = vec![json!({"introduced": "0"})];
    if let Some(f) = fixed {
        events.push(json!({"fixed": f}));
    }
    json!({
        "id": id, "modified": "2026-01-01T00:00:00Z", "aliases": aliases,
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "references": [{"type": "ADVISORY", "url": format!("https://example.test/{id}")}],
        "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                      "ranges": [{"type": "ECOSYSTEM", "events": events}]}]
    })
}

/// A feed server: files by path, each served with an ETag derived from its content; counts requests.
#[derive(Clone, Default)]
pub struct FeedServer {
    pub files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub requests: Arc<AtomicUsize>,
    pub not_modified: Arc<AtomicUsize>,
}

impl FeedServer {
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), bytes);
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Starts serving on 127.0.0.1; returns the base URL.
    pub async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::get(serve))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }
}

async fn serve(
    State(s): State<FeedServer>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let Some(bytes) = s.files.lock().unwrap().get(&path).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!(
        "\"{:x}-{}\"",
        bytes
            .iter()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(*b))),
        bytes.len()
    );
    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        s.not_modified.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
    }
    (StatusCode::OK, [("etag", etag)], bytes).into_response()
}

/// A throwaway database with the queue's, the worker store's and the vulnerability tables, and a pool.
pub async fn db() -> (fathom_testkit::pg::TestDb, sqlx::PgPool) {
    let db = fathom_testkit::pg::TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
    ])
    .await
    .unwrap();
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    (db, pool)
}

/// Stores (or replaces, as a re-analysis does) an analyzed image with this document, zstd-compressed as
/// the worker stores it.
pub async fn store_document(pool: &sqlx::PgPool, digest: &str, doc: &Value, package_count: i32) {
    let bytes = zstd::bulk::compress(&serde_json::to_vec(doc).unwrap(), 3).unwrap();
    store_raw_document(pool, digest, bytes, package_count).await;
}

/// Stores an analyzed image whose document column holds exactly these bytes.
pub async fn store_raw_document(
    pool: &sqlx::PgPool,
    digest: &str,
    bytes: Vec<u8>,
    package_count: i32,
) {
    sqlx::query(
        "INSERT INTO fathom_images (manifest_digest, config_digest, platform, layers, status, analyzer_version, cache_key, document, package_count)
         VALUES ($1, 'sha256:c', 'linux/amd64', ARRAY['sha256:l1'], 'analyzed', 'test', 'k', $2, $3)
         ON CONFLICT (manifest_digest) DO UPDATE SET document = EXCLUDED.document, analyzed_at = clock_timestamp()",
    )
    .bind(digest)
    .bind(bytes)
    .bind(package_count)
    .execute(pool)
    .await
    .unwrap();
}

/// The document of an image whose visible packages are these PyPI (name, version) pairs.
pub fn pypi_document(packages: &[(&str, &str)]) -> Value {
    let packages: Vec<Value> = packages
        .iter()
        .map(|(n, v)| {
            json!({"name": n, "version": v, "package_type": "python", "purl": format!("pkg:pypi/{n}@{v}"),
                   "introduced_in": {"index": 0, "digest": "sha256:l1"}})
        })
        .collect();
    json!({"schema": "fathom.analysis/v1", "packages": packages})
}

/// Stores an analyzed image whose document lists these PyPI (name, version) pairs as visible.
pub async fn store_pypi_image(pool: &sqlx::PgPool, digest: &str, packages: &[(&str, &str)]) {
    store_document(
        pool,
        digest,
        &pypi_document(packages),
        packages.len() as i32,
    )
    .await;
}

/// The feeds' settings of these tests: PyPI only, from the test server at `base`.
pub fn pypi_config(base: String) -> fathom_vulns::VulnsConfig {
    fathom_vulns::VulnsConfig {
        base_url: base,
        ecosystems: vec!["PyPI".into()],
        ..fathom_vulns::VulnsConfig::default()
    }
}
