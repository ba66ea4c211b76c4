//! Test support: an in-memory fake of the core's oracle that records every call, a webhook served over
//! real HTTPS with a generated CA, and AdmissionReview documents in the shapes of the Kubernetes API.
#![allow(dead_code)]

pub mod docs;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use fathom_webhook::certs::{self, CertBundle};
use fathom_webhook::{
    AnalysisState, ImageId, ImageOracle, IndexPlatforms, OracleError, PlatformImage, Resolved,
    Verdict, WebhookConfig, WebhookServer,
};
use prometheus::Registry;
use serde_json::Value;

/// The Service name the test certificates are issued for (the client resolves it to 127.0.0.1).
pub const HOST: &str = "fathom-core.fathom.svc";

/// One recorded oracle call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Resolve(String),
    State(String),
    Evaluate(String, Option<String>),
    Enqueue(String),
    /// An index platform queued: (manifest digest, index digest, platform).
    EnqueuePlatform(String, String, String),
    Namespace(String),
}

/// An index the fake registry serves: its digest and (platform, manifest digest) entries.
#[derive(Debug, Clone)]
pub struct FakeIndex {
    pub digest: String,
    pub platforms: Vec<(String, String)>,
}

/// fathom's store, registry and policy engine in memory.
#[derive(Default)]
pub struct FakeOracle {
    /// Canonical tag reference → digest.
    pub tags: Mutex<HashMap<String, String>>,
    /// Canonical reference (tag or digest) → the index it names.
    pub indexes: Mutex<HashMap<String, FakeIndex>>,
    /// Canonical reference → the registry's refusal (`resolve` fails with it).
    pub refusals: Mutex<HashMap<String, OracleError>>,
    /// Digest → state (absent: Unknown).
    pub states: Mutex<HashMap<String, AnalysisState>>,
    /// Digest → verdict (absent: GO from bundle "active").
    pub verdicts: Mutex<HashMap<String, Verdict>>,
    /// Namespace → labels.
    pub namespaces: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// Every call, in order.
    pub calls: Mutex<Vec<Call>>,
    /// When set, `resolve` and `analysis_state` never return.
    pub hang: AtomicBool,
    /// When set, `analysis_state` fails as if the store were down.
    pub down: AtomicBool,
    /// Bundles the policy engine does not have (deleted meanwhile): `evaluate` answers 404 as the core's does.
    pub missing_bundles: Mutex<Vec<String>>,
    /// When non-zero: a queued image becomes analyzed after this many state lookups (a worker).
    pub analyze_after_polls: AtomicUsize,
}

