//! Where `submit`, `status` and `results` get their answers: the database directly (operators, tests,
//! the demo) or the core's HTTP API (`--api URL --token T`, for CI pipelines and users without database
//! credentials). Both give the same records, so the commands print the same output either way.

use std::time::Duration;

use anyhow::Context;
use fathom_analyzer::source::registry::canonical_reference;
use fathom_analyzer::ImageAnalysis;
use fathom_worker::store::{StatusEntry, Store, SubmitOptions, Submitted};
use serde::Deserialize;

/// Connection flags shared by the commands.
#[derive(clap::Args, Debug, Clone)]
pub struct BackendArgs {
    /// PostgreSQL connection URL (used unless --api is given).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Go through the core's API at this base URL (e.g. http://fathom-core:8228) instead of the database.
    #[arg(long, env = "FATHOM_API_URL")]
    pub api: Option<String>,
    /// Bearer token for --api.
    #[arg(long, env = "FATHOM_API_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// One submitted reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitReply {
    /// The reference as the backend keys it (the API answers its canonical form).
    pub reference: String,
    /// The job answering it, if one does.
    pub job_id: Option<i64>,
    /// Whether this submission created the job.
    pub created: bool,
    /// Where it stands now (`queued`, `analyzing`, `analyzed`, ...).
    pub status: String,
}

/// The database or the API.
pub enum Backend {
    /// Direct database access.
    Database(Store),
    /// The core's API.
    Api(ApiClient),
}

impl BackendArgs {
    /// Connects to whichever was asked for.
    pub fn connect(&self) -> anyhow::Result<Backend> {
        match (&self.api, &self.database_url) {
            (Some(url), _) => Ok(Backend::Api(ApiClient::new(url, self.token.clone())?)),
            (None, Some(db)) => Ok(Backend::Database(Store::connect_lazy(db, 1)?)),
            (None, None) => anyhow::bail!(
                "give --database-url (or DATABASE_URL) or --api URL (or FATHOM_API_URL)"
            ),
        }
    }
}

/// The key a reference is stored under: registry references in canonical form (`alpine` →
/// `docker.io/library/alpine:latest`, as the API stores them), local sources as given.
fn key_of(reference: &str) -> anyhow::Result<String> {
    if reference.starts_with("oci-dir:") || reference.starts_with("docker-archive:") {
        return Ok(reference.to_string());
    }
    let text = reference.strip_prefix("registry:").unwrap_or(reference);
    canonical_reference(text)
        .map_err(|e| anyhow::anyhow!("{reference:?} is not an image reference: {e}"))
}

/// A reference or a digest, as lookups take it.
fn lookup_key(target: &str) -> anyhow::Result<String> {
    if target.starts_with("sha256:") {
        Ok(target.to_string())
    } else {
        key_of(target)
    }
}

impl Backend {
    /// Submits references.
    pub async fn submit(
        &self,
        references: &[String],
        options: &SubmitOptions,
    ) -> anyhow::Result<Vec<SubmitReply>> {
        match self {
            Backend::Database(store) => {
                let references: Vec<String> = references
                    .iter()
                    .map(|r| key_of(r))
                    .collect::<anyhow::Result<_>>()?;
                let outcomes = store.submit_with(&references, options).await?;
                Ok(references
                    .iter()
                    .zip(outcomes)
                    .map(|(r, o)| match o {
                        Submitted::Job(e) => SubmitReply {
                            reference: r.clone(),
                            job_id: Some(e.id),
                            created: e.created,
                            status: "queued".into(),
                        },
                        Submitted::AlreadyAnalyzed => SubmitReply {
                            reference: r.clone(),
                            job_id: None,
                            created: false,
                            status: "analyzed".into(),
                        },
                    })
                    .collect())
            }
            Backend::Api(api) => api.submit(references, options).await,
        }
    }

    /// Status of one reference or digest, or of every submission (at most `limit`).
    pub async fn status(
        &self,
        target: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<StatusEntry>> {
        match self {
            Backend::Database(store) => {
                let target = target.map(lookup_key).transpose()?;
                Ok(store.status(target.as_deref(), limit).await?)
            }
            Backend::Api(api) => api.status(target, limit).await,
        }
    }

    /// The stored analysis of a digest or of the image last seen under a reference.
    pub async fn analysis(&self, image: &str) -> anyhow::Result<ImageAnalysis> {
        match self {
            Backend::Database(store) => {
                let digest = if image.starts_with("sha256:") {
                    image.to_string()
                } else {
                    match store.image_by_reference(&key_of(image)?).await? {
                        Some(found) => found.manifest_digest,
                        None => anyhow::bail!("no analyzed image is known under {image}"),
                    }
                };
                match store.document(&digest).await? {
                    Some(doc) => Ok(doc),
                    None => match store.image(&digest).await? {
                        Some(found) => anyhow::bail!(
                            "{digest} failed to analyze: {}",
                            found.error.unwrap_or_default()
                        ),
                        None => anyhow::bail!("no analysis stored for {digest}"),
                    },
                }
            }
            Backend::Api(api) => api.analysis(image).await,
        }
    }
}

/// A small client of the core's `/v1` API.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct SubmittedBody {
    images: Vec<SubmittedImage>,
}

