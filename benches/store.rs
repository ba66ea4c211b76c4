//! How the store grows and how it reads at fleet size: one real image (debian-python-npm plus a layer of
//! its own) analyzed by a real worker and matched by the core's feed cycle against the generated sample
//! feed, then cloned in bulk SQL into the real tables — `FATHOM_BENCH_STORE_IMAGES` images (default
//! 100,000; or `--images N`) built from 1,000 base layer sets (the seed's layers, each set with its own
//! package versions and so its own vulnerability keys and matches, under 100 id variants per sample
//! record) plus one unique top layer per image. Every row is what an analysis writes: layer results and
//! their package rows, the image document, references, the vulnerability index (package groups per base layer and
//! per top layer, images linked to theirs). Then, through a real
//! `fathom run` (release build), random reads of an image's vulnerabilities, by-vulnerability lookups and
//! cold policy checks, and 10 % of the images deleted through the API by 8 clients while 2 readers run.
//!
//! Prints `store images=N unique_layers=U bytes_per_image=B bytes_per_unique_layer=L vulns_image_p99_ms=..
//! by_cve_p99_ms=.. check_cold_p99_ms=.. delete_s=..` — B is every fathom table's bytes over the images,
//! L the layer tables' bytes over the unique layers — then `store bytes image_tables=.. layer_tables=..
//! shared_tables=..` and `store readers_during_delete_p99_ms=..`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fathom_testkit::osv;
use fathom_testkit::samples::{SampleEntry, SampleKind};
use fathom_testkit::{BuiltImage, Compress, Pusher};
use sqlx::PgPool;
use support::api::{Api, Client};
use support::{WorkerProc, WorkerSpec};

/// Base layer sets the fleet is built from.
const BASE_SETS: i64 = 1000;
/// Vulnerability id variants per sample record (each carried by a tenth of the base sets).
const ID_VARIANTS: i64 = 100;
/// Images generated per statement.
const CHUNK: i64 = 5000;

fn main() {
    let images = std::env::args()
        .skip_while(|a| a != "--images")
        .nth(1)
        .or_else(|| std::env::var("FATHOM_BENCH_STORE_IMAGES").ok())
        .map(|v| {
            v.parse::<i64>()
                .expect("--images / FATHOM_BENCH_STORE_IMAGES: a number")
        })
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(images));
}

/// The seed: the sample with one more layer holding an npm package of its own.
fn seed_image() -> BuiltImage {
    let samples = fathom_testkit::samples::sample_images();
    let mut sample = samples
        .iter()
        .find(|s| s.name == "debian-python-npm")
        .expect("sample")
        .clone();
    let entry = |path: &str, kind: SampleKind| SampleEntry {
        path: path.to_string(),
        mode: if kind == SampleKind::Dir {
            0o755
        } else {
            0o644
        },
        kind,
    };
    sample.layers.push(vec![
        entry("/srv", SampleKind::Dir),
        entry("/srv/node_modules", SampleKind::Dir),
        entry("/srv/node_modules/top", SampleKind::Dir),
        entry(
            "/srv/node_modules/top/package.json",
            SampleKind::File(b"{\"name\": \"top\", \"version\": \"1.0.0\"}\n".to_vec()),
        ),
    ]);
    sample.name = "store-seed".into();
    BuiltImage::from_sample(&sample, Compress::None).expect("seed image")
}

