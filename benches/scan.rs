//! `cargo bench --bench scan`: the release `fathom scan` on images built here (the sample images and a
//! large Debian-like image), served by a local `docker-registry`, next to Syft and Trivy when they are on
//! PATH or in $FATHOM_PEERS_DIR, and next to the floor (inflate + tar walk of the same layers in-process).
//! One line per image and tool:
//! `scan image=NAME tool=T wall_s=X peak_mib=Y packages=N` and `scan image=NAME tool=floor wall_s=X`.
//! `tool=fathom` is the default run (content pass on); `tool=fathom-packages` runs with `--no-content`, and
//! `scan image=NAME tool=fathom-content files=F secrets=S licensed=L` says what the default run found.
//! `FATHOM_BENCH_IMAGES=large` (comma-separated names) measures only those images;
//! `FATHOM_BENCH_TOOLS=fathom,floor` only those tools (`fathom` covers the default and packages-only runs).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fathom_testkit::floor::inflate_and_walk;
use fathom_testkit::measure::{self, Measured};
use fathom_testkit::registry::Registry;
use fathom_testkit::samples::{large_image, sample_images};
use fathom_testkit::{BuiltImage, Compress, Pusher};

/// Runs per tool and image; the median wall time is reported (with that run's peak RSS).
const RUNS: usize = 3;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench scan: {e}");
        std::process::exit(1);
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("FATHOM_PEERS_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    dirs.extend(
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}

fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by_key(|m| m.wall);
    runs.swap_remove(runs.len() / 2)
}

fn measure(
    mut make: impl FnMut() -> Command,
    count: impl Fn(&[u8]) -> Option<usize>,
) -> Result<(Measured, usize), String> {
    let mut runs = Vec::new();
    let mut packages = 0;
    for _ in 0..RUNS {
        let m = measure::run(make()).map_err(|e| e.to_string())?;
        if m.code != Some(0) {
            return Err(format!(
                "exit {:?}: {}",
                m.code,
                String::from_utf8_lossy(&m.stderr)
            ));
        }
        packages = count(&m.stdout).ok_or("unparseable output")?;
        runs.push(m);
    }
    Ok((median(runs), packages))
}

/// Inventory entries, secrets and packages with licenses in a `fathom scan -o json` output.
fn content_counts(bytes: &[u8]) -> Option<(usize, usize, usize)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let len = |p: &str| {
        v.pointer(p)
            .and_then(|a| a.as_array())
            .map_or(0, |a| a.len())
    };
    let licensed = v.pointer("/packages")?.as_array()?.iter();
    let licensed = licensed
        .filter(|p| p["licenses"].as_array().is_some_and(|l| !l.is_empty()))
        .count();
    Some((len("/files/entries"), len("/secrets"), licensed))
}

fn json_len(bytes: &[u8], pointer: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(v.pointer(pointer)?.as_array()?.len())
}

fn report(image: &str, tool: &str, result: Result<(Measured, usize), String>) {
    match result {
        Ok((m, packages)) => println!(
            "scan image={image} tool={tool} wall_s={:.3} peak_mib={:.1} packages={packages}",
            m.wall.as_secs_f64(),
            m.peak_rss as f64 / (1024.0 * 1024.0)
        ),
        Err(e) => eprintln!("scan image={image} tool={tool} failed: {e}"),
    }
}

/// Floor of the image whose layer blobs were saved under `dir`, read back into memory first.
fn floor(name: &str, blobs: &[PathBuf]) -> Duration {
    let layers: Vec<Vec<u8>> = blobs.iter().filter_map(|p| std::fs::read(p).ok()).collect();
    let mut best = Duration::MAX;
    for _ in 0..RUNS {
        let started = Instant::now();
        for blob in &layers {
            if let Err(e) = inflate_and_walk(blob) {
                eprintln!("floor {name}: {e}");
            }
        }
        best = best.min(started.elapsed());
    }
    drop(layers);
    measure::release_memory();
    best
}

