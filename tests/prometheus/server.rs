//! A real Prometheus server (Debian's `prometheus` package) on loopback with its own configuration and
//! data directory, scraping every second and evaluating `deploy/prometheus/rules.yaml`; and a client of
//! its HTTP API.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Scrape and rule evaluation interval: short, so a test sees rates and `for` clauses move in seconds.
pub const INTERVAL: &str = "1s";

/// One series of a query answer: its labels and its values in time order (`NaN` included).
#[derive(Debug, Clone)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub values: Vec<f64>,
}

impl Series {
    /// Whether a panel plotting it shows anything: some value is a number.
    pub fn has_data(&self) -> bool {
        self.values.iter().any(|v| !v.is_nan())
    }
}

/// A running Prometheus, killed when dropped.
pub struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts `prometheus` with `scrape_configs` (YAML, the list's items at two spaces' indentation)
    /// and the repository's rules, its data under `dir/prometheus`; waits until it is ready.
    pub async fn start(dir: &Path, rules: &Path, scrape_configs: &str) -> Prometheus {
        let home = dir.join("prometheus");
        std::fs::create_dir_all(&home).expect("prometheus dir");
        let config = home.join("prometheus.yaml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {INTERVAL}\n  \
                 evaluation_interval: {INTERVAL}\nrule_files: ['{}']\nscrape_configs:\n{scrape_configs}",
                rules.display()
            ),
        )
        .expect("write prometheus.yaml");
        let addr = crate::support::free_addr();
        let log = home.join("prometheus.log");
        let file = std::fs::File::create(&log).expect("prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                home.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("prometheus log"))
            .stderr(file)
            .spawn()
            .expect("run prometheus (apt-get install prometheus; scripts/deps.d installs it)");
        let prometheus = Prometheus {
            child,
            base: format!("http://{addr}"),
            log,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = prometheus
                .http
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never ready; log:\n{}",
                prometheus.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/{path}`'s `data`, after asserting success.
    pub async fn api(&self, path: &str) -> Value {
        let answer: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus JSON");
        assert_eq!(answer["status"], "success", "{path}: {answer}");
        answer["data"].clone()
    }

    /// An instant query at now; Prometheus' error (a parse error, say) as `Err`.
    pub async fn query(&self, expr: &str) -> Result<Vec<Series>, String> {
        self.post("query", &[("query", expr.to_string())]).await
    }

    /// A range query from `start` to now (Unix seconds) at `step` seconds.
    pub async fn query_range(
        &self,
        expr: &str,
        start: f64,
        step: u32,
    ) -> Result<Vec<Series>, String> {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        self.post(
            "query_range",
            &[
                ("query", expr.to_string()),
                ("start", format!("{start:.3}")),
                ("end", format!("{end:.3}")),
                ("step", step.to_string()),
            ],
        )
        .await
    }

    async fn post(&self, endpoint: &str, form: &[(&str, String)]) -> Result<Vec<Series>, String> {
        let answer: Value = self
            .http
            .post(format!("{}/api/v1/{endpoint}", self.base))
            .form(form)
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("prometheus JSON");
        if answer["status"] != "success" {
            return Err(format!("{}: {}", answer["errorType"], answer["error"]));
        }
        let data = &answer["data"];
        let number = |v: &Value| -> f64 {
            v[1].as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let series = |item: &Value| -> Series {
            let labels = item["metric"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let values = match item.get("values") {
                Some(Value::Array(points)) => points.iter().map(number).collect(),
                _ => vec![number(&item["value"])],
            };
            Series { labels, values }
        };
        match data["resultType"].as_str() {
            Some("vector" | "matrix") => Ok(data["result"]
                .as_array()
                .map(|items| items.iter().map(series).collect())
                .unwrap_or_default()),
            // A bare number (`scalar(...)`, `1 > 0`): one unlabelled series.
            Some("scalar") => Ok(vec![Series {
                labels: BTreeMap::new(),
                values: vec![number(&data["result"])],
            }]),
            other => Err(format!("unexpected result type {other:?}: {data}")),
        }
    }

    /// Polls `expr` until `done` holds for its answer, or panics after `timeout` with the last answer.
    pub async fn wait_for(
        &self,
        what: &str,
        expr: &str,
        timeout: Duration,
        done: impl Fn(&[Series]) -> bool,
    ) -> Vec<Series> {
        let deadline = Instant::now() + timeout;
        loop {
            let answer = self
                .query(expr)
                .await
                .unwrap_or_else(|e| panic!("{expr}: {e}"));
            if done(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({expr}): {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