async fn run(images: i64) {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let feed = tempfile::tempdir().expect("tempdir");
    osv::write_sample_feed(feed.path(), false).expect("sample feed");
    let registry = support::registry();
    let repo = support::unique_repo("store");
    let seed = seed_image();
    Pusher::new(&registry, None)
        .push(&repo, "1", &seed)
        .await
        .expect("push");
    let config = format!(
        "    max_page_size: 1000\n  feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [{}]\n    \
         rematch_interval: 10s\n  catalog:\n    layer_sweep_interval: 0s\n",
        feed.path().display(),
        osv::SAMPLE_FEEDS.join(", ")
    );
    let api = Api::start(dir.path(), db.url(), &config);
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "seed", db.url(), &WorkerSpec::default());
    let done = client
        .submit_and_wait(&format!("{registry}/{repo}:1"))
        .await;
    drop(worker);
    let seed_digest = done["digest"].as_str().expect("digest").to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while client
        .get(&format!("/v1/images/{seed_digest}/vulnerabilities"))
        .await
        .1["matched"]
        != true
    {
        assert!(Instant::now() < deadline, "seed never matched");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(db.url())
        .await
        .expect("pool");
    let started = Instant::now();
    generate(&pool, &seed_digest, images).await;
    eprintln!(
        "store: generated {images} images in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let (bytes, unique_layers, per_layer, per_image, shared) = sizes(&pool).await;
    relations(&pool, images).await;

    let digests: Arc<Vec<String>> = Arc::new(
        sqlx::query_scalar("SELECT manifest_digest FROM fathom_images WHERE manifest_digest <> $1")
            .bind(&seed_digest)
            .fetch_all(&pool)
            .await
            .expect("digests"),
    );
    let ids: Arc<Vec<String>> = Arc::new(
        sqlx::query_scalar(
            "SELECT DISTINCT unnest(aliases) FROM fathom_vuln_matches WHERE vuln_id LIKE '%-%-%'",
        )
        .fetch_all(&pool)
        .await
        .expect("ids"),
    );
    if std::env::var_os("FATHOM_BENCH_STORE_EXPLAIN").is_some() {
        explain(&pool, &digests, &ids).await;
    }
    let vulns_p99 = measure(&client, 4, 2000, {
        let d = Arc::clone(&digests);
        move |i| format!("/v1/images/{}/vulnerabilities", pick(&d, i))
    })
    .await;
    let by_cve_p99 = measure(&client, 4, 1000, {
        let ids = Arc::clone(&ids);
        move |i| format!("/v1/vulnerabilities/{}/images", pick(&ids, i))
    })
    .await;
    // Cold: each check names an image not checked before.
    let check_p99 = measure(&client, 4, 500, {
        let d = Arc::clone(&digests);
        move |i| format!("/v1/images/{}/check", d[(i * 7919) % d.len()])
    })
    .await;

    // 10 % deleted through the API by 8 clients while 2 readers run.
    let doomed: Vec<String> = digests.iter().step_by(10).cloned().collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..2 {
        let (client, d, ids, stop) = (
            api.client(),
            Arc::clone(&digests),
            Arc::clone(&ids),
            Arc::clone(&stop),
        );
        readers.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut i = r * 1_000_003;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let path = if i % 2 == 0 {
                    format!("/v1/images/{}/vulnerabilities", pick(&d, i))
                } else {
                    format!("/v1/vulnerabilities/{}/images", pick(&ids, i))
                };
                let t = Instant::now();
                let (status, _) = client.get(&path).await;
                assert!(
                    status.is_success() || status.as_u16() == 404,
                    "{path}: {status}"
                );
                times.push(t.elapsed());
            }
            times
        }));
    }
    let deleting = Instant::now();
    let doomed = Arc::new(doomed);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut deleters = Vec::new();
    for _ in 0..8 {
        let (client, doomed, next) = (api.client(), Arc::clone(&doomed), Arc::clone(&next));
        deleters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(digest) = doomed.get(i) else { break };
                let (status, answer) = client.delete(&format!("/v1/images/{digest}")).await;
                assert_eq!(status.as_u16(), 204, "{digest}: {answer}");
            }
        }));
    }
    for d in deleters {
        d.await.expect("deleter");
    }
    let delete_s = deleting.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut during = Vec::new();
    for r in readers {
        during.extend(r.await.expect("reader"));
    }
    println!(
        "store images={images} unique_layers={unique_layers} bytes_per_image={} bytes_per_unique_layer={} \
         vulns_image_p99_ms={vulns_p99:.2} by_cve_p99_ms={by_cve_p99:.2} check_cold_p99_ms={check_p99:.2} \
         delete_s={delete_s:.1}",
        bytes / images.max(1),
        per_layer / unique_layers.max(1),
    );
    println!("store bytes total={bytes} image_tables={per_image} layer_tables={per_layer} shared_tables={shared}");
    println!(
        "store readers_during_delete_p99_ms={:.2} reads={} deleted={}",
        p99(&mut during),
        during.len(),
        doomed.len()
    );
}

/// A pseudo-random item for request `i` (a multiplicative hash: spread over the list, no repeats nearby).
fn pick(items: &[String], i: usize) -> &str {
    &items[i.wrapping_mul(2_654_435_761) % items.len()]
}

fn p99(times: &mut [Duration]) -> f64 {
    if times.is_empty() {
        return 0.0;
    }
    times.sort();
    let at = ((times.len() as f64) * 0.99).ceil() as usize;
    times[at.saturating_sub(1).min(times.len() - 1)].as_secs_f64() * 1000.0
}