#[derive(Deserialize)]
struct SubmittedImage {
    reference: String,
    job_id: Option<i64>,
    created: bool,
    status: String,
}

#[derive(Deserialize)]
struct StatusPage {
    items: Vec<StatusEntry>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct ImageBody {
    references: Vec<String>,
}

impl ApiClient {
    /// A client of the API at `base` (`http://host:8228`).
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<ApiClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// Sends and decodes, turning the API's error bodies into one-line errors.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        builder: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<T> {
        let bytes = self.answer(builder, what).await?;
        serde_json::from_slice(&bytes).with_context(|| format!("{what}: decoding the answer"))
    }

    /// Sends; the body of a successful answer, the API's error body as a one-line error otherwise.
    async fn answer(
        &self,
        builder: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<Vec<u8>> {
        let response = builder
            .send()
            .await
            .with_context(|| format!("{what}: cannot reach the API at {}", self.base))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{what}: reading the answer"))?;
        if !status.is_success() {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => anyhow::bail!("{what}: {} ({}, {status})", e.error.message, e.error.code),
                Err(_) => anyhow::bail!(
                    "{what}: {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            }
        }
        Ok(bytes.to_vec())
    }

    /// Any request with an optional JSON body; the answer as JSON (`null` for an empty one, e.g. 204).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        what: &str,
    ) -> anyhow::Result<serde_json::Value> {
        let mut builder = self.request(method, path).query(query);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        let bytes = self.answer(builder, what).await?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("{what}: decoding the answer"))
    }

    /// `GET path?query`, decoded; `what` names the command in errors.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        what: &str,
    ) -> anyhow::Result<T> {
        self.send(self.request(reqwest::Method::GET, path).query(query), what)
            .await
    }

    async fn submit(
        &self,
        references: &[String],
        options: &SubmitOptions,
    ) -> anyhow::Result<Vec<SubmitReply>> {
        let body = serde_json::json!({
            "references": references,
            "priority": options.priority,
            "force": options.force,
        });
        let answer: SubmittedBody = self
            .send(
                self.request(reqwest::Method::POST, "/v1/images")
                    .json(&body),
                "submit",
            )
            .await?;
        Ok(answer
            .images
            .into_iter()
            .map(|i| SubmitReply {
                reference: i.reference,
                job_id: i.job_id,
                created: i.created,
                status: i.status,
            })
            .collect())
    }

    async fn status(&self, target: Option<&str>, limit: i64) -> anyhow::Result<Vec<StatusEntry>> {
        let references: Vec<Option<String>> = match target {
            Some(d) if d.starts_with("sha256:") => {
                let image: ImageBody = self
                    .send(
                        self.request(reqwest::Method::GET, &format!("/v1/images/{d}")),
                        "status",
                    )
                    .await?;
                image.references.into_iter().map(Some).collect()
            }
            other => vec![other.map(str::to_string)],
        };
        let mut out = Vec::new();
        for reference in references {
            let mut cursor: Option<String> = None;
            loop {
                // Pages of the server's default size: its maximum is its own business.
                let mut query: Vec<(&str, String)> = Vec::new();
                if let Some(r) = &reference {
                    query.push(("reference", r.clone()));
                }
                if let Some(c) = &cursor {
                    query.push(("cursor", c.clone()));
                }
                let page: StatusPage = self
                    .send(
                        self.request(reqwest::Method::GET, "/v1/images")
                            .query(&query),
                        "status",
                    )
                    .await?;
                out.extend(page.items);
                match page.next {
                    Some(next) if (out.len() as i64) < limit => cursor = Some(next),
                    _ => break,
                }
            }
        }
        out.truncate(usize::try_from(limit.max(0)).unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn analysis(&self, image: &str) -> anyhow::Result<ImageAnalysis> {
        let digest = if image.starts_with("sha256:") {
            image.to_string()
        } else {
            match self.status(Some(image), 1).await?.into_iter().next() {
                Some(entry) => entry.digest.with_context(|| {
                    format!(
                        "{image} is {}: no stored analysis to read yet",
                        entry.status
                    )
                })?,
                None => anyhow::bail!("nothing is known about {image}"),
            }
        };
        self.send(
            self.request(reqwest::Method::GET, &format!("/v1/images/{digest}/sbom"))
                .query(&[("format", "json")]),
            "results",
        )
        .await
    }
}
