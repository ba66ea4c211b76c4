//! Shared harness of the service tests: a database per test, images pushed to the run's shared
//! registry, `fathom` processes (workers, autoscalers and CLI), a fault-injecting registry proxy, and the
//! [`Fleet`] that puts them together for one scenario.
#![allow(dead_code, unused_imports)]

pub mod api;
pub mod autoscaler;
pub mod delivery;
pub mod fleet;
pub mod forget;
pub mod notify_data;
pub mod osv_server;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fathom_queue::{Queue, QueueConfig};
use fathom_testkit::pg::TestDb;
use fathom_testkit::{BuiltImage, Compress, Pusher};
use fathom_worker::store::{StatusEntry, Store};

pub use fleet::Fleet;
pub use proxy::Proxy;

/// The `fathom` binary under test: cargo's, or `FATHOM_TEST_BIN` when set (a copy taken right after the
/// build, for a target directory other builds write to as well).
pub fn fathom() -> Command {
    let bin =
        std::env::var_os("FATHOM_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_fathom").into());
    let mut cmd = Command::new(bin);
    cmd.env_remove("DATABASE_URL").stdin(Stdio::null());
    cmd
}

/// A fresh database with the queue's and the store's migrations.
pub async fn test_db() -> TestDb {
    // Every table `fathom migrate` makes: the core's checks and the webhook read the feed and bundle tables.
    TestDb::create(&[
        &fathom_queue::migrator(),
        // The store's carries the notifications' outbox too.
        &fathom_worker::store::migrator(),
        &fathom_vulns::migrator(),
        &fathom_policy::store::migrator(),
        &fathom_catalog::migrator(),
    ])
    .await
    .expect("test database")
}

/// The run's shared registry (`127.0.0.1:PORT`).
pub fn registry() -> String {
    fathom_testkit::registry::shared()
        .expect("test registry (apt-get install docker-registry)")
        .addr
        .clone()
}

/// A repository prefix no other test (or test process) uses.
pub fn unique_repo(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "svc{}-{}/{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Builds the named sample images and pushes them to the shared registry under a unique repository;
/// returns `(repo:tag path without host, image)` pairs.
pub async fn push_samples(names: &[&str]) -> Vec<(String, BuiltImage)> {
    let registry = registry();
    let pusher = Pusher::new(&registry, None);
    let samples = fathom_testkit::samples::sample_images();
    let mut out = Vec::new();
    for name in names {
        let sample = samples
            .iter()
            .find(|s| s.name == *name)
            .unwrap_or_else(|| panic!("no sample image {name}"));
        let image = BuiltImage::from_sample(sample, Compress::Gzip).unwrap();
        let repo = unique_repo(name);
        pusher.push(&repo, "v1", &image).await.unwrap();
        out.push((format!("{repo}:v1"), image));
    }
    out
}

/// Pushes an image under a unique repository; returns its `repo:tag`.
pub async fn push_image(name: &str, image: &BuiltImage) -> String {
    let pusher = Pusher::new(&registry(), None);
    let repo = unique_repo(name);
    pusher.push(&repo, "v1", image).await.unwrap();
    format!("{repo}:v1")
}

/// `127.0.0.1:PORT` with a port that was free a moment ago ([`fathom_testkit::free_port`]).
pub fn free_addr() -> String {
    format!(
        "127.0.0.1:{}",
        fathom_testkit::free_port().expect("a free port on 127.0.0.1")
    )
}

/// Worker settings written into its configuration file.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub concurrency: usize,
    pub lease_ttl: &'static str,
    pub drain_timeout: &'static str,
    pub rescue_interval: &'static str,
    /// `services.analyzer.poll_interval`.
    pub poll_interval: &'static str,
    pub retry_backoff_base: &'static str,
    pub insecure: Vec<String>,
    /// `registry.max_concurrent_per_host`.
    pub max_concurrent_per_host: usize,
    /// `registry.breaker_failures`.
    pub breaker_failures: u32,
    /// `registry.breaker_probe_interval`.
    pub breaker_probe_interval: &'static str,
    /// `services.analyzer.layers_in_flight` (CPUs when unset).
    pub layers_in_flight: Option<usize>,
    /// More `services.analyzer` YAML lines, each indented by four spaces (e.g. `content_search`).
    pub analyzer_yaml: String,
}

impl Default for WorkerSpec {
    fn default() -> Self {
        WorkerSpec {
            concurrency: 2,
            lease_ttl: "30s",
            drain_timeout: "25s",
            rescue_interval: "1s",
            poll_interval: "1s",
            retry_backoff_base: "200ms",
            insecure: vec![registry()],
            max_concurrent_per_host: 32,
            breaker_failures: 5,
            breaker_probe_interval: "5s",
            layers_in_flight: None,
            analyzer_yaml: String::new(),
        }
    }
}

