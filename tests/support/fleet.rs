//! The setup every worker and autoscaler scenario shares: a database, sample images pushed to the run's
//! registry, a fault-injecting proxy in front of it, a temporary directory for configs and logs, worker
//! specs that pull through the proxy, and `Db` handles for the assertions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fathom_testkit::pg::TestDb;
use fathom_testkit::BuiltImage;
use tempfile::TempDir;

use super::{
    cli, ok, push_image, push_samples, registry, test_db, Db, Proxy, WorkerProc, WorkerSpec,
};

/// One scenario's world. References (`refs`) point at `host`: the proxy, so the test can count and slow
/// down what workers fetch, or the registry itself for the plain path ([`Fleet::direct`]).
pub struct Fleet {
    /// Handles on the database (lazy pools: nothing connects until a test asks).
    pub db: Db,
    /// Configs, logs and state of the processes the scenario starts.
    pub dir: TempDir,
    /// The fault proxy in front of the registry (running even when `host` bypasses it).
    pub proxy: Proxy,
    /// `127.0.0.1:PORT` the references point at, and the one insecure registry of [`Fleet::spec`].
    pub host: String,
    /// The pushed samples, in the order asked for: `(repo:tag, image)`.
    pub images: Vec<(String, BuiltImage)>,
    /// `host/repo:tag` of every pushed sample, in the same order.
    pub refs: Vec<String>,
    url: String,
    // Last, so the pools above are dropped before the database is.
    _test_db: Option<TestDb>,
}

impl Fleet {
    /// A fresh test database and the named samples, referenced through the proxy.
    pub async fn new(samples: &[&str]) -> Fleet {
        let db = test_db().await;
        let url = db.url().to_string();
        Fleet::assemble(Some(db), url, samples, true).await
    }

    /// A fresh test database and the named samples, referenced at the registry itself.
    pub async fn direct(samples: &[&str]) -> Fleet {
        let db = test_db().await;
        let url = db.url().to_string();
        Fleet::assemble(Some(db), url, samples, false).await
    }

    /// A database the test owns (a cluster it restarts, say), samples referenced through the proxy.
    pub async fn on_database(url: &str, samples: &[&str]) -> Fleet {
        Fleet::assemble(None, url.to_string(), samples, true).await
    }

    async fn assemble(
        test_db: Option<TestDb>,
        url: String,
        samples: &[&str],
        through_proxy: bool,
    ) -> Fleet {
        let images = push_samples(samples).await;
        let proxy = Proxy::start(&registry()).await;
        let host = if through_proxy {
            proxy.addr.clone()
        } else {
            registry()
        };
        let refs = images.iter().map(|(r, _)| format!("{host}/{r}")).collect();
        Fleet {
            db: Db::new(&url),
            dir: tempfile::tempdir().unwrap(),
            proxy,
            host,
            images,
            refs,
            url,
            _test_db: test_db,
        }
    }

    /// The database URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The configs' and logs' directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The default worker settings, pulling from `host`.
    pub fn spec(&self) -> WorkerSpec {
        WorkerSpec {
            insecure: vec![self.host.clone()],
            ..WorkerSpec::default()
        }
    }

    /// Starts a `fathom worker` named `name` on this database (waits until it serves `/healthz`).
    pub fn worker(&self, name: &str, spec: &WorkerSpec) -> WorkerProc {
        WorkerProc::start(self.path(), name, &self.url, spec)
    }

    /// Manifest digest of the `i`th pushed sample.
    pub fn digest(&self, i: usize) -> String {
        self.images[i].1.manifest_digest()
    }

    /// `host/repo_tag`.
    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host)
    }

    /// Pushes `image` under a unique repository named after `name`; its reference at `host`.
    pub async fn push(&self, name: &str, image: &BuiltImage) -> String {
        self.reference(&push_image(name, image).await)
    }

    /// Delays every blob GET through the proxy by `ms` milliseconds.
    pub fn slow_blobs(&self, ms: u64) {
        self.proxy.rules.blob_delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Answers the proxy's next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        self.proxy.rules.fail_next.store(n, Ordering::SeqCst);
    }

    /// GETs of each blob digest through the proxy so far.
    pub fn blob_gets(&self) -> HashMap<String, usize> {
        self.proxy.rules.blob_gets()
    }

    /// Submits `refs` (at most `max_attempts` each) through the store; the job ids.
    pub async fn submit(&self, refs: &[String], max_attempts: i32) -> Vec<i64> {
        let submitted = self.db.store.submit(refs, max_attempts).await.unwrap();
        submitted.iter().map(|e| e.id).collect()
    }

    /// Waits until every one of `refs` is analyzed (panics with the statuses after `timeout`).
    pub async fn wait_analyzed(
        &self,
        refs: &[String],
        timeout: Duration,
    ) -> Vec<fathom_worker::store::StatusEntry> {
        self.db
            .wait_for(refs, timeout, |s| s.status == "analyzed")
            .await
    }

    /// Runs a `fathom` CLI command on this database off the async threads (the proxy keeps serving);
    /// its stdout, after asserting it succeeded.
    pub async fn cli(&self, args: &[&str]) -> String {
        let url = self.url.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ok(&cli(&url, &args))
        })
        .await
        .unwrap()
    }

    /// [`Fleet::cli`] with its stdout parsed as JSON.
    pub async fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.cli(args).await).unwrap()
    }
}
