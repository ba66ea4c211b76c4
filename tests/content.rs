//! The content pass end to end: a real worker analyzes a sample image with planted secrets and setuid
//! files, the real API serves its file inventory and secrets, and the planted values appear nowhere
//! (API answers, store rows, stored documents, worker log).

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::samples::{
    expected_secrets, PLANTED_AWS_KEY, PLANTED_PEM_BODY, PLANTED_SETGID, PLANTED_SETUID,
};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::{WorkerProc, WorkerSpec};

async fn wait_done(client: &Client, job: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, entry) = client.get(&format!("/v1/images/by-job/{job}")).await;
        if status == StatusCode::OK
            && matches!(entry["status"].as_str(), Some("analyzed" | "failed"))
        {
            return entry;
        }
        assert!(Instant::now() < deadline, "job {job} not done: {entry}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(PLANTED_AWS_KEY), "{what} leaks the AWS key");
    assert!(!text.contains(PLANTED_PEM_BODY), "{what} leaks the PEM key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_secrets_are_served_and_secret_values_are_stored_nowhere() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let digest = pushed[0].1.manifest_digest();
    let api = Api::start(dir.path(), db.url(), "");
    let client = api.client();
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let (status, submitted) = client
        .post("/v1/images", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let done = wait_done(&client, submitted["job_id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "analyzed", "{done}");

    // Secrets: exactly the planted visible ones (the deleted copy is not reported).
    let (status, secrets) = client.get(&format!("/v1/images/{digest}/secrets")).await;
    assert_eq!(status, StatusCode::OK, "{secrets}");
    let got: Vec<(String, u64, String)> = secrets["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["line"].as_u64().unwrap(),
                s["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got, expected_secrets("debian-python-npm"));
    assert_clean("secrets answer", &secrets.to_string());

    // setuid filter.
    let (status, suid) = client
        .get(&format!("/v1/images/{digest}/files?suid=true"))
        .await;
    assert_eq!(status, StatusCode::OK, "{suid}");
    let paths: Vec<&str> = suid["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [PLANTED_SETUID]);
    let (_, sgid) = client
        .get(&format!("/v1/images/{digest}/files?sgid=true"))
        .await;
    assert_eq!(sgid["items"][0]["path"], PLANTED_SETGID);
    assert_eq!(sgid["items"][0]["mode"], 0o2755);

    // Paging by path under a prefix walks every file exactly once, in order.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/images/{digest}/files?path_prefix=/app/&limit=7");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = client.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_clean("files page", &page.to_string());
        for f in page["items"].as_array().unwrap() {
            let p = f["path"].as_str().unwrap().to_string();
            assert!(p.starts_with("/app/"), "{p}");
            assert!(f["layer"]["digest"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"));
            seen.push(p);
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert!(seen.len() > 7, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(seen.contains(&"/app/.env".to_string()));
    assert!(!seen.contains(&"/app/old.env".to_string()));
    assert!(!seen.iter().any(|p| p.starts_with("/app/node_modules/ms/")));
    let (_, env) = client
        .get(&format!("/v1/images/{digest}/files?path_prefix=/app/.env"))
        .await;
    assert_eq!(env["items"][0]["sha256"].as_str().unwrap().len(), 64);

    // Deb licenses from the copyright files reach the SBOM.
    let (_, debs) = client
        .get(&format!("/v1/images/{digest}/packages?type=deb"))
        .await;
    assert!(debs["packages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["licenses"] == json!(["GPL-2.0-or-later"])));
    for format in ["json", "cyclonedx-json", "spdx-json"] {
        let (status, sbom) = client
            .get(&format!("/v1/images/{digest}/sbom?format={format}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_clean(format, &sbom.to_string());
    }

    // The store: secret rows hold no values; nor do the stored documents or the worker's log.
    let store = fathom_worker::store::Store::connect_lazy(db.url(), 1).unwrap();
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT path, line, rule FROM fathom_layer_secrets ORDER BY path, line")
            .fetch_all(store.pool())
            .await
            .unwrap();
    // The deleted `/app/old.env` is stored with its layer (a layer is the same whatever sits on top).
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_clean("secret rows", &format!("{rows:?}"));
    let doc = store.document(&digest).await.unwrap().unwrap();
    assert_clean("image document", &serde_json::to_string(&doc).unwrap());
    for layer in &doc.image.layers {
        let r = store
            .layer(&layer.digest, &doc.analyzer.cache_key)
            .await
            .unwrap()
            .unwrap();
        assert_clean("layer result", &serde_json::to_string(&r).unwrap());
    }
    assert_clean("worker log", &worker.log_text());

    // Unknown images answer 404 on both routes.
    let unknown = format!("sha256:{}", "0".repeat(64));
    for route in ["files", "secrets"] {
        let (status, _) = client.get(&format!("/v1/images/{unknown}/{route}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
