//! The split deployment's policy engine: a real API-only `fathom run` with `services.api.policy_engine_url`
//! and a real policy-engine-only `fathom run`, on one real Postgres, with an image analyzed by a real
//! worker. A check through the API is the engine's answer; the engine counts it, records it in the
//! image's history (trimmed to its bound) and the API pages that history; a stopped or silent engine is a
//! prompt `503 policy_engine_unavailable`, never a hang.

mod support;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use fathom_testkit::pg::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client, TOKEN};
use support::{fathom, free_addr, http_get, WorkerProc, WorkerSpec};

/// A policy-engine-only `fathom run`, killed when dropped.
struct Engine {
    child: Child,
    addr: String,
}

impl Engine {
    fn start(dir: &Path, database_url: &str, addr: &str, extra: &str) -> Engine {
        let config = dir.join("engine.yaml");
        std::fs::write(
            &config,
            format!(
                "database:\n  url: '{database_url}'\n  pool_size: 4\nservices:\n  api:\n    \
                 enabled: false\n    tokens: ['{TOKEN}']\n  policy_engine:\n    address: '{addr}'\n{extra}"
            ),
        )
        .unwrap();
        let child = fathom()
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::fs::File::create(dir.join("engine.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("engine.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(addr, "/readyz").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "engine did not come up: {}",
                std::fs::read_to_string(dir.join("engine.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Engine {
            child,
            addr: addr.to_string(),
        }
    }

    fn client(&self) -> Client {
        Client {
            base: format!("http://{}", self.addr),
            http: reqwest::Client::new(),
            token: Some(TOKEN.to_string()),
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A check with its `fathom-cache` header.
async fn check(client: &Client, path: &str) -> (StatusCode, Value, String) {
    let response = client
        .request(reqwest::Method::GET, path)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer, not a hang");
    let status = response.status();
    let cache = response
        .headers()
        .get("fathom-cache")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, response.json().await.unwrap(), cache)
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// Analyzes the sample `debian-python-npm` through the API with a real worker; returns its digest.
async fn analyzed(client: &Client, dir: &Path, db: &TestDb) -> String {
    let pushed = support::push_samples(&["debian-python-npm"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let _worker = WorkerProc::start(dir, "w1", db.url(), &WorkerSpec::default());
    let done = client.submit_and_wait(&reference).await;
    done["digest"].as_str().unwrap().to_string()
}

/// A bundle that STOPs on every image.
fn always_stop(id: &str) -> Value {
    json!({
        "id": id, "version": "1_0",
        "policies": [{"id": "p", "version": "1_0", "rules": [{"id": "r", "gate": "always", "trigger": "always", "action": "STOP"}]}],
        "mappings": [{"registry": "*", "repository": "*", "image": {"type": "tag", "value": "*"}, "policy_id": "p"}],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_forwards_checks_to_the_policy_engine_and_fails_fast_without_it() {
    let db = TestDb::create(&[
        &fathom_queue::migrator(),
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
        &fathom_policy::store::migrator(),
    ])
    .await
    .expect("test database");
    let (core_dir, engine_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let engine_addr = free_addr();
    let api = Api::start(
        core_dir.path(),
        db.url(),
        &format!("    policy_engine_url: 'http://{engine_addr}'\n    policy_engine_timeout: 2s\n"),
    );
    let client = api.client();
    let digest = analyzed(&client, core_dir.path(), &db).await;
    let engine = Engine::start(
        engine_dir.path(),
        db.url(),
        &engine_addr,
        "    history_per_image: 2\n",
    );
    let path = format!("/v1/images/{digest}/check");

    // Through the API: the engine evaluates (a miss in the engine's cache); asked directly next, the
    // engine answers the very same evaluation from its cache. Had the API evaluated itself, the engine
    // would miss here.
    let (status, forwarded, cache) = check(&client, &path).await;
    assert_eq!(status, StatusCode::OK, "{forwarded}");
    assert_eq!(cache, "miss");
    let (status, direct, cache) = check(&engine.client(), &path).await;
    assert_eq!(status, StatusCode::OK, "{direct}");
    assert_eq!(cache, "hit");
    assert_eq!(forwarded, direct);
    assert_eq!(forwarded["bundle_id"], "fathom-default-bundle");
    // The engine sees bundles stored through the API (one database).
    let (status, stored) = client.post("/v1/policies", always_stop("stop-all")).await;
    assert!(status.is_success(), "{stored}");
    let (status, stopped, _) = check(&client, &format!("{path}?policy_id=stop-all")).await;
    assert_eq!(status, StatusCode::OK, "{stopped}");
    assert_eq!(stopped["final_action"], "STOP");
    assert_eq!(stopped["status"], "fail");
    // The engine's errors pass through with their status.
    let (status, missing, _) = check(&client, &format!("{path}?policy_id=nope")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    let (status, anonymous) = client.anonymous().get(&path).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{anonymous}");

    // A third evaluation (another bundle): the history keeps the newest two, newest first, paged.
    client.post("/v1/policies", always_stop("stop-too")).await;
    check(&client, &format!("{path}?policy_id=stop-too")).await;
    let (status, history) = client.get(&format!("/v1/images/{digest}/checks")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let bundles: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["bundle_id"].as_str().unwrap())
        .collect();
    assert_eq!(bundles, ["stop-too", "stop-all"], "{history}");
    assert_eq!(history["items"][0]["final_action"], "stop");
    assert_eq!(history["items"][0]["reason"], "policy_evaluation");
    assert_eq!(history["items"][0]["image_digest"], digest.as_str());
    assert!(history["next"].is_null(), "{history}");
    let (_, first) = client
        .get(&format!("/v1/images/{digest}/checks?limit=1"))
        .await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let cursor = first["next"].as_str().expect("a next page");
    let (_, second) = client
        .get(&format!(
            "/v1/images/{digest}/checks?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(second["items"][0]["bundle_id"], "stop-all", "{second}");
    let (status, _) = client.get("/v1/images/sha256:nothex/checks").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The engine's metrics: 3 evaluations (default GO/WARN, two STOP), 1 cache hit.
    let (_, text) = http_get(&engine.addr, "/metrics").expect("engine metrics");
    assert_eq!(metric(&text, "fathom_policy_cache_hits_total"), 1.0);
    assert_eq!(metric(&text, "fathom_policy_cache_misses_total"), 3.0);
    assert_eq!(
        metric(
            &text,
            r#"fathom_policy_evaluations_total{final_action="stop"}"#
        ),
        2.0
    );
    assert!(text.contains("fathom_policy_evaluation_duration_seconds_bucket{cache=\"miss\""));

    // The engine stops: the API answers at once, naming the engine.
    drop(engine);
    let (status, down, _) = check(&client, &path).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{down}");
    assert_eq!(down["error"]["code"], "policy_engine_unavailable", "{down}");
    let message = down["error"]["message"].as_str().unwrap();
    assert!(message.contains(&engine_addr), "{message}");
    assert!(message.contains("cannot be reached"), "{message}");

    // An engine that accepts but never answers: 503 after services.api.policy_engine_timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let hung_dir = tempfile::tempdir().unwrap();
    let hung_api = Api::start(
        hung_dir.path(),
        db.url(),
        &format!("    policy_engine_url: 'http://{silent_addr}'\n    policy_engine_timeout: 1s\n"),
    );
    let (status, late, _) = check(&hung_api.client(), &path).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{late}");
    assert_eq!(late["error"]["code"], "policy_engine_unavailable");
    assert!(
        late["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within services.api.policy_engine_timeout (1s)"),
        "{late}"
    );
    drop(silent);
}
