//! `fathom demo`: the whole fleet on one machine, from nothing. A throwaway PostgreSQL, sample images built
//! in-process (shared base layers, real-format package databases), a burst of analysis jobs, and the
//! autoscaler running real `fathom worker` processes: they scale up, drain the queue, and scale back to
//! zero. Then a generated sample OSV feed is synced and each image's vulnerabilities are listed
//! ([`super::demo_vulns`]), each image is checked against the default policy bundle and a sample
//! admission is answered ([`super::demo_gate`]), and a watched tag in a sample registry moves to a new
//! image that the catalog finds and has analyzed, whose admitted workload the inventory then lists
//! ([`super::demo_watch`]); a sample bundle changes the in-scope image's final action ([`super::demo_policy`])
//! and a local receiver prints the signed events of it all ([`super::demo_notify`]). Everything started here
//! is stopped on exit or Ctrl-C.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fathom_autoscaler::local::{LocalConfig, LocalTarget, WorkerCommand};
use fathom_autoscaler::{Autoscaler, LoopConfig, Metrics, Policy, SetOutcome, Status};
use fathom_queue::{Queue, QueueConfig};
use fathom_testkit::image::{write_oci_layout, BuiltImage, Compress, LayoutEntry};
use fathom_testkit::pg::{Durability, OwnedCluster};
use fathom_testkit::samples::{sample_images, SampleEntry, SampleImage, SampleKind};
use fathom_worker::store::Store;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::{watch, Notify};

use crate::queue_source::QueueSource;

/// Arguments of `fathom demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Builds of each sample image to submit (each adds a small layer of its own on top of shared ones).
    #[arg(long, default_value_t = 6)]
    pub builds: usize,
    /// Most worker processes the autoscaler may run.
    #[arg(long, default_value_t = 4)]
    pub max_workers: u32,
    /// Jobs each worker runs at once (also the autoscaler's jobs per replica).
    #[arg(long, default_value_t = 2)]
    pub concurrency: u32,
    /// Where the autoscaler serves /metrics.
    #[arg(long, default_value = "127.0.0.1:9465")]
    pub metrics_address: std::net::SocketAddr,
}

/// Runs `fathom demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo(args))
}

/// One replica change the autoscaler wrote.
struct ScaleEvent {
    /// Since the burst was submitted.
    at: Duration,
    from: u32,
    to: u32,
    message: String,
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    eprintln!("fathom demo: starting a throwaway PostgreSQL …");
    let cluster = tokio::task::spawn_blocking(|| OwnedCluster::start(Durability::Throwaway))
        .await?
        .context("starting PostgreSQL")?;
    let url = cluster.info().url("postgres");
    // The queue's and the store's, the notifications' outbox with them (the worker writes each
    // analysis's event into the outbox in the analysis's own transaction).
    fathom_worker::store::migrate_all(&url)
        .await
        .context("applying migrations")?;

    let scratch = tempdir()?;
    let layout = scratch.join("images");
    let references = tokio::task::spawn_blocking({
        let layout = layout.clone();
        let builds = args.builds;
        move || build_images(&layout, builds)
    })
    .await??;
    eprintln!(
        "fathom demo: built {} images from {} samples (shared base layers) in {}",
        references.len(),
        sample_images().len(),
        layout.display()
    );

