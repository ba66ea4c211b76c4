//! The engine's entry point: resolve an image, fetch and analyze its layers in parallel (skipping cached
//! ones), merge them, and return one serializable [`ImageAnalysis`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::cache::{LayerCache, LayerClaim};
use crate::catalog::Cataloger;
use crate::content::{ContentOptions, ContentPass};
use crate::error::{AnalyzeError, Result};
use crate::layer::{self, Compression, LayerContext, LayerResult, Limits};
use crate::merge::{self, FilesSummary, ImagePackage, ImageSecret};

mod reports;
use crate::model::Distro;
use crate::source::manifest::check_digest;
use crate::source::registry::{Registry, RegistryOptions};
use crate::source::{self, ImageInfo, ImageSource, Platform, ResolvedImage};
pub use reports::{ContentSearchReport, MalwareReport, RetrievedReport};

/// Version of the [`ImageAnalysis`] document layout.
pub const SCHEMA: &str = "fathom.analysis/v1";

/// How long a layer claim holds off other workers unless renewed (every third of it while the layer is
/// computed): a worker that dies mid-layer delays the others by at most this.
const LAYER_CLAIM_TTL: Duration = Duration::from_secs(30);

/// How often a worker waiting on another's layer looks for the result.
const LAYER_CLAIM_POLL: Duration = Duration::from_millis(150);

/// How the analyzer fetches and how much it may spend.
#[derive(Debug, Clone)]
pub struct AnalyzerOptions {
    /// Platform to pick from multi-arch indexes.
    pub platform: Platform,
    /// Registry access.
    pub registry: RegistryOptions,
    /// Per-layer limits.
    pub limits: Limits,
    /// Uncompressed bytes all layers of one image may inflate to together.
    pub max_image_inflated: u64,
    /// Layers downloaded and analyzed at once (each holds one inflater and a few chunks of download).
    pub layers_in_flight: usize,
    /// The content pass (file digests, secret search, copyright licenses).
    pub content: ContentOptions,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        AnalyzerOptions {
            platform: Platform::default(),
            registry: RegistryOptions::default(),
            limits: Limits::default(),
            max_image_inflated: 64 << 30,
            layers_in_flight: rayon::current_num_threads().max(2),
            content: ContentOptions::default(),
        }
    }
}

/// Which analyzer produced a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzerInfo {
    /// fathom-worker version.
    pub version: String,
    /// Catalogers and pipeline versions (the layer cache key).
    pub cache_key: String,
    /// Which content facts were collected; absent in documents written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentInfo>,
}

/// Which parts of the content pass ran: a policy gate must tell "searched, nothing found" from "not
/// searched" (which it reports as unavailable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentInfo {
    /// The file inventory was recorded (per layer, in the layer results).
    pub files: bool,
    /// File contents were searched for secrets.
    pub secrets: bool,
}

impl AnalyzerInfo {
    /// What the content pass collected; for older documents, read from the cache key (`content=off`
    /// there means no secret search).
    pub fn content(&self) -> ContentInfo {
        self.content.unwrap_or_else(|| ContentInfo {
            files: true,
            secrets: !self.cache_key.contains("content=off"),
        })
    }
}

/// One layer in the analysis document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSummary {
    /// Position, base first.
    pub index: usize,
    /// Layer digest.
    pub digest: String,
    /// Compression found in the blob.
    pub compression: Compression,
    /// Whether the result came from the layer cache (nothing was downloaded).
    pub from_cache: bool,
    /// Tar entries.
    pub entries: u64,
    /// Uncompressed size.
    pub inflated_bytes: u64,
    /// Packages found in this layer (visible or not in the final image).
    pub packages: usize,
    /// Paths this layer deletes from lower layers.
    pub whiteouts: Vec<String>,
    /// Directories this layer makes opaque.
    pub opaque_dirs: Vec<String>,
}

