//! A `fathom` process of any role, its output in a log file, ready once `/readyz` answers 200 and stopped
//! (SIGTERM, then SIGKILL) when dropped; and the core as the deployment runs it, from
//! `deploy/base/core-config.yaml`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{fathom, free_addr, http_get, webhook_certs};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running fathom process serving `/metrics` at `metrics`.
pub struct Running {
    /// What it is, for messages.
    pub what: String,
    /// `127.0.0.1:PORT` of its `/metrics` and `/readyz`.
    pub metrics: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Spawns `cmd` (its output to `dir/<what>.log`) and waits until `metrics` answers `/readyz` 200.
    pub fn spawn(what: &str, mut cmd: Command, metrics: String, dir: &Path) -> Running {
        let file_name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let log = dir.join(format!("{file_name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .env("FATHOM_LOG", "info")
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let mut running = Running {
            what: what.to_string(),
            metrics,
            child,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(&running.metrics, "/readyz").is_none_or(|(status, _)| status != 200) {
            if let Ok(Some(status)) = running.child.try_wait() {
                panic!(
                    "{what} exited ({status}) before it was ready; log:\n{}",
                    running.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{what} never ready on {}; log:\n{}",
                running.metrics,
                running.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        running
    }

    /// Its output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `fathom run` with the deployment's core ConfigMap: only the listen addresses, the database, the token
/// and the webhook's certificate (made here, as the pod mounts it from a Secret) come from the
/// environment, as in the pod. Add further `FATHOM_*` overrides to the command before spawning.
pub struct DeployedCore {
    /// The command to spawn.
    pub command: Command,
    /// `127.0.0.1:PORT` of the API and its `/metrics`.
    pub api: String,
    /// `127.0.0.1:PORT` of the admission webhook (HTTPS).
    pub webhook: String,
    /// `ca.crt`, `tls.crt`, `tls.key` of the webhook.
    pub tls: PathBuf,
}

impl DeployedCore {
    /// The core on `url` accepting `token`, its webhook certificate under `dir/webhook-tls`.
    pub fn new(dir: &Path, url: &str, token: &str) -> DeployedCore {
        let api = free_addr();
        let webhook = free_addr();
        let tls = dir.join("webhook-tls");
        webhook_certs(&tls);
        let mut command = fathom();
        command
            .args(["run", "--config"])
            .arg(repo().join("deploy/base/core-config.yaml"))
            .env("DATABASE_URL", url)
            .env("FATHOM_SERVICES_API_ADDRESS", &api)
            .env("FATHOM_SERVICES_API_TOKENS", token)
            .env("FATHOM_SERVICES_WEBHOOK_ADDRESS", &webhook)
            .env("FATHOM_SERVICES_WEBHOOK_CERT_FILE", tls.join("tls.crt"))
            .env("FATHOM_SERVICES_WEBHOOK_KEY_FILE", tls.join("tls.key"));
        DeployedCore {
            command,
            api,
            webhook,
            tls,
        }
    }
}