    let registry = prometheus::Registry::new();
    let metrics = Metrics::register(&registry)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));

    let exe = std::env::current_exe().context("locating the fathom binary")?;
    let target = Arc::new(LocalTarget::new(LocalConfig {
        command: WorkerCommand {
            program: exe.into(),
            args: vec!["worker".into()],
            env: vec![
                ("DATABASE_URL".into(), url.clone().into()),
                (
                    "FATHOM_SERVICES_ANALYZER_CONCURRENCY".into(),
                    args.concurrency.to_string().into(),
                ),
            ],
        },
        id_prefix: "demo-worker".into(),
        drain_timeout: Duration::from_secs(20),
        override_file: scratch.join("override.json"),
        // Each worker gets a known metrics port, so its URL can be printed as it comes up.
        metrics_host: Some(std::net::Ipv4Addr::LOCALHOST.into()),
    }));
    let policy = Policy {
        jobs_per_replica: args.concurrency.max(1),
        min_replicas: 0,
        max_replicas: args.max_workers.max(1),
        scale_down_stabilization: Duration::from_secs(4),
        scale_to_zero_cooldown: Duration::from_secs(4),
        ..Policy::default()
    };
    let queue = Queue::connect(
        &url,
        QueueConfig {
            pool_size: 2,
            ..QueueConfig::default()
        },
    )?;
    let autoscaler = Autoscaler::new(
        Arc::clone(&target),
        QueueSource::new(queue.clone()),
        LoopConfig {
            policy,
            poll_interval: Duration::from_secs(1),
            min_interval: Duration::from_millis(250),
        },
        Some(metrics),
    )?;
    let status = autoscaler.status();
    let serve = |addr| {
        crate::services::autoscaler::serve_http(
            addr,
            registry.clone(),
            status.clone(),
            ready.clone(),
            stop_rx.clone(),
        )
    };
    // Another demo (or anything else) on the default port: take any free one instead.
    let (bound, _server) = match serve(args.metrics_address).await {
        Ok(served) => served,
        Err(_) => serve(([127, 0, 0, 1], 0).into()).await?,
    };
    eprintln!(
        "fathom demo: autoscaler metrics at http://{bound}/metrics (each worker's is printed as it comes up)"
    );

    let nudge = Arc::new(Notify::new());
    let listener = crate::services::autoscaler::nudge_on_notify(&url, nudge.clone())?;
    let mut loop_stop = stop_rx.clone();
    let control = tokio::spawn(autoscaler.run(nudge, async move {
        let _ = loop_stop.wait_for(|s| *s).await;
    }));

    let store = Store::connect_lazy(&url, 2)?;
    store
        .submit(&references, 3)
        .await
        .context("submitting the burst")?;
    eprintln!(
        "fathom demo: submitted {} analysis jobs; Ctrl-C stops everything",
        references.len()
    );

    let submitted = Instant::now();
    let outcome = tokio::select! {
        r = watch_until_done(&queue, &target, status, references.len() as u64, submitted) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };

    let _ = stop_tx.send(true);
    listener.abort();
    let autoscaler = control.await?;
    let exits = autoscaler.target().stop_all().await;
    if !exits.is_empty() {
        tracing::info!(?exits, "workers stopped");
    }
    drop(autoscaler);
    drop(queue);
    let events = outcome?;
    summarize(&store, &references, &events, started).await?;
    super::demo_vulns::run(&store, &references, &scratch).await?;
    let cache_key = fathom_analyzer::analyze::catalogers_key(
        &fathom_analyzer::catalog::default_catalogers(),
        &fathom_analyzer::AnalyzerOptions::default(),
    );
    super::demo_gate::run(&store, &references, &cache_key).await?;
    super::demo_watch::run(&url, &store).await?;
    super::demo_policy::run(&store).await?;
    super::demo_notify::run(&url, &store).await?;
    // Close every pool before the server goes away, so nothing logs a lost connection on the way out.
    store.pool().close().await;
    drop(store);
    drop(cluster);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(ExitCode::SUCCESS)
}