impl FakeOracle {
    pub fn analyzed(&self, digest: &str) {
        self.states
            .lock()
            .unwrap()
            .insert(digest.into(), AnalysisState::Analyzed);
    }
    pub fn tag(&self, reference: &str, digest: &str) {
        self.tags
            .lock()
            .unwrap()
            .insert(reference.into(), digest.into());
    }
    /// `reference` (a tag, or `repo@digest`) names an index with these (platform, digest) entries.
    pub fn index(&self, reference: &str, digest: &str, platforms: &[(&str, &str)]) {
        let index = FakeIndex {
            digest: digest.into(),
            platforms: platforms
                .iter()
                .map(|(p, d)| (p.to_string(), d.to_string()))
                .collect(),
        };
        self.indexes.lock().unwrap().insert(reference.into(), index);
    }
    pub fn refuse(&self, reference: &str, error: OracleError) {
        self.refusals
            .lock()
            .unwrap()
            .insert(reference.into(), error);
    }
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    pub fn enqueued(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Enqueue(d) | Call::EnqueuePlatform(d, _, _) => Some(d),
                _ => None,
            })
            .collect()
    }
    fn record(&self, c: Call) {
        self.calls.lock().unwrap().push(c);
    }
    async fn maybe_hang(&self) {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl ImageOracle for FakeOracle {
    async fn resolve(
        &self,
        reference: &str,
        platforms: &[String],
    ) -> Result<Resolved, OracleError> {
        self.record(Call::Resolve(reference.into()));
        self.maybe_hang().await;
        if let Some(e) = self.refusals.lock().unwrap().get(reference) {
            return Err(e.clone());
        }
        if let Some(index) = self.indexes.lock().unwrap().get(reference) {
            return Ok(Resolved {
                digest: index.digest.clone(),
                index: Some(IndexPlatforms {
                    platforms: platforms
                        .iter()
                        .filter_map(|want| {
                            let (p, d) = index.platforms.iter().find(|(p, _)| p == want)?;
                            Some(PlatformImage {
                                platform: p.clone(),
                                digest: d.clone(),
                            })
                        })
                        .collect(),
                    available: index.platforms.iter().map(|(p, _)| p.clone()).collect(),
                }),
            });
        }
        if let Some(digest) = self.tags.lock().unwrap().get(reference) {
            return Ok(Resolved::manifest(digest.clone()));
        }
        // A digest reference the registry has, as far as this fake knows: an image manifest.
        match reference.split_once('@') {
            Some((_, digest)) => Ok(Resolved::manifest(digest)),
            None => Err(OracleError::NotFound(format!(
                "manifest unknown: {reference}"
            ))),
        }
    }

    async fn analysis_state(&self, image: &ImageId) -> Result<AnalysisState, OracleError> {
        self.record(Call::State(image.digest.clone()));
        self.maybe_hang().await;
        if self.down.load(Ordering::SeqCst) {
            return Err(OracleError::Unavailable(
                "connection refused (store)".into(),
            ));
        }
        let mut states = self.states.lock().unwrap();
        let state = states
            .get(&image.digest)
            .cloned()
            .unwrap_or(AnalysisState::Unknown);
        let after = self.analyze_after_polls.load(Ordering::SeqCst);
        if state == AnalysisState::Queued && after > 0 {
            let polls = self
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| **c == Call::State(image.digest.clone()))
                .count();
            if polls > after {
                states.insert(image.digest.clone(), AnalysisState::Analyzed);
                return Ok(AnalysisState::Analyzed);
            }
        }
        Ok(state)
    }

    async fn evaluate(
        &self,
        image: &ImageId,
        bundle: Option<&str>,
    ) -> Result<Verdict, OracleError> {
        self.record(Call::Evaluate(
            image.digest.clone(),
            bundle.map(str::to_owned),
        ));
        if let Some(b) =
            bundle.filter(|b| self.missing_bundles.lock().unwrap().iter().any(|m| m == b))
        {
            return Err(OracleError::NotFound(format!("no policy bundle {b:?}")));
        }
        // As the core's policy engine does (src/core/policy/mod.rs): a reference pinned to another
        // digest is a question about another image (the core lets only the index the stored manifest
        // records pass; a manifest analyzed on its own or from another index records none or another).
        let named = fathom_reference::ImageRef::parse(&image.reference)
            .ok()
            .and_then(|r| r.digest);
        if let Some(named) = named.filter(|n| *n != image.digest) {
            return Err(OracleError::Unavailable(format!(
                "the reference {} names {named}, not {}",
                image.reference, image.digest
            )));
        }
        Ok(self
            .verdicts
            .lock()
            .unwrap()
            .get(&image.digest)
            .cloned()
            .unwrap_or(Verdict {
                outcome: fathom_webhook::Outcome::Go,
                bundle: bundle.unwrap_or("active").into(),
                unmapped: false,
                findings: Vec::new(),
            }))
    }

    async fn enqueue(&self, image: &ImageId) -> Result<(), OracleError> {
        self.record(Call::Enqueue(image.digest.clone()));
        self.states
            .lock()
            .unwrap()
            .insert(image.digest.clone(), AnalysisState::Queued);
        Ok(())
    }

    async fn enqueue_platform(
        &self,
        image: &ImageId,
        index: &str,
        platform: &str,
    ) -> Result<(), OracleError> {
        self.record(Call::EnqueuePlatform(
            image.digest.clone(),
            index.into(),
            platform.into(),
        ));
        self.states
            .lock()
            .unwrap()
            .insert(image.digest.clone(), AnalysisState::Queued);
        Ok(())
    }

    async fn namespace_labels(
        &self,
        namespace: &str,
    ) -> Result<Option<BTreeMap<String, String>>, OracleError> {
        self.record(Call::Namespace(namespace.into()));
        Ok(self.namespaces.lock().unwrap().get(namespace).cloned())
    }
}