/// Counters and timings of one analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisStats {
    /// Stored (compressed) bytes downloaded or read.
    pub bytes_fetched: u64,
    /// Uncompressed bytes walked.
    pub bytes_inflated: u64,
    /// Layers fetched and analyzed.
    pub layers_fetched: usize,
    /// Layers answered by the cache.
    pub cache_hits: usize,
    /// Layers the cache did not have.
    pub cache_misses: usize,
    /// Milliseconds resolving manifest and config.
    pub resolve_ms: u64,
    /// Milliseconds fetching and analyzing layers.
    pub layers_ms: u64,
    /// Milliseconds merging.
    pub merge_ms: u64,
}

/// The result of analyzing one image: what the store keeps and the SBOM writers read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageAnalysis {
    /// Document layout version ([`SCHEMA`]).
    pub schema: String,
    /// Which analyzer produced it.
    pub analyzer: AnalyzerInfo,
    /// The image.
    pub image: ImageInfo,
    /// Distribution, from the visible os-release chain.
    pub distro: Option<Distro>,
    /// Packages visible in the final image, each with the layers that introduced and last changed it.
    pub packages: Vec<ImagePackage>,
    /// Final filesystem counts.
    pub files: FilesSummary,
    /// Per-layer facts.
    pub layers: Vec<LayerSummary>,
    /// Secrets in visible files (path, line, rule, layer: never the value).
    #[serde(default)]
    pub secrets: Vec<ImageSecret>,
    /// Content search results; absent when it did not run (no rules configured, the content pass off,
    /// or a document written before content search existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_search: Option<ContentSearchReport>,
    /// Retrieved files; absent when none were configured, the content pass was off, or the document
    /// predates retrieved files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieved_files: Option<RetrievedReport>,
    /// The malware scan; absent when it did not run (scanning off, or the document predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malware: Option<MalwareReport>,
    /// Non-fatal problems, each naming its layer and file.
    pub warnings: Vec<String>,
    /// Counters and timings.
    pub stats: AnalysisStats,
}

struct Inner {
    catalogers: Vec<Box<dyn Cataloger>>,
    content: std::result::Result<ContentPass, String>,
    options: AnalyzerOptions,
    registry: Arc<Registry>,
    cache_key: String,
}

impl Inner {
    fn content_info(&self) -> ContentInfo {
        let c = &self.options.content;
        ContentInfo {
            // The walk records every entry whether or not the content pass runs (it adds digests).
            files: true,
            secrets: c.enabled && c.secrets.enabled,
        }
    }
}

/// Analyzes images. Cheap to clone; share one per process so registry connections and tokens are reused.
/// Its async methods must run inside a tokio runtime; the CPU work runs on rayon's pool.
#[derive(Clone)]
pub struct Analyzer {
    inner: Arc<Inner>,
}

/// The layer cache key of an analyzer with these catalogers and options: pipeline version, recorded
/// file limit and every cataloger's name and version. The core computes it too, to tell whether a stored
/// analysis is current without building an analyzer.
pub fn catalogers_key(catalogers: &[Box<dyn Cataloger>], options: &AnalyzerOptions) -> String {
    let mut versions: Vec<String> = catalogers
        .iter()
        .map(|c| format!("{}={}", c.name(), c.version()))
        .collect();
    versions.sort();
    format!(
        "pipeline={};files={};{};{}",
        layer::PIPELINE_VERSION,
        options.limits.max_recorded_files,
        options.content.key(),
        versions.join(";")
    )
}

impl Analyzer {
    /// An analyzer with these catalogers.
    pub fn new(catalogers: Vec<Box<dyn Cataloger>>, options: AnalyzerOptions) -> Self {
        let cache_key = catalogers_key(&catalogers, &options);
        let registry = Arc::new(Registry::new(options.registry.clone()));
        // An invalid rule fails every analysis (naming it) rather than silently searching for nothing;
        // configuration checks compile the same rules at start-up ([`ContentPass::new`]).
        let content = ContentPass::new(options.content.clone());
        Analyzer {
            inner: Arc::new(Inner {
                catalogers,
                content,
                options,
                registry,
                cache_key,
            }),
        }
    }