/// Builds `builds` variants of every sample image into one OCI layout; returns their `oci-dir:` references.
fn build_images(layout: &Path, builds: usize) -> anyhow::Result<Vec<String>> {
    let mut built: Vec<(String, BuiltImage)> = Vec::new();
    for sample in sample_images() {
        for build in 1..=builds.max(1) {
            let variant = variant(&sample, build);
            let image = BuiltImage::from_sample(&variant, Compress::Gzip)
                .with_context(|| format!("building {}", variant.name))?;
            built.push((format!("{}-build{build}", sample.name), image));
        }
    }
    let entries: Vec<(&str, LayoutEntry<'_>)> = built
        .iter()
        .map(|(name, image)| (name.as_str(), LayoutEntry::Image(image)))
        .collect();
    write_oci_layout(layout, &entries).context("writing the OCI layout")?;
    Ok(built
        .iter()
        .map(|(name, _)| format!("oci-dir:{}:{name}", layout.display()))
        .collect())
}

/// The sample with one small layer of its own on top: a new image that shares every other layer.
pub(super) fn variant(sample: &SampleImage, build: usize) -> SampleImage {
    let mut image = sample.clone();
    image.name = format!("{}-build{build}", sample.name);
    image.layers.push(vec![SampleEntry {
        path: "/etc/fathom-demo-build".into(),
        mode: 0o644,
        kind: SampleKind::File(format!("{} build {build}\n", sample.name).into_bytes()),
    }]);
    image
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fathom-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Shows progress until every job finished and the workers are back to zero; returns the scale events.
async fn watch_until_done(
    queue: &Queue,
    target: &LocalTarget,
    mut status: watch::Receiver<Status>,
    total: u64,
    started: Instant,
) -> anyhow::Result<Vec<ScaleEvent>> {
    let bars = MultiProgress::new();
    let jobs = bars.add(ProgressBar::new(total));
    jobs.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:40}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    jobs.set_prefix("analyzed");
    let fleet = bars.add(ProgressBar::new_spinner());
    fleet.set_style(ProgressStyle::with_template("{prefix:>9} {spinner} {msg}")?);
    fleet.set_prefix("workers");
    let mut events = Vec::new();
    let mut last_current = 0;
    let mut seen_work = false;
    let mut announced = BTreeSet::new();
    loop {
        announce_workers(&bars, target, &mut announced).await;
        let stats = queue.stats().await?;
        let finished =
            (stats.succeeded + stats.failed + stats.dead + stats.cancelled).max(0) as u64;
        jobs.set_position(finished.min(total));
        jobs.set_message(format!(
            "queued {} running {} failed {}",
            stats.queued(),
            stats.running,
            stats.failed + stats.dead
        ));
        let round = status.borrow_and_update().clone();
        if let (Some(decision), Some(SetOutcome::Written)) = (&round.decision, &round.outcome) {
            if decision.desired != last_current {
                events.push(ScaleEvent {
                    at: started.elapsed(),
                    from: last_current,
                    to: decision.desired,
                    message: decision.message.clone(),
                });
                last_current = decision.desired;
            }
        }
        let current = round.observed.as_ref().map(|o| o.replicas).unwrap_or(0);
        seen_work |= current > 0;
        fleet.set_message(match &round.decision {
            Some(d) => format!("{current} running, {} desired — {}", d.desired, d.message),
            None => format!("{current} running"),
        });
        fleet.tick();
        if finished >= total
            && stats.queued() == 0
            && stats.running == 0
            && seen_work
            && current == 0
        {
            jobs.finish();
            fleet.finish_with_message("all workers drained and stopped");
            return Ok(events);
        }
        tokio::select! {
            _ = status.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Prints the `/metrics` URL of each worker once it accepts connections, above the bars.
async fn announce_workers(
    bars: &MultiProgress,
    target: &LocalTarget,
    announced: &mut BTreeSet<String>,
) {
    for worker in target.workers().await {
        let Some(addr) = worker.metrics else { continue };
        if announced.contains(&worker.id) {
            continue;
        }
        let up = tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .is_ok_and(|c| c.is_ok());
        if up {
            let pid = worker
                .pid
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            let line = format!(
                "fathom demo: worker {}{pid} metrics at http://{addr}/metrics",
                worker.id
            );
            // Above the bars on a terminal; bars drawn nowhere (output redirected) print nothing, so
            // the line goes to stderr directly there.
            if bars.is_hidden() {
                eprintln!("{line}");
            } else {
                let _ = bars.println(line);
            }
            announced.insert(worker.id);
        }
    }
}

async fn summarize(
    store: &Store,
    references: &[String],
    events: &[ScaleEvent],
    started: Instant,
) -> anyhow::Result<()> {
    let images = store.images(10_000).await?;
    let analyzed = images
        .iter()
        .filter(|i| i.status == fathom_worker::store::ImageStatus::Analyzed)
        .count();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let (mut hits, mut misses) = (0usize, 0usize);
    for image in &images {
        if let Some(doc) = store.document(&image.manifest_digest).await? {
            for package in &doc.packages {
                *by_type
                    .entry(package.package.package_type.as_str().to_string())
                    .or_default() += 1;
            }
            hits += doc.stats.cache_hits;
            misses += doc.stats.cache_misses;
        }
    }
    let mut millis: Vec<i64> = images.iter().filter_map(|i| i.analysis_ms).collect();
    millis.sort_unstable();
    let pct = |p: f64| -> i64 {
        if millis.is_empty() {
            return 0;
        }
        millis[((millis.len() as f64 * p) as usize).min(millis.len() - 1)]
    };

    println!();
    println!(
        "fathom demo summary ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  images: {} submitted, {} distinct manifests, {} analyzed",
        references.len(),
        images.len(),
        analyzed
    );
    let packages: Vec<String> = by_type.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!("  packages by type: {}", packages.join(", "));
    println!(
        "  analysis time: p50 {} ms, p95 {} ms, p99 {} ms",
        pct(0.50),
        pct(0.95),
        pct(0.99)
    );
    let lookups = hits + misses;
    println!(
        "  layer cache: {hits} hits / {lookups} lookups ({:.0} %)",
        if lookups == 0 {
            0.0
        } else {
            100.0 * hits as f64 / lookups as f64
        }
    );
    println!("  scale events (seconds after the burst was submitted):");
    for event in events {
        println!(
            "    +{:>5.1} s  {} → {}  {}",
            event.at.as_secs_f64(),
            event.from,
            event.to,
            event.message
        );
    }
    Ok(())
}