/// A `sha256:` digest made from a name (distinct names, distinct digests).
pub fn digest(name: &str) -> String {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{:0<64}", &hex[..hex.len().min(64)])
}

/// A running webhook over HTTPS.
pub struct Hook {
    pub port: u16,
    pub registry: Registry,
    pub oracle: Arc<FakeOracle>,
    pub certs: CertBundle,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<fathom_webhook::Result<()>>>,
}

/// Starts a webhook on 127.0.0.1 with a fresh CA, after `tune` adjusts the configuration.
pub async fn start(oracle: Arc<FakeOracle>, tune: impl FnOnce(&mut WebhookConfig)) -> Hook {
    let dir = tempfile::tempdir().unwrap();
    let certs = certs::generate("fathom-core", "fathom").unwrap();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, &certs.cert_pem).unwrap();
    std::fs::write(&key_file, &certs.key_pem).unwrap();
    let mut config = WebhookConfig {
        enabled: true,
        address: "127.0.0.1:0".parse().unwrap(),
        cert_file: cert_file.clone(),
        key_file: key_file.clone(),
        cert_reload_interval: std::time::Duration::from_millis(50),
        ..WebhookConfig::default()
    };
    tune(&mut config);
    let registry = Registry::new();
    let server = WebhookServer::bind(&config, oracle.clone(), &registry)
        .await
        .unwrap();
    let port = server.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Hook {
        port,
        registry,
        oracle,
        certs,
        cert_file,
        key_file,
        _dir: dir,
        shutdown: Some(tx),
        task: Some(task),
    }
}

/// A client that trusts only `ca_pem` and resolves [`HOST`] to the webhook; a new one per call means
/// a new TLS handshake (no pooled connection hides a certificate change).
pub fn client(ca_pem: &str, port: u16) -> reqwest::Client {
    client_as(ca_pem, port, None)
}

/// [`client`], presenting the client certificate `(cert_pem, key_pem)` when given (as the API server
/// does with its AdmissionConfiguration kubeconfig).
pub fn client_as(ca_pem: &str, port: u16, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder();
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(HOST, ([127, 0, 0, 1], port).into())
        // The API server's default timeoutSeconds: an answer later than this is a failure anyway.
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

impl Hook {
    pub fn url(&self, path: &str) -> String {
        format!("https://{HOST}:{}{path}", self.port)
    }

    /// POSTs `body` to /validate; the HTTP status and the AdmissionReview answer.
    pub async fn post_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let r = client(&self.certs.ca_pem, self.port)
            .post(self.url("/validate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1", "{v}");
        assert_eq!(v["kind"], "AdmissionReview", "{v}");
        (status, v["response"].clone())
    }

    /// POSTs a review; asserts HTTP 200 and the echoed uid; returns `response`.
    pub async fn post(&self, review: &Value) -> Value {
        let (status, response) = self.post_raw(serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["uid"], review["request"]["uid"], "{response}");
        response
    }

    /// The value of a counter with these labels (0 when absent).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric().to_vec())
            .filter(|m| {
                labels.iter().all(|(k, v)| {
                    m.get_label()
                        .iter()
                        .any(|l| l.name() == *k && l.value() == *v)
                })
            })
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}
