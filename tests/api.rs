//! The core API over real HTTP: a real `fathom run` process serving `services.api` on a fresh database,
//! real workers analyzing images pushed to a real registry, and the CLI going through `--api`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use fathom_testkit::pg::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client, TOKEN};
use support::{WorkerProc, WorkerSpec};

/// A fresh database and the API serving it, with extra `services.api` lines (indented by four spaces).
async fn start(extra: &str) -> (TestDb, tempfile::TempDir, Api) {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), db.url(), extra);
    (db, dir, api)
}

/// Asserts an error answer: status, stable code, and a message mentioning `mention`.
fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, mention: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mention),
        "message {message:?} should mention {mention:?}"
    );
}

fn reference(n: usize) -> String {
    format!("registry.example.com/team/app{n}:1.0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_required_on_v1_and_health_and_metrics_stay_open() {
    let (_db, _dir, api) = start("").await;
    let client = api.client();
    let anonymous = client.anonymous();

    let answer = anonymous.get("/v1/queue").await;
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized", "Bearer");
    let raw = reqwest::get(format!("{}/v1/queue", api.base))
        .await
        .unwrap();
    assert_eq!(raw.headers()["www-authenticate"], "Bearer");
    let wrong = Client {
        token: Some("not-the-token-at-all-x".into()),
        ..client.anonymous()
    };
    assert_error(
        &wrong.get("/v1/images").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "not accepted",
    );
    assert_error(
        &anonymous
            .post("/v1/images", json!({"reference": "a/b:c"}))
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Bearer",
    );
    // Nothing was enqueued by the refused submission.
    let (status, stats) = client.get("/v1/queue").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["ready"], 0, "{stats}");

    assert_eq!(anonymous.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(anonymous.get("/readyz").await.0, StatusCode::OK);
    let (status, metrics) = anonymous.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains(
            r#"fathom_api_requests_total{method="GET",route="/v1/queue",status="401"} 2"#
        ),
        "{metrics}"
    );
    assert!(metrics
        .contains(r#"fathom_api_requests_total{method="GET",route="/v1/queue",status="200"} 1"#));
    assert!(metrics.contains("fathom_api_request_duration_seconds_bucket"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_off_serves_without_a_token_and_metrics_auth_guards_metrics() {
    let (_db, _dir, api) = start("    auth: false\n    metrics_auth: true\n").await;
    let anonymous = api.client().anonymous();
    assert_eq!(anonymous.get("/v1/queue").await.0, StatusCode::OK);
    assert_error(
        &anonymous.get("/metrics").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Bearer",
    );
    assert_eq!(api.client().get("/metrics").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_is_idempotent_and_bad_bodies_name_the_field() {
    let (_db, _dir, api) = start("    max_batch: 5\n    max_body_bytes: 2048\n").await;
    let client = api.client();

    let (status, first) = client
        .post("/v1/images", json!({"reference": reference(1)}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["created"], true);
    assert_eq!(first["status"], "queued");
    assert_eq!(first["reference"], reference(1));
    let job = first["job_id"].as_i64().unwrap();

    let (status, again) = client
        .post(
            "/v1/images",
            json!({"reference": reference(1), "priority": -5}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(again["created"], false);
    assert_eq!(again["job_id"], job);

    // Two spellings of one image are one submission.
    let (_, short) = client
        .post("/v1/images", json!({"reference": "alpine"}))
        .await;
    let (_, long) = client
        .post(
            "/v1/images",
            json!({"reference": "docker.io/library/alpine:latest"}),
        )
        .await;
    assert_eq!(short["reference"], "docker.io/library/alpine:latest");
    assert_eq!(short["job_id"], long["job_id"]);
    assert_eq!(long["created"], false);

    let (status, batch) = client
        .post(
            "/v1/images",
            json!({"references": [reference(1), reference(2), reference(2)], "priority": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
    let images = batch["images"].as_array().unwrap();
    assert_eq!(images.len(), 3);
    assert_eq!(images[0]["job_id"], job);
    assert_eq!(images[0]["created"], false);
    assert_eq!(images[1]["created"], true);
    assert_eq!(images[2]["created"], false);
    assert_eq!(images[1]["job_id"], images[2]["job_id"]);
    let (_, stats) = client.get("/v1/queue").await;
    assert_eq!(stats["ready"], 3, "{stats}");

    let six: Vec<String> = (10..16).map(reference).collect();
    let refused = [
        (
            json!({}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "reference",
        ),
        (
            json!({"reference": "a/b:1", "priority": "high"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "priority",
        ),
        (
            json!({"reference": "a/b:1", "priority": 70000}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "priority",
        ),
        (
            json!({"reference": "a/b:1", "colour": "red"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "colour",
        ),
        (
            json!({"reference": "a/b:1", "references": ["c/d:1"]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "not both",
        ),
        (
            json!({"references": []}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "references",
        ),
        (
            json!({"references": six}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "at most 5",
        ),
        (
            json!({"reference": "Not A/Reference!!"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reference",
            "Not A/Reference!!",
        ),
        (
            json!({"reference": "oci-dir:/etc"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reference",
            "local sources",
        ),
        // One bad reference in a batch refuses the whole batch: nothing half-submitted.
        (
            json!({"references": [reference(3), "UPPER/x"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reference",
            "UPPER/x",
        ),
    ];
    for (body, status, code, mention) in refused {
        assert_error(
            &client.post("/v1/images", body).await,
            status,
            code,
            mention,
        );
    }
    assert_error(
        &client
            .post("/v1/images", json!({"reference": "x".repeat(4096)}))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "max_body_bytes",
    );
    assert_error(
        &client
            .send(
                client
                    .request(reqwest::Method::POST, "/v1/images")
                    .body("{\"reference\": \"a/b:1\"}"),
            )
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "application/json",
    );
    assert_error(
        &client
            .send(
                client
                    .request(reqwest::Method::POST, "/v1/images")
                    .header("content-type", "application/json")
                    .body("{\"reference\": "),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "JSON",
    );
    let (_, stats) = client.get("/v1/queue").await;
    assert_eq!(
        stats["ready"], 3,
        "refused requests enqueued something: {stats}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_cursors_and_filter_by_status_and_reference() {
    let (_db, _dir, api) = start("").await;
    let client = api.client();
    let refs: Vec<String> = (0..7).map(reference).collect();
    for r in &refs {
        // One by one, so submission times differ and the order is defined.
        let (status, _) = client.post("/v1/images", json!({"reference": r})).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/images?limit=3&cursor={c}"),
            None => "/v1/images?limit=3".to_string(),
        };
        let (status, page) = client.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["reference"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<String> = refs.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let (_, queued) = client.get("/v1/images?status=queued&limit=100").await;
    assert_eq!(queued["items"].as_array().unwrap().len(), 7);
    let (_, analyzed) = client.get("/v1/images?status=analyzed").await;
    assert_eq!(analyzed["items"].as_array().unwrap().len(), 0);
    assert!(analyzed["next"].is_null());
    let (_, one) = client
        .get(&format!("/v1/images?reference={}", reference(4)))
        .await;
    let items = one["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["reference"], reference(4));

    for (query, mention) in [
        ("status=done", "status"),
        ("cursor=yesterday", "cursor"),
        ("cursor=9223372036854775807.1", "cursor"),
        ("cursor=-5.1", "cursor"),
        ("limit=0", "limit"),
        ("limit=100000", "maximum page size"),
        ("limit=ten", "limit"),
        ("sort=name", "sort"),
    ] {
        assert_error(
            &client.get(&format!("/v1/images?{query}")).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            mention,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_found_by_id_and_only_queued_ones_cancel() {
    let (_db, _dir, api) = start("").await;
    let client = api.client();
    let (_, submitted) = client
        .post("/v1/images", json!({"reference": reference(1)}))
        .await;
    let job = submitted["job_id"].as_i64().unwrap();

    let (status, by_job) = client.get(&format!("/v1/images/by-job/{job}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_job["reference"], reference(1));
    assert_eq!(by_job["status"], "queued");

    let (status, _) = client.delete(&format!("/v1/jobs/{job}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, by_job) = client.get(&format!("/v1/images/by-job/{job}")).await;
    assert_eq!(by_job["status"], "cancelled");
    assert_error(
        &client.delete(&format!("/v1/jobs/{job}")).await,
        StatusCode::CONFLICT,
        "conflict",
        "cancelled",
    );
    assert_error(
        &client.delete("/v1/jobs/987654321").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "987654321",
    );
    assert_error(
        &client.delete("/v1/jobs/latest").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "path",
    );
    assert_error(
        &client.get("/v1/images/by-job/987654321").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "987654321",
    );
    let (_, stats) = client.get("/v1/queue").await;
    assert_eq!(stats["cancelled"], 1, "{stats}");
    // A cancelled reference can be submitted again: a new job.
    let (_, again) = client
        .post("/v1/images", json!({"reference": reference(1)}))
        .await;
    assert_eq!(again["created"], true);
    assert_ne!(again["job_id"], job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_methods_and_digests_answer_json_errors() {
    let (_db, _dir, api) = start("").await;
    let client = api.client();
    assert_error(
        &client.get("/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "/v1/nothing-here",
    );
    assert_error(
        &client
            .send(client.request(reqwest::Method::PUT, "/v1/images"))
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "PUT",
    );
    assert_error(
        &client.get("/v1/images/latest").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "digest",
    );
    let unknown = format!("sha256:{}", "0".repeat(64));
    for path in ["", "/packages", "/layers", "/sbom"] {
        assert_error(
            &client.get(&format!("/v1/images/{unknown}{path}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
            &unknown,
        );
    }
    assert_error(
        &client
            .get(&format!("/v1/images/{unknown}/sbom?format=xml"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "format",
    );
    assert_error(
        &client.get("/v1/packages").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "name",
    );
    let (status, none) = client.get("/v1/packages?name=openssl").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_timeout_answer_503() {
    // Any database round trip takes longer than a nanosecond; the health check does not need one.
    let (_db, _dir, api) = start("    request_timeout: 1ns\n").await;
    let client = api.client();
    assert_error(
        &client.get("/v1/queue").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "timeout",
        "request_timeout",
    );
    assert_eq!(client.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_lists_every_route() {
    let (_db, dir, api) = start("").await;
    let client = api.client();
    let (status, doc) = client.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python3 (scripts/deps.d/40-api.sh installs openapi-spec-validator)");
    assert!(
        out.status.success(),
        "OpenAPI document invalid (pip install openapi-spec-validator if missing): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every documented path is served (a 404 would mean the router lost it).
    let digest = format!("sha256:{}", "0".repeat(64));
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{digest}", &digest).replace("{id}", "1");
        for method in ops.as_object().unwrap().keys() {
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let answer = client
                .send(client.request(method.clone(), &concrete).json(&json!({})))
                .await;
            let code = answer.1["error"]["code"].as_str().unwrap_or_default();
            assert!(
                code != "method_not_allowed"
                    && !(answer.0 == StatusCode::NOT_FOUND
                        && code == "not_found"
                        && answer.1["error"]["message"]
                            .as_str()
                            .unwrap_or_default()
                            .starts_with("no route")),
                "{method} {path} is documented but not served: {answer:?}"
            );
        }
    }
}

/// Polls `GET path` until `done` holds for its JSON answer (or panics after `timeout`); returns it.
async fn poll_until(
    client: &Client,
    path: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (_, answer) = client.get(path).await;
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never got there: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts that the API's `/metrics` has this exact sample line.
async fn assert_metric(client: &Client, sample: &str) {
    let (_, metrics) = client.get("/metrics").await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.lines().any(|l| l == sample),
        "no {sample:?} in:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_image_is_analyzed_and_served_as_a_valid_cyclonedx_sbom() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let digest = pushed[0].1.manifest_digest();
    let api = Api::start(dir.path(), db.url(), "");
    let client = api.client();
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());

    let (status, submitted) = client
        .post("/v1/images", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    let job = submitted["job_id"].as_i64().unwrap();
    let done = client.wait_done(job).await;
    assert_eq!(done["status"], "analyzed", "{done}");
    assert_eq!(done["digest"], digest);
    let packages = done["packages"].as_i64().unwrap();
    assert!(packages > 50, "{done}");

    let (status, image) = client.get(&format!("/v1/images/{digest}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(image["status"], "analyzed");
    assert_eq!(image["references"], json!([reference]));
    assert_eq!(image["package_count"], packages);

    let (_, layers) = client.get(&format!("/v1/images/{digest}/layers")).await;
    assert_eq!(
        layers["layers"].as_array().unwrap().len(),
        image["layers"].as_array().unwrap().len()
    );
    let (_, debs) = client
        .get(&format!("/v1/images/{digest}/packages?type=deb"))
        .await;
    let debs = debs["packages"].as_array().unwrap().clone();
    assert!(!debs.is_empty());
    assert!(debs.iter().all(|p| p["package_type"] == "deb"), "{debs:?}");
    let name = debs[0]["name"].as_str().unwrap().to_string();
    let (_, found) = client
        .get(&format!("/v1/packages?name={name}&type=deb"))
        .await;
    let hits = found["items"].as_array().unwrap();
    assert!(
        hits.iter().any(|h| h["manifest_digest"] == digest),
        "{found}"
    );

    let response = client
        .request(
            reqwest::Method::GET,
            &format!("/v1/images/{digest}/sbom?format=cyclonedx-json"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/vnd.cyclonedx+json"));
    let sbom = response.bytes().await.unwrap();
    let file = dir.path().join("sbom.cdx.json");
    std::fs::write(&file, &sbom).unwrap();
    if let Err(findings) = fathom_testkit::validate::cyclonedx(&file) {
        panic!("CycloneDX validation failed: {findings}");
    }
    let doc: Value = serde_json::from_slice(&sbom).unwrap();
    let libraries = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] != "operating-system")
        .count();
    assert_eq!(libraries as i64, packages);

    for (format, content_type, marker) in [
        ("spdx-json", "application/spdx+json", "spdxVersion"),
        ("json", "application/json", "introduced_in"),
    ] {
        let response = client
            .request(
                reqwest::Method::GET,
                &format!("/v1/images/{digest}/sbom?format={format}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], content_type);
        assert!(response.text().await.unwrap().contains(marker));
    }

    // An image that is not there fails its job with a message a person can act on; the worker lives on.
    let missing = format!(
        "{}/{}-missing:v1",
        support::registry(),
        pushed[0].0.replace(':', "-")
    );
    let (_, failed) = client
        .post("/v1/images", json!({"reference": missing}))
        .await;
    let failed = client.wait_done(failed["job_id"].as_i64().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains("manifest unknown"),
        "{failed}"
    );

    // Submitting the analyzed image again reuses the result; `force` analyzes it again from scratch.
    let (_, again) = client
        .post("/v1/images", json!({"reference": reference}))
        .await;
    assert_eq!(again["created"], false);
    assert_eq!(again["status"], "analyzed");
    assert_eq!(again["job_id"], job);
    let (_, forced) = client
        .post("/v1/images", json!({"reference": reference, "force": true}))
        .await;
    assert_eq!(forced["created"], true, "{forced}");
    let forced_job = forced["job_id"].as_i64().unwrap();
    assert_ne!(forced_job, job);
    assert_eq!(client.wait_done(forced_job).await["status"], "analyzed");
    let (_, layers) = client.get(&format!("/v1/images/{digest}/layers")).await;
    assert!(
        layers["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["from_cache"] == false),
        "a forced analysis must not reuse cached layers: {layers}"
    );
    // The forced analysis replaced the cached layers and their package rows: still searchable.
    let (_, found) = client
        .get(&format!("/v1/packages?name={name}&type=deb"))
        .await;
    assert!(
        found["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["manifest_digest"] == digest),
        "{found}"
    );

    // The CLI goes through the API with --api/--token and prints the same records.
    let cli = |args: &[&str]| {
        support::fathom()
            .args(args)
            .args(["--api", &api.base, "--token", TOKEN])
            .output()
            .unwrap()
    };
    let out = cli(&["status", "--json", &reference]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries[0]["status"], "analyzed");
    assert_eq!(entries[0]["digest"], digest);
    let out = cli(&["submit", &reference]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already analyzed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cli(&["results", &reference, "-o", "table"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&name));
    let out = support::fathom()
        .args([
            "status",
            &reference,
            "--api",
            &api.base,
            "--token",
            "wrong-token-wrong-token",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_and_the_api_recovers() {
    use fathom_testkit::pg::{Durability, OwnedCluster};
    let cluster = tokio::task::spawn_blocking(|| OwnedCluster::start(Durability::Throwaway))
        .await
        .unwrap()
        .expect("a cluster of our own to stop");
    let url = cluster.info().url("postgres");
    let out = support::cli(&url, &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), &url, "    request_timeout: 5s\n");
    let client = api.client();
    assert_eq!(client.get("/readyz").await.0, StatusCode::OK);
    assert_eq!(client.get("/v1/queue").await.0, StatusCode::OK);

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop().expect("stop postgres");
        cluster
    })
    .await
    .unwrap();
    let (status, text) = client.get("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    let answer = client.get("/v1/queue").await;
    assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert!(
        matches!(
            answer.1["error"]["code"].as_str(),
            Some("unavailable" | "timeout")
        ),
        "{answer:?}"
    );
    assert_eq!(client.get("/healthz").await.0, StatusCode::OK);

    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again().expect("start postgres again");
        cluster
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get("/readyz").await.0 != StatusCode::OK {
        assert!(
            Instant::now() < deadline,
            "the API never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, submitted) = client
        .post(
            "/v1/images",
            json!({"reference": "registry.example.com/after:1"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_rescues_leases_of_dead_workers() {
    let (db, _dir, api) = start("    rescue_interval: 200ms\n").await;
    let client = api.client();
    let (_, submitted) = client
        .post("/v1/images", json!({"reference": reference(1)}))
        .await;
    let job = submitted["job_id"].as_i64().unwrap();
    // A "worker" claims the job with a short lease and dies without a word.
    let handles = support::Db::new(db.url());
    let claimed = handles
        .queue
        .claim("analyze", 1, "ghost-worker", Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        client.get(&format!("/v1/images/by-job/{job}")).await.1["status"],
        "analyzing"
    );
    let entry = poll_until(
        &client,
        &format!("/v1/images/by-job/{job}"),
        Duration::from_secs(10),
        |entry| entry["status"] == "queued",
    )
    .await;
    assert_eq!(entry["attempts"], 1, "{entry}");
    assert_metric(&client, "fathom_core_rescued_jobs_total 1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_core_prunes_finished_jobs_past_their_retention() {
    let (_db, _dir, api) = start("    prune_interval: 200ms\n    job_retention: 1s\n").await;
    let client = api.client();
    let (_, old) = client
        .post("/v1/images", json!({"reference": reference(1)}))
        .await;
    let (_, live) = client
        .post("/v1/images", json!({"reference": reference(2)}))
        .await;
    let (status, _) = client.delete(&format!("/v1/jobs/{}", old["job_id"])).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stats = poll_until(&client, "/v1/queue", Duration::from_secs(10), |stats| {
        stats["cancelled"] == 0
    })
    .await;
    // The queued job is untouched; the finished one is gone from the queue.
    assert_eq!(stats["ready"], 1, "{stats}");
    assert_metric(&client, "fathom_core_pruned_jobs_total 1").await;
    let (_, entry) = client
        .get(&format!("/v1/images/by-job/{}", live["job_id"]))
        .await;
    assert_eq!(entry["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_in_opposite_orders_both_succeed() {
    let (_db, _dir, api) = start("").await;
    let client = api.client();
    for round in 0..5 {
        // Without one lock order, two such batches deadlock on the dedup index most of the time.
        let forward: Vec<String> = (0..1000)
            .map(|i| format!("registry.example.com/r{round}/app{i}:1"))
            .collect();
        let backward: Vec<String> = forward.iter().rev().cloned().collect();
        let (a, b) = tokio::join!(
            client.post("/v1/images", json!({ "references": forward })),
            client.post("/v1/images", json!({ "references": backward })),
        );
        assert_eq!(a.0, StatusCode::ACCEPTED, "{:?}", a.1);
        assert_eq!(b.0, StatusCode::ACCEPTED, "{:?}", b.1);
        // Each reference has one job, and exactly one of the two requests created it.
        let a = a.1["images"].as_array().unwrap().clone();
        let b = b.1["images"].as_array().unwrap().clone();
        for (x, y) in a.iter().zip(b.iter().rev()) {
            assert_eq!(x["reference"], y["reference"]);
            assert_eq!(x["job_id"], y["job_id"]);
            assert_ne!(x["created"], y["created"], "{x} {y}");
        }
    }
    let (_, stats) = client.get("/v1/queue").await;
    assert_eq!(stats["ready"], 5000, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_is_not_swallowed_by_a_queued_normal_job() {
    let (_db, _dir, api) = start("").await;
    let client = api.client();
    let (_, normal) = client
        .post("/v1/images", json!({"reference": reference(1)}))
        .await;
    let (status, forced) = client
        .post(
            "/v1/images",
            json!({"reference": reference(1), "force": true}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(forced["created"], true, "{forced}");
    assert_ne!(forced["job_id"], normal["job_id"]);
    // Forcing twice while the forced job waits is one forced job.
    let (_, again) = client
        .post(
            "/v1/images",
            json!({"reference": reference(1), "force": true}),
        )
        .await;
    assert_eq!(again["job_id"], forced["job_id"]);
    assert_eq!(again["created"], false);
    let (_, stats) = client.get("/v1/queue").await;
    assert_eq!(stats["ready"], 2, "{stats}");
}