/// `count` GETs of `path(i)` by `clients` concurrent clients; the p99 latency in ms (every answer 200).
async fn measure(
    client: &Client,
    clients: usize,
    count: usize,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
) -> f64 {
    let path = Arc::new(path);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (c, path, next) = (
            Client {
                base: client.base.clone(),
                http: client.http.clone(),
                token: client.token.clone(),
            },
            Arc::clone(&path),
            Arc::clone(&next),
        );
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let p = path(i);
                let t = Instant::now();
                let (status, answer) = c.get(&p).await;
                times.push(t.elapsed());
                assert!(status.is_success(), "{p}: {status} {answer}");
                if p.ends_with("/vulnerabilities") {
                    assert_eq!(answer["matched"], true, "{p}: {answer}");
                }
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.expect("client"));
    }
    p99(&mut times)
}

/// (all fathom tables' bytes, unique layers, layer tables' bytes, per-image tables' bytes, the rest).
async fn sizes(pool: &PgPool) -> (i64, i64, i64, i64, i64) {
    sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname = 'public' \
           AND (c.relname LIKE 'fathom%' OR c.relname LIKE 'notify%')",
    )
    .fetch_all(pool)
    .await
    .expect("sizes");
    let layer_tables = [
        "fathom_layers",
        "fathom_layer_packages",
        "fathom_layer_secrets",
        "fathom_layer_content_matches",
        "fathom_layer_retrieved_files",
        "fathom_layer_malware",
        // Package parts of documents, stored per layer and shared by the images using it.
        "fathom_image_package_parts",
        // Package groups: one per distinct (layer, visible packages), shared by the images using it.
        "fathom_vuln_groups",
        "fathom_vuln_group_packages",
    ];
    let image_tables = [
        "fathom_images",
        "fathom_image_references",
        "fathom_vuln_images",
        "fathom_vuln_image_groups",
        "fathom_policy_evaluations",
        "fathom_submissions",
        "fathom_submission_heads",
        "fathom_inventory",
        "fathom_catalog_history",
    ];
    let sum = |names: &[&str]| -> i64 {
        rows.iter()
            .filter(|(n, _)| names.contains(&n.as_str()))
            .map(|(_, b)| b)
            .sum()
    };
    let total: i64 = rows.iter().map(|(_, b)| b).sum();
    let (per_layer, per_image) = (sum(&layer_tables), sum(&image_tables));
    let unique: i64 = sqlx::query_scalar("SELECT count(DISTINCT digest) FROM fathom_layers")
        .fetch_one(pool)
        .await
        .expect("layers");
    (
        total,
        unique,
        per_layer,
        per_image,
        total - per_layer - per_image,
    )
}