    /// The layer cache key: pipeline version plus every cataloger's name and version.
    pub fn cache_key(&self) -> &str {
        &self.inner.cache_key
    }

    /// Reads the manifest and config only (no layer is touched), e.g. to look the manifest digest up in a
    /// results store before analyzing.
    pub async fn resolve(&self, source: &ImageSource) -> Result<ResolvedImage> {
        self.resolve_prefetching(source, &self.inner.options.platform, 0)
            .await
    }

    /// [`resolve`](Self::resolve) picking `platform` from a multi-platform index instead of the
    /// configured one (a job that asks for one platform of an index).
    pub async fn resolve_platform(
        &self,
        source: &ImageSource,
        platform: &Platform,
    ) -> Result<ResolvedImage> {
        self.resolve_prefetching(source, platform, 0).await
    }

    /// Resolves, and for a registry image requests the first `prefetch` layers together with the config
    /// (when the caller analyzes right away, they are needed next anyway).
    async fn resolve_prefetching(
        &self,
        source: &ImageSource,
        platform: &Platform,
        prefetch: usize,
    ) -> Result<ResolvedImage> {
        match source {
            ImageSource::Registry { reference } => {
                self.inner
                    .registry
                    .resolve(reference, platform, &source.to_string(), prefetch)
                    .await
            }
            local => {
                let local = local.clone();
                let platform = platform.clone();
                tokio::task::spawn_blocking(move || source::resolve_local(&local, &platform))
                    .await
                    .map_err(|e| AnalyzeError::Internal(format!("resolve task: {e}")))?
            }
        }
    }

    /// Resolves and analyzes an image. The config and the first `2 × layers_in_flight` layers are
    /// requested together right after the manifest, and as many stay ahead of the pipeline; a prefetched
    /// layer the cache turns out to hold costs one request whose body is never read.
    pub async fn analyze(
        &self,
        source: &ImageSource,
        cache: &dyn LayerCache,
    ) -> Result<ImageAnalysis> {
        let started = Instant::now();
        // Twice the layers analyzed at once: the next wave's round trips overlap the current one's work.
        let prefetch = 2 * self.inner.options.layers_in_flight.max(1);
        let platform = &self.inner.options.platform;
        let image = self.resolve_prefetching(source, platform, prefetch).await?;
        let resolve_ms = started.elapsed().as_millis() as u64;
        let mut analysis = self.analyze_resolved(&image, cache).await?;
        analysis.stats.resolve_ms = resolve_ms;
        Ok(analysis)
    }