/// A running `fathom worker` process.
pub struct WorkerProc {
    pub child: Child,
    pub name: String,
    pub metrics: String,
    pub log: PathBuf,
}

impl WorkerProc {
    /// Starts `fathom worker --config <file>` with `POD_NAME=name`, logging to `dir/name.log`.
    pub fn start(dir: &Path, name: &str, database_url: &str, spec: &WorkerSpec) -> WorkerProc {
        WorkerProc::start_at(dir, name, database_url, spec, free_addr())
    }

    /// [`WorkerProc::start`] serving `/metrics` at `metrics` (a restarted pod keeps its address).
    pub fn start_at(
        dir: &Path,
        name: &str,
        database_url: &str,
        spec: &WorkerSpec,
        metrics: String,
    ) -> WorkerProc {
        let config = dir.join(format!("{name}.yaml"));
        let insecure: Vec<String> = spec.insecure.iter().map(|h| format!("'{h}'")).collect();
        std::fs::write(
            &config,
            format!(
                "database:\n  url: '{database_url}'\n  pool_size: 2\n\
                 services:\n  analyzer:\n    concurrency: {}\n    lease_ttl: {}\n    drain_timeout: {}\n    \
                 rescue_interval: {}\n    retry_backoff_base: {}\n    poll_interval: {}\n{}{}\
                 registry:\n  insecure: [{}]\n  timeout: 10s\n  max_concurrent_per_host: {}\n  \
                 breaker_failures: {}\n  breaker_probe_interval: {}\n\
                 metrics:\n  address: '{metrics}'\n",
                spec.concurrency,
                spec.lease_ttl,
                spec.drain_timeout,
                spec.rescue_interval,
                spec.retry_backoff_base,
                spec.poll_interval,
                spec.layers_in_flight
                    .map(|n| format!("    layers_in_flight: {n}\n"))
                    .unwrap_or_default(),
                spec.analyzer_yaml,
                insecure.join(", "),
                spec.max_concurrent_per_host,
                spec.breaker_failures,
                spec.breaker_probe_interval,
            ),
        )
        .unwrap();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = fathom()
            .args(["worker", "--config"])
            .arg(&config)
            .env("POD_NAME", name)
            .env("FATHOM_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn fathom worker");
        let worker = WorkerProc {
            child,
            name: name.to_string(),
            metrics,
            log,
        };
        worker.wait_healthy();
        worker
    }

    fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(&self.metrics, "/healthz").is_some_and(|(s, _)| s == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "worker {} never served /healthz; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// The worker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `timeout`); its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "worker {} did not exit within {timeout:?}; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Scrapes `/metrics`.
    pub fn scrape(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.0 GET: (status, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500))
            .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A metric's value from a text exposition (first sample whose name and labels start with `series`).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The stdout of a `fathom` run, after asserting it succeeded (else its output in the message).
/// `fathom webhook certs` for the Service `fathom-webhook` in namespace `fathom`, written to `out`
/// (`ca.crt`, `tls.crt`, `tls.key`), as an operator without cert-manager makes them; its stdout (the
/// caBundle patch).
pub fn webhook_certs(out: &Path) -> String {
    let run = fathom()
        .args([
            "webhook",
            "certs",
            "--service",
            "fathom-webhook",
            "--namespace",
            "fathom",
        ])
        .arg("--out")
        .arg(out)
        .output()
        .expect("run fathom webhook certs");
    ok(&run)
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "fathom failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a `fathom` CLI command against `database_url`.
pub fn cli(database_url: &str, args: &[&str]) -> Output {
    fathom()
        .args(args)
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run fathom")
}

/// Handles on the test database for assertions.
pub struct Db {
    pub store: Store,
    pub queue: Queue,
}

impl Db {
    pub fn new(url: &str) -> Db {
        Db {
            store: Store::connect_lazy(url, 2).unwrap(),
            queue: Queue::connect(
                url,
                QueueConfig {
                    pool_size: 2,
                    ..Default::default()
                },
            )
            .unwrap(),
        }
    }

    /// Status of one submitted reference.
    pub async fn status(&self, reference: &str) -> StatusEntry {
        let mut entries = self.store.status(Some(reference), 1).await.unwrap();
        assert_eq!(entries.len(), 1, "status of {reference}: {entries:?}");
        entries.remove(0)
    }

    /// Polls until `done` holds for the status of every reference, or panics after `timeout`.
    pub async fn wait_for(
        &self,
        references: &[String],
        timeout: Duration,
        done: impl Fn(&StatusEntry) -> bool,
    ) -> Vec<StatusEntry> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = Vec::new();
            for r in references {
                all.push(self.status(r).await);
            }
            if all.iter().all(&done) {
                return all;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?}; statuses: {all:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