fn run() -> Result<(), String> {
    let selected = |var: &str, name: &str| {
        std::env::var(var)
            .map(|v| v.split(',').any(|n| n.trim() == name))
            .unwrap_or(true)
    };
    let mut images: Vec<BuiltImage> = Vec::new();
    for sample in sample_images()
        .into_iter()
        .chain(std::iter::once(large_image()))
        .filter(|s| selected("FATHOM_BENCH_IMAGES", &s.name))
    {
        let sample = &sample;
        images.push(BuiltImage::from_sample(sample, Compress::Gzip).map_err(|e| e.to_string())?);
    }
    let registry = Registry::start_private(None)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let pusher = Pusher::new(&registry.addr, None);
    let mut references = Vec::new();
    for image in &images {
        references.push(runtime.block_on(pusher.push(
            &format!("bench/{}", image.name),
            "latest",
            image,
        ))?);
    }
    let scratch = std::env::temp_dir().join(format!("fathom-bench-scan-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    // Keep only names and blob files: the measured children must not inherit a large parent RSS.
    let mut saved = Vec::new();
    for image in &images {
        let compressed: usize = image.layers.iter().map(|l| l.blob.len()).sum();
        let mut paths = Vec::new();
        for (i, layer) in image.layers.iter().enumerate() {
            let path = scratch.join(format!("{}-{i}.blob", image.name));
            std::fs::write(&path, &layer.blob).map_err(|e| e.to_string())?;
            paths.push(path);
        }
        saved.push((image.name.clone(), image.layers.len(), compressed, paths));
    }
    drop(images);
    measure::release_memory();
    let fathom = env!("CARGO_BIN_EXE_fathom");
    let tool = |name: &str| find_tool(name).filter(|_| selected("FATHOM_BENCH_TOOLS", name));
    let syft = tool("syft");
    let trivy = tool("trivy");
    let run_fathom = selected("FATHOM_BENCH_TOOLS", "fathom");
    let run_floor = selected("FATHOM_BENCH_TOOLS", "floor");
    for ((name, layers, compressed, blobs), reference) in saved.iter().zip(&references) {
        eprintln!(
            "image {name}: {layers} layers, {:.1} MB compressed",
            *compressed as f64 / 1e6
        );
        let found = std::cell::Cell::new(None);
        if run_fathom {
            let scan = |extra: Option<&str>| {
                let mut c = Command::new(fathom);
                c.args([
                    "scan",
                    &format!("registry:{reference}"),
                    "--insecure-registry",
                    &registry.addr,
                ]);
                c.args(extra);
                c
            };
            report(
                name,
                "fathom",
                measure(
                    || scan(None),
                    |out| {
                        found.set(content_counts(out));
                        json_len(out, "/packages")
                    },
                ),
            );
            report(
                name,
                "fathom-packages",
                measure(
                    || scan(Some("--no-content")),
                    |out| json_len(out, "/packages"),
                ),
            );
            if let Some((files, secrets, licensed)) = found.get() {
                println!(
                "scan image={name} tool=fathom-content files={files} secrets={secrets} licensed={licensed}"
            );
            }
        }
        if let Some(syft) = &syft {
            report(
                name,
                "syft",
                measure(
                    || {
                        let mut c = Command::new(syft);
                        c.args([
                            "scan",
                            &format!("registry:{reference}"),
                            "-o",
                            "syft-json",
                            "-q",
                        ])
                        .env("SYFT_REGISTRY_INSECURE_USE_HTTP", "true")
                        .env("SYFT_CHECK_FOR_APP_UPDATE", "false")
                        .env("SYFT_CACHE_DIR", scratch.join("syft-cache"));
                        c
                    },
                    |out| json_len(out, "/artifacts"),
                ),
            );
        }
        if let Some(trivy) = &trivy {
            report(
                name,
                "trivy",
                measure(
                    || trivy_command(trivy, reference, &scratch),
                    |out| json_len(out, "/components"),
                ),
            );
        }
        if run_floor {
            println!(
                "scan image={name} tool=floor wall_s={:.3}",
                floor(name, blobs).as_secs_f64()
            );
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn trivy_command(trivy: &Path, reference: &str, scratch: &Path) -> Command {
    let mut c = Command::new(trivy);
    c.args([
        "image",
        "--cache-backend",
        "memory",
        "--skip-db-update",
        "--offline-scan",
        "--format",
        "cyclonedx",
        "--image-src",
        "remote",
        "--quiet",
        reference,
    ])
    .env("TRIVY_NON_SSL", "true")
    .env("TRIVY_CACHE_DIR", scratch.join("trivy-cache"));
    c
}