    /// Analyzes a resolved image: cached layers are not downloaded at all; the others are fetched and
    /// analyzed `layers_in_flight` at a time.
    pub async fn analyze_resolved(
        &self,
        image: &ResolvedImage,
        cache: &dyn LayerCache,
    ) -> Result<ImageAnalysis> {
        let inner = &self.inner;
        if let Err(e) = &inner.content {
            return Err(AnalyzeError::Internal(format!("content options: {e}")));
        }
        for layer in &image.info.layers {
            check_digest(&layer.digest, "layer")?;
            if Compression::from_media_type(&layer.media_type).is_err() {
                return Err(AnalyzeError::UnsupportedMediaType {
                    what: format!("layer {}", layer.digest),
                    media_type: layer.media_type.clone(),
                });
            }
        }
        let started = Instant::now();
        let inflated = Arc::new(AtomicU64::new(0));
        let cancel = Arc::new(AtomicBool::new(false));
        let mut warnings = Vec::new();
        // Collected first: a lazy `map` closure in the stream's type makes the whole future fail the
        // `Send` check ("not general enough"), and the job loop needs to spawn it as a task.
        let jobs: Vec<_> = (0..image.info.layers.len())
            .map(|index| {
                let inflated = Arc::clone(&inflated);
                let cancel = Arc::clone(&cancel);
                self.layer(image, index, cache, inflated, cancel)
            })
            .collect();
        let mut stream = futures_util::stream::iter(jobs)
            .buffer_unordered(inner.options.layers_in_flight.max(1));
        let mut results: Vec<Option<(LayerResult, bool)>> = vec![None; image.info.layers.len()];
        while let Some(done) = stream.next().await {
            match done {
                Ok((index, result, hit, warning)) => {
                    warnings.extend(warning);
                    results[index] = Some((result, hit));
                }
                Err(e) => {
                    cancel.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        drop(stream);
        let layers_ms = started.elapsed().as_millis() as u64;
        let results: Vec<(LayerResult, bool)> = results.into_iter().flatten().collect();
        let merge_started = Instant::now();
        let refs: Vec<&LayerResult> = results.iter().map(|(r, _)| r).collect();
        let mut merged = merge::merge(&refs);
        let content = inner.options.content.enabled;
        let visible =
            merge::content::visible(&refs, content && inner.options.content.entries_in_document);
        let secrets = merge::content::secrets(&refs, &visible);
        let (content_search, retrieved_files, malware) =
            reports::content_reports(&inner.options.content, &refs, &visible);
        if content {
            merge::content::apply_licenses(&mut merged.packages, &visible);
        }
        merged.files.entries = visible
            .files
            .into_values()
            .map(|(i, entry)| merge::ImageFile {
                entry: entry.clone(),
                layer: merge::LayerRef {
                    index: i,
                    digest: refs[i].digest.clone(),
                },
            })
            .collect();
        let mut stats = AnalysisStats {
            layers_ms,
            merge_ms: merge_started.elapsed().as_millis() as u64,
            ..Default::default()
        };
        let mut summaries = Vec::with_capacity(results.len());
        for (index, (result, hit)) in results.iter().enumerate() {
            if *hit {
                stats.cache_hits += 1;
            } else {
                stats.cache_misses += 1;
                stats.layers_fetched += 1;
                stats.bytes_fetched += result.compressed_bytes;
                stats.bytes_inflated += result.inflated_bytes;
            }
            warnings.extend(result.warnings.iter().cloned());
            if result.files_truncated {
                warnings.push(format!(
                    "layer {}: {} entries, only {} recorded in the file list",
                    result.digest,
                    result.entries,
                    result.files.len()
                ));
            }
            summaries.push(LayerSummary {
                index,
                digest: result.digest.clone(),
                compression: result.compression,
                from_cache: *hit,
                entries: result.entries,
                inflated_bytes: result.inflated_bytes,
                packages: result.packages.len(),
                whiteouts: result.whiteouts.clone(),
                opaque_dirs: result.opaque_dirs.clone(),
            });
        }
        Ok(ImageAnalysis {
            schema: SCHEMA.into(),
            analyzer: AnalyzerInfo {
                version: env!("CARGO_PKG_VERSION").into(),
                cache_key: inner.cache_key.clone(),
                content: Some(inner.content_info()),
            },
            image: image.info.clone(),
            distro: merged.distro,
            packages: merged.packages,
            files: merged.files,
            layers: summaries,
            secrets,
            content_search,
            retrieved_files,
            malware,
            warnings,
            stats,
        })
    }

    /// One layer: from the cache, or fetched and analyzed on rayon. Returns a cache warning, if any.
    async fn layer(
        &self,
        image: &ResolvedImage,
        index: usize,
        cache: &dyn LayerCache,
        inflated: Arc<AtomicU64>,
        cancel: Arc<AtomicBool>,
    ) -> Result<(usize, LayerResult, bool, Option<String>)> {
        let inner = Arc::clone(&self.inner);
        let layer = image.info.layers[index].clone();
        let key = inner.cache_key.as_str();
        let mut warning = None;
        match cache.get(&layer.digest, key).await {
            Ok(Some(result)) => return Ok((index, result, true, None)),
            Ok(None) => {}
            Err(e) => warning = Some(format!("layer cache read failed for {}: {e}", layer.digest)),
        }
        // Single flight: if another worker is computing this layer right now, wait for its result.
        let mut waited = false;
        let claim = loop {
            match cache.begin(&layer.digest, key, LAYER_CLAIM_TTL).await {
                Ok(Some(claim)) => break Some(claim),
                Ok(None) => {
                    waited = true;
                    tokio::time::sleep(LAYER_CLAIM_POLL).await;
                    if let Ok(Some(result)) = cache.get(&layer.digest, key).await {
                        return Ok((index, result, true, None));
                    }
                }
                Err(e) => {
                    warning = Some(format!("layer claim failed for {}: {e}", layer.digest));
                    break None;
                }
            }
        };
        let mut guard = ClaimGuard {
            cache,
            digest: &layer.digest,
            key,
            claim,
        };
        // After waiting, the owner may have stored the result just before its claim went away. (Without
        // a wait the cache missed one round trip ago: asking again would cost every cold layer a query.)
        if waited && guard.claim.is_some() {
            if let Ok(Some(result)) = cache.get(&layer.digest, key).await {
                guard.release().await;
                return Ok((index, result, true, warning));
            }
        }
        let computed = {
            let compute = self.compute_layer(image, layer.clone(), inflated, cancel);
            tokio::pin!(compute);
            let mut renew = tokio::time::interval(LAYER_CLAIM_TTL / 3);
            renew.tick().await;
            loop {
                tokio::select! {
                    done = &mut compute => break done,
                    _ = renew.tick() => guard.renew().await,
                }
            }
        };
        if let Ok(result) = &computed {
            if let Err(e) = cache.put(&layer.digest, key, result).await {
                warning = Some(format!(
                    "layer cache write failed for {}: {e}",
                    layer.digest
                ));
            }
        }
        // After the put, so a waiting worker finds the result when the claim disappears.
        guard.release().await;
        Ok((index, computed?, false, warning))
    }

    /// Fetches one layer and analyzes it on rayon.
    async fn compute_layer(
        &self,
        image: &ResolvedImage,
        layer: crate::source::LayerInfo,
        inflated: Arc<AtomicU64>,
        cancel: Arc<AtomicBool>,
    ) -> Result<LayerResult> {
        let inner = Arc::clone(&self.inner);
        let reader = image.fetcher.open(&layer).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let digest = layer.digest.clone();
        rayon::spawn(move || {
            let Ok(content) = &inner.content else {
                let _ = tx.send(Ok(Err(AnalyzeError::Internal("content options".into()))));
                return;
            };
            let ctx = LayerContext {
                layer: &layer,
                catalogers: &inner.catalogers,
                content,
                limits: &inner.options.limits,
                image_inflated: &inflated,
                image_cap: inner.options.max_image_inflated,
                cancel: &cancel,
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                layer::analyze_blob(reader, &ctx)
            }));
            let _ = tx.send(outcome);
        });
        match rx.await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(AnalyzeError::Internal(format!(
                "layer {digest}: analysis panicked"
            ))),
            Err(_) => Err(AnalyzeError::Internal(format!(
                "layer {digest}: worker thread lost"
            ))),
        }
    }
}

/// Holds a layer claim; withdraws it when dropped unreleased (the layer's future was cancelled: a sibling
/// layer failed, the lease was lost, the worker drains), so other workers need not wait out the TTL.
struct ClaimGuard<'a> {
    cache: &'a dyn LayerCache,
    digest: &'a str,
    key: &'a str,
    claim: Option<LayerClaim>,
}

impl ClaimGuard<'_> {
    async fn renew(&self) {
        if let Some(claim) = &self.claim {
            if let Err(e) = self
                .cache
                .renew(self.digest, self.key, claim, LAYER_CLAIM_TTL)
                .await
            {
                tracing::debug!(layer = %self.digest, error = %e, "renewing a layer claim failed");
            }
        }
    }

    async fn release(&mut self) {
        if let Some(claim) = self.claim.take() {
            if let Err(e) = self.cache.end(self.digest, self.key, &claim).await {
                tracing::debug!(layer = %self.digest, error = %e, "withdrawing a layer claim failed");
            }
        }
    }
}

impl Drop for ClaimGuard<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.cache.end_detached(self.digest, self.key, claim);
        }
    }
}