/// Clones the seed into `images` images in bulk SQL (see the module doc).
async fn generate(pool: &PgPool, seed: &str, images: i64) {
    let mut conn = pool.acquire().await.expect("connection");
    assert!(seed.starts_with("sha256:") && seed[7..].bytes().all(|b| b.is_ascii_hexdigit()));
    for sql in SETUP {
        // DDL takes no parameters: the seed digest (checked hex) is written in.
        let sql = sql.replace("{seed}", &format!("'{seed}'"));
        sqlx::query(&sql)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // One transaction: the core's match round (running meanwhile) sees the fleet whole or not at all,
    // never an image without its index nor a package group no image uses yet (it would prune it).
    let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
    // The generated images are indexed as generated: no change marker is left for a match round to
    // settle (a live fleet's rounds settle each image's as it arrives, and the table stays empty).
    sqlx::query("ALTER TABLE fathom_images DISABLE TRIGGER fathom_vuln_image_changed")
        .execute(&mut *tx)
        .await
        .expect("disable the change trigger");
    for sql in PER_BASE {
        sqlx::query(sql)
            .bind(BASE_SETS)
            .bind(ID_VARIANTS)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let mut from = 0;
    while from < images {
        let to = (from + CHUNK).min(images);
        for sql in PER_IMAGE {
            sqlx::query(sql)
                .bind(from)
                .bind(to)
                .bind(BASE_SETS)
                .execute(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        from = to;
        if from % 20_000 == 0 {
            eprintln!("store: {from} images");
        }
    }
    sqlx::query("ALTER TABLE fathom_images ENABLE TRIGGER fathom_vuln_image_changed")
        .execute(&mut *tx)
        .await
        .expect("enable the change trigger");
    tx.commit().await.expect("commit");
    // What autovacuum does after a bulk insert (its insert threshold): statistics, and the visibility
    // map that lets index-only scans skip the heap.
    sqlx::query("VACUUM (ANALYZE)")
        .execute(&mut *conn)
        .await
        .expect("vacuum");
}

/// Templates from the seed (`{seed}`): its layers in order (the last is the top), their packages, its
/// vulnerability index rows with the base layer they came from, and a digest maker.
const SETUP: &[&str] = &[
    "CREATE OR REPLACE FUNCTION bench_digest(text) RETURNS text LANGUAGE sql IMMUTABLE AS \
     $$ SELECT 'sha256:' || md5($1) || md5('2' || $1) $$",
    "CREATE TABLE bench_layers AS SELECT (l.k - 1)::int AS k, l.digest, i.cache_key, \
        (l.k = cardinality(i.layers)) AS top \
     FROM fathom_images i, unnest(i.layers) WITH ORDINALITY AS l(digest, k) WHERE i.manifest_digest = {seed}",
    "CREATE TABLE bench_image AS SELECT * FROM fathom_images WHERE manifest_digest = {seed}",
    "CREATE TABLE bench_vuln_packages AS SELECT p.*, l.k, l.top FROM fathom_vuln_image_packages p \
     LEFT JOIN bench_layers l ON l.digest = p.layer_digest WHERE p.manifest_digest = {seed}",
];

/// Per base set (`$1` sets, `$2` id variants): the base layers with their packages (versions made the
/// set's own), and the set's vulnerability keys and matches.
const PER_BASE: &[&str] = &[
    "INSERT INTO fathom_layers (digest, cache_key, compressed_bytes, inflated_bytes, entries, package_count, result, analyzed_at) \
     SELECT bench_digest('b' || b || '-' || l.k), l.cache_key, s.compressed_bytes, s.inflated_bytes, s.entries, \
            s.package_count, s.result, '2026-12-01' \
     FROM generate_series(0, $1 - 1) b, bench_layers l JOIN fathom_layers s ON s.digest = l.digest AND s.cache_key = l.cache_key \
     WHERE NOT l.top AND $2 > 0",
    "INSERT INTO fathom_layer_packages (layer_digest, cache_key, package_type, name, version, purl, path) \
     SELECT bench_digest('b' || b || '-' || l.k), l.cache_key, p.package_type, p.name, p.version || '+b' || b, p.purl, p.path \
     FROM generate_series(0, $1 - 1) b, bench_layers l \
     JOIN fathom_layer_packages p ON p.layer_digest = l.digest AND p.cache_key = l.cache_key \
     WHERE NOT l.top AND $2 > 0",
    "INSERT INTO fathom_vuln_keys (ecosystem, name, version, matched_stamp) \
     SELECT DISTINCT p.ecosystem, p.name, p.version || '+b' || b, k.matched_stamp \
     FROM generate_series(0, $1 - 1) b, bench_vuln_packages p \
     JOIN fathom_vuln_keys k ON k.ecosystem = p.ecosystem AND k.name = p.name AND k.version = p.version \
     WHERE NOT coalesce(p.top, false) AND $2 > 0 ON CONFLICT DO NOTHING",
    "INSERT INTO fathom_vuln_matches (ecosystem, name, version, vuln_id, aliases, severity, cvss_score, fix_state, fixed, urls, fix_observed_at) \
     SELECT m.ecosystem, m.name, m.version || '+b' || b, m.vuln_id || '-' || (b % $2), \
            ARRAY(SELECT a || '-' || (b % $2) FROM unnest(m.aliases) a), \
            m.severity, m.cvss_score, m.fix_state, m.fixed, m.urls, m.fix_observed_at \
     FROM generate_series(0, $1 - 1) b, \
          (SELECT DISTINCT m.* FROM fathom_vuln_matches m JOIN bench_vuln_packages p \
             ON p.ecosystem = m.ecosystem AND p.name = m.name AND p.version = m.version \
           WHERE NOT coalesce(p.top, false)) m \
     ON CONFLICT DO NOTHING",
    // The set's package groups: one per base layer (the index's shape, see vulns/src/store/groups.rs).
    "INSERT INTO fathom_vuln_groups (hash) \
     SELECT DISTINCT sha256(convert_to('bench-b' || b || '-' || coalesce(p.k, 0), 'UTF8')) \
     FROM generate_series(0, $1 - 1) b, bench_vuln_packages p WHERE NOT coalesce(p.top, false) AND $2 > 0",
    "INSERT INTO fathom_vuln_group_packages (group_id, ecosystem, name, version, package_type, package_name, \
        package_version, purl, layer_digest, os) \
     SELECT g.id, p.ecosystem, p.name, p.version || '+b' || b, p.package_type, p.package_name, p.package_version, \
            p.purl, bench_digest('b' || b || '-' || coalesce(p.k, 0)), p.os \
     FROM generate_series(0, $1 - 1) b, bench_vuln_packages p, fathom_vuln_groups g \
     WHERE NOT coalesce(p.top, false) AND $2 > 0 \
       AND g.hash = sha256(convert_to('bench-b' || b || '-' || coalesce(p.k, 0), 'UTF8'))",
];

/// Per chunk of images (`$1`..`$2`, `$3` base sets): top layers and their packages, images (the seed's
/// document, base set `i % sets`), references, the vulnerability index.
const PER_IMAGE: &[&str] = &[
    "INSERT INTO fathom_layers (digest, cache_key, compressed_bytes, inflated_bytes, entries, package_count, result, analyzed_at) \
     SELECT bench_digest('t' || i), l.cache_key, s.compressed_bytes, s.inflated_bytes, s.entries, s.package_count, \
            s.result, '2026-12-01' \
     FROM generate_series($1, $2 - 1) i, bench_layers l JOIN fathom_layers s ON s.digest = l.digest AND s.cache_key = l.cache_key \
     WHERE l.top AND $3 > 0",
    "INSERT INTO fathom_layer_packages (layer_digest, cache_key, package_type, name, version, purl, path) \
     SELECT bench_digest('t' || i), l.cache_key, p.package_type, p.name, p.version, p.purl, p.path \
     FROM generate_series($1, $2 - 1) i, bench_layers l \
     JOIN fathom_layer_packages p ON p.layer_digest = l.digest AND p.cache_key = l.cache_key \
     WHERE l.top AND $3 > 0",
    "INSERT INTO fathom_images (manifest_digest, config_digest, platform, distro, layers, status, analyzer_version, \
        cache_key, package_count, analysis_ms, queue_wait_ms, first_seen_at, analyzed_at, document, package_parts) \
     SELECT bench_digest('i' || i), bench_digest('c' || i), s.platform, s.distro, \
            ARRAY(SELECT CASE WHEN l.top THEN bench_digest('t' || i) ELSE bench_digest('b' || (i % $3) || '-' || l.k) END \
                  FROM bench_layers l ORDER BY l.k), \
            'analyzed', s.analyzer_version, s.cache_key, s.package_count, s.analysis_ms, s.queue_wait_ms, \
            '2026-12-01', '2026-12-01', s.document, s.package_parts \
     FROM generate_series($1, $2 - 1) i, bench_image s",
    "INSERT INTO fathom_image_references (reference, manifest_digest, first_seen_at, last_seen_at) \
     SELECT 'bench.example/fleet/app' || i || ':1', bench_digest('i' || i), '2026-12-01', '2026-12-01' \
     FROM generate_series($1, $2 - 1) i WHERE $3 > 0",
    // Reported: the fleet's first matches were announced when it was analyzed (a steady state; a
    // round announcing 100,000 first matches at once would hold their rows while the deletes run).
    "INSERT INTO fathom_vuln_images (manifest_digest, analyzed_at, reported) \
     SELECT bench_digest('i' || i), '2026-12-01', true FROM generate_series($1, $2 - 1) i WHERE $3 > 0",
    // The image's own document part (its top layer's packages: every clone names the seed's parts, so
    // this row stands for the bytes its own would take).
    "INSERT INTO fathom_image_package_parts (hash, cache_key, layer_digest, body, stored_at) \
     SELECT sha256(convert_to('bench-part-t' || i, 'UTF8')), p.cache_key, bench_digest('t' || i), p.body, '2026-12-01' \
     FROM generate_series($1, $2 - 1) i, fathom_image_package_parts p \
     JOIN bench_layers l ON l.digest = p.layer_digest AND l.cache_key = p.cache_key \
     WHERE l.top AND $3 > 0",
    // The image's own group (its top layer's packages) and its links to its base set's groups.
    "INSERT INTO fathom_vuln_groups (hash) \
     SELECT sha256(convert_to('bench-t' || i, 'UTF8')) FROM generate_series($1, $2 - 1) i \
     WHERE $3 > 0 AND EXISTS (SELECT 1 FROM bench_vuln_packages WHERE top)",
    "INSERT INTO fathom_vuln_group_packages (group_id, ecosystem, name, version, package_type, package_name, \
        package_version, purl, layer_digest, os) \
     SELECT g.id, p.ecosystem, p.name, p.version, p.package_type, p.package_name, p.package_version, p.purl, \
            bench_digest('t' || i), p.os \
     FROM generate_series($1, $2 - 1) i, bench_vuln_packages p, fathom_vuln_groups g \
     WHERE coalesce(p.top, false) AND g.hash = sha256(convert_to('bench-t' || i, 'UTF8'))",
    "INSERT INTO fathom_vuln_image_groups (manifest_digest, group_id) \
     SELECT bench_digest('i' || i), g.id \
     FROM generate_series($1, $2 - 1) i, \
          (SELECT DISTINCT coalesce(k, 0) AS k, coalesce(top, false) AS top FROM bench_vuln_packages) l, \
          fathom_vuln_groups g \
     WHERE g.hash = sha256(convert_to(CASE WHEN l.top THEN 'bench-t' || i \
                                           ELSE 'bench-b' || (i % $3) || '-' || l.k END, 'UTF8'))",
];

/// Every fathom relation's bytes (table, TOAST and each index) and per image, largest first, to stderr:
/// where the bytes are.
async fn relations(pool: &PgPool, images: i64) {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT c.relname::text, c.relkind::text, pg_relation_size(c.oid), \
                coalesce(pg_total_relation_size(c.reltoastrelid), 0) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') \
           AND (c.relname LIKE 'fathom%' OR c.relname LIKE 'notify%') \
         ORDER BY pg_relation_size(c.oid) + coalesce(pg_total_relation_size(c.reltoastrelid), 0) DESC",
    )
    .fetch_all(pool)
    .await
    .expect("relations");
    for (name, kind, main, toast) in rows.iter().take(30) {
        let kind = if kind == "i" { "index" } else { "table" };
        eprintln!(
            "store relation {name} ({kind}): main={main} toast={toast} per_image={}",
            (main + toast) / images.max(1)
        );
    }
}

/// EXPLAIN (ANALYZE, BUFFERS) of one image's vulnerabilities, one by-vulnerability lookup and the
/// cold check's costliest query, and the sizes of a document and its parts
/// (`FATHOM_BENCH_STORE_EXPLAIN=1`), to stderr.
async fn explain(pool: &PgPool, digests: &[String], ids: &[String]) {
    let digest = pick(digests, 7);
    let id = pick(ids, 7);
    let plans = [
        (
            "vulns_image",
            fathom_vulns::store::queries::explain_sql("for_image"),
            digest,
        ),
        (
            "vulns_image_matched",
            fathom_vulns::store::queries::explain_sql("matched"),
            digest,
        ),
        (
            "by_cve",
            fathom_vulns::store::queries::explain_sql("by_vuln"),
            id,
        ),
    ];
    // The costliest read of a cold check: the matched stamps of the image's keys, in its feed state.
    let stamps = "SELECT min(k.matched_stamp), max(k.matched_stamp) FROM fathom_vuln_image_packages p \
         JOIN fathom_vuln_keys k ON k.ecosystem = p.ecosystem AND k.name = p.name AND k.version = p.version \
         WHERE p.manifest_digest = $1";
    let plans = plans.into_iter().chain([("check_stamps", stamps, digest)]);
    for (name, sql, arg) in plans {
        let sql = format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
        let mut q = sqlx::query_scalar::<_, String>(&sql).bind(arg);
        q = match name {
            "vulns_image" => q.bind(None::<bool>).bind(false),
            "by_cve" => q.bind("").bind(100_i64),
            _ => q,
        };
        let lines = q.fetch_all(pool).await.expect("explain");
        eprintln!("store explain {name}:\n  {}", lines.join("\n  "));
    }
    let doc: Option<(i32, i32)> = sqlx::query_as(
        "SELECT pg_column_size(document), length(document) FROM fathom_images WHERE manifest_digest = $1",
    )
    .bind(digest)
    .fetch_optional(pool)
    .await
    .expect("document size");
    eprintln!("store explain document (stored, raw bytes): {doc:?}");
    let parts: Vec<i32> = sqlx::query_scalar(
        "SELECT length(p.body) FROM fathom_images i JOIN fathom_image_package_parts p \
         ON p.hash = ANY(i.package_parts) AND p.cache_key = i.cache_key WHERE i.manifest_digest = $1",
    )
    .bind(digest)
    .fetch_all(pool)
    .await
    .expect("part sizes");
    eprintln!("store explain document parts (stored bytes): {parts:?}");
}
