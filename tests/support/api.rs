//! A real `fathom run` serving `services.api` on a test database, and a small JSON client for it.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::{free_addr, http_get};

/// The bearer token every test API accepts.
pub const TOKEN: &str = "test-token-0123456789abcdef";

/// A running `fathom run` with only the API enabled.
pub struct Api {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its stdout.
    pub log: std::path::PathBuf,
}

impl Api {
    /// Starts the API with extra `services.api` YAML lines (indented by four spaces).
    pub fn start(dir: &Path, database_url: &str, extra: &str) -> Api {
        Api::start_with_analyzer(dir, database_url, "", extra)
    }

    /// [`Api::start`] with `services.analyzer` YAML lines too (indented by four spaces): the core reads
    /// the analyzer's content keys for the cache key it submits under.
    pub fn start_with_analyzer(dir: &Path, database_url: &str, analyzer: &str, extra: &str) -> Api {
        let addr = free_addr();
        let config = dir.join("core.yaml");
        std::fs::write(
            &config,
            format!(
                "database:\n  url: '{database_url}'\n  pool_size: 8\n\
                 services:\n  analyzer:\n    enabled: false\n{analyzer}  api:\n    enabled: true\n    \
                 address: '{addr}'\n    tokens: ['{TOKEN}']\n{extra}"
            ),
        )
        .unwrap();
        let log = dir.join("core.log");
        let child = super::fathom()
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("core.err")).unwrap())
            .spawn()
            .unwrap();
        let api = Api {
            child,
            base: format!("http://{addr}"),
            addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(&api.addr, "/healthz").map(|r| r.0) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "API did not come up: {}",
                std::fs::read_to_string(dir.join("core.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        api
    }

    /// A client sending the accepted token.
    pub fn client(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: reqwest::Client::new(),
            token: Some(TOKEN.to_string()),
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON client of the test API.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
}

impl Client {
    pub fn anonymous(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: self.http.clone(),
            token: None,
        }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let b = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => b.bearer_auth(t),
            None => b,
        }
    }

    pub async fn send(&self, b: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = b.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Polls `GET /v1/images/by-job/{job}` until it reports a final status (analyzed or failed) and
    /// returns that entry; panics after 90 s.
    pub async fn wait_done(&self, job: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, entry) = self.get(&format!("/v1/images/by-job/{job}")).await;
            if status == StatusCode::OK
                && matches!(entry["status"].as_str(), Some("analyzed" | "failed"))
            {
                return entry;
            }
            assert!(Instant::now() < deadline, "job {job} not done: {entry}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Submits `reference` (expecting `202 Accepted`) and waits until its job is analyzed; returns the
    /// final entry. A failed analysis fails the caller.
    pub async fn submit_and_wait(&self, reference: &str) -> Value {
        let (status, submitted) = self
            .post("/v1/images", serde_json::json!({"reference": reference}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
        let job = submitted["job_id"].as_i64().unwrap();
        let done = self.wait_done(job).await;
        assert_eq!(done["status"], "analyzed", "{done}");
        done
    }
}
