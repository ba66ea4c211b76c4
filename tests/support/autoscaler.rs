//! A `fathom autoscaler` (or `fathom run` with the autoscaler enabled) with its local target, watched
//! through its metrics and log, and the configuration of the workers it starts.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{fathom, free_addr, http_get, metric, Fleet};

/// A running autoscaler process (local target), logging to `dir/autoscaler.log`.
pub struct AutoscalerProc {
    child: Child,
    /// `127.0.0.1:PORT` of its `/metrics`.
    pub metrics: String,
    log: PathBuf,
}

impl AutoscalerProc {
    /// `fathom autoscaler --target local` on the fleet's database, its state in `<dir>/state`, its workers
    /// configured by [`worker_config`] (images through the fleet's host), plus the policy flags `policy`.
    pub fn command(fleet: &Fleet, policy: &[&str]) -> AutoscalerProc {
        let workers = worker_config(fleet.path(), &fleet.host);
        let metrics = free_addr();
        let mut cmd = fathom();
        cmd.args(["autoscaler", "--target", "local", "--state-dir"])
            .arg(fleet.path().join("state"))
            .arg("--worker-config")
            .arg(&workers)
            .args(["--metrics-address", &metrics])
            .args(policy);
        AutoscalerProc::spawn(cmd, fleet.path(), fleet.url(), metrics)
    }

    /// `fathom run --config` with only `services.autoscaler` enabled (target local, state in
    /// `<dir>/state`, workers as in [`AutoscalerProc::command`]); `policy` holds its further keys, one
    /// `key: value` per line.
    pub fn service(fleet: &Fleet, policy: &[&str]) -> AutoscalerProc {
        let workers = worker_config(fleet.path(), &fleet.host);
        let metrics = free_addr();
        let config = fleet.path().join("fathom.yaml");
        let policy: String = policy.iter().map(|l| format!("    {l}\n")).collect();
        std::fs::write(
            &config,
            format!(
                "services:\n  analyzer: {{enabled: false}}\n  autoscaler:\n    enabled: true\n    target: local\n    \
                 metrics_address: '{metrics}'\n    state_dir: '{}'\n    worker_config: '{}'\n{policy}",
                fleet.path().join("state").display(),
                workers.display()
            ),
        )
        .unwrap();
        let mut cmd = fathom();
        cmd.arg("run").arg("--config").arg(&config);
        AutoscalerProc::spawn(cmd, fleet.path(), fleet.url(), metrics)
    }

    /// Spawns `cmd` on `database_url` (output to `dir/autoscaler.log`); waits until `metrics` is ready.
    pub fn spawn(
        mut cmd: Command,
        dir: &Path,
        database_url: &str,
        metrics: String,
    ) -> AutoscalerProc {
        let log = dir.join("autoscaler.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .env("DATABASE_URL", database_url)
            .env("FATHOM_LOG", "info")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn fathom");
        let p = AutoscalerProc {
            child,
            metrics,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&p.metrics, "/readyz").is_none_or(|(s, _)| s != 200) {
            assert!(
                Instant::now() < deadline,
                "autoscaler never ready:\n{}",
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Scrapes `/metrics` (empty when it does not answer).
    pub fn scrape(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// `fathom_autoscaler_current_replicas`.
    pub fn current(&self) -> f64 {
        metric(&self.scrape(), "fathom_autoscaler_current_replicas")
    }

    /// Exits of its local workers of one `kind` (drained, killed, crashed).
    pub fn exits(&self, kind: &str) -> f64 {
        metric(
            &self.scrape(),
            &format!("fathom_autoscaler_local_worker_exits_total{{kind=\"{kind}\"}}"),
        )
    }

    /// Polls until `cond` holds on the scraped metrics, or panics with the log.
    pub async fn wait_until(&self, what: &str, timeout: Duration, cond: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM; the exit code (the autoscaler drains its workers first).
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "autoscaler did not exit:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Workers it started so far.
    pub fn workers_started(&self) -> usize {
        // The autoscaler's line, not the one each worker logs (its stderr is the autoscaler's).
        self.log_text()
            .lines()
            .filter(|l| l.contains("fathom_autoscaler::local") && l.contains("worker started"))
            .count()
    }
}

impl Drop for AutoscalerProc {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // A failed test: SIGTERM first, so the autoscaler drains the workers it started (they are in
        // their own process groups and would outlive a SIGKILLed parent).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workers' configuration: one job at a time, images through `registry`.
pub fn worker_config(dir: &Path, registry: &str) -> PathBuf {
    let path = dir.join("worker.yaml");
    std::fs::write(
        &path,
        format!(
            "database: {{pool_size: 2}}\n\
             services:\n  analyzer:\n    concurrency: 1\n    lease_ttl: 30s\n    drain_timeout: 30s\n    \
             poll_interval: 1s\n    rescue_interval: 1s\n\
             registry:\n  insecure: ['{registry}']\n  timeout: 20s\n"
        ),
    )
    .unwrap();
    path
}
