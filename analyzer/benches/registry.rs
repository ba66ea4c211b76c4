//! `cargo bench -p fathom-analyzer --bench registry`: what a scan costs a registry and how long it waits
//! for it. Each run is a fresh process (this bench re-executes itself) doing what `fathom scan` does —
//! build an analyzer, resolve, analyze with no layer cache — against a real `docker-registry`, once
//! through a proxy adding `rtt_ms` to every request and once on loopback. One line per image and case:
//! `scan image=NAME tool=fathom rtt_ms=R wall_s=X requests=N layers=L` (median of the runs; requests
//! counted by the proxy, so only for rtt_ms>0), and the same for Trivy when it is on PATH.

#[path = "../tests/support/rtt_proxy.rs"]
mod rtt_proxy;

use std::process::Command;
use std::time::{Duration, Instant};

use fathom_analyzer::analyze::{Analyzer, AnalyzerOptions};
use fathom_analyzer::source::registry::RegistryOptions;
use fathom_analyzer::{ImageSource, NoCache};
use fathom_testkit::registry::Registry;
use fathom_testkit::samples::sample_images;
use fathom_testkit::{BuiltImage, Compress, Pusher};

const RUNS: usize = 5;
const RTT: Duration = Duration::from_millis(20);
const CHILD: &str = "FATHOM_BENCH_SCAN_ONE";

fn main() {
    if let Ok(reference) = std::env::var(CHILD) {
        std::process::exit(scan_one(&reference));
    }
    if let Err(e) = run() {
        eprintln!("bench registry: {e}");
        std::process::exit(1);
    }
}

/// The child: one scan, as `fathom scan` runs it (current-thread runtime, default catalogers).
fn scan_one(reference: &str) -> i32 {
    let host = reference.split('/').next().unwrap_or_default().to_string();
    let options = AnalyzerOptions {
        registry: RegistryOptions {
            insecure: vec![host],
            ..Default::default()
        },
        ..Default::default()
    };
    let source: ImageSource = match reference.parse() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let analyzer = Analyzer::new(fathom_analyzer::catalog::default_catalogers(), options);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    match runtime.block_on(analyzer.analyze(&source, &NoCache)) {
        Ok(a) => {
            println!("{}", a.packages.len());
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn timed(mut cmd: Command) -> Result<Duration, String> {
    let started = Instant::now();
    let out = cmd.output().map_err(|e| e.to_string())?;
    let wall = started.elapsed();
    if !out.status.success() {
        return Err(format!(
            "scan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(wall)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn trivy() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("trivy"))
        .find(|p| p.is_file())
}

fn run() -> Result<(), String> {
    let registry = Registry::start_private(None)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let samples = sample_images();
    let picked = ["debian-python-npm", "alpine-apk"];
    for sample in samples.iter().filter(|s| picked.contains(&s.name.as_str())) {
        let image = BuiltImage::from_sample(sample, Compress::Gzip).map_err(|e| e.to_string())?;
        let pusher = Pusher::new(&registry.addr, None);
        runtime.block_on(pusher.push(&sample.name, "bench", &image))?;
        let proxy = runtime.block_on(rtt_proxy::Proxy::start(&registry.addr, RTT, None));
        let layers = sample.layers.len();
        for (rtt_ms, addr) in [
            (RTT.as_millis(), proxy.addr.as_str()),
            (0, registry.addr.as_str()),
        ] {
            let reference = format!("{addr}/{}:bench", sample.name);
            let mut walls = Vec::new();
            let mut requests = Vec::new();
            for _ in 0..RUNS {
                proxy.reset();
                let mut cmd = Command::new(&me);
                cmd.env(CHILD, &reference);
                walls.push(timed(cmd)?);
                requests.push(proxy.total());
            }
            let requests = if rtt_ms > 0 {
                requests
                    .iter()
                    .max()
                    .copied()
                    .unwrap_or_default()
                    .to_string()
            } else {
                "-".to_string()
            };
            println!(
                "scan image={} tool=fathom rtt_ms={rtt_ms} wall_s={:.3} requests={requests} layers={layers}",
                sample.name,
                median(walls).as_secs_f64()
            );
            if let Some(trivy) = trivy() {
                let trivy_cache =
                    std::env::temp_dir().join(format!("fathom-bench-trivy-{}", std::process::id()));
                let mut walls = Vec::new();
                let mut requests = 0;
                for _ in 0..RUNS {
                    proxy.reset();
                    let mut cmd = Command::new(&trivy);
                    // An SBOM of the image, as fathom's scan produces, so Trivy needs no vulnerability
                    // database (none can be downloaded here) and does the same registry work.
                    cmd.args([
                        "image",
                        "--quiet",
                        "--insecure",
                        "--cache-backend",
                        "memory",
                        "--skip-db-update",
                        "--offline-scan",
                        "--image-src",
                        "remote",
                    ])
                    .args(["--format", "cyclonedx", &reference])
                    .env("TRIVY_NON_SSL", "true")
                    .env("TRIVY_CACHE_DIR", &trivy_cache);
                    walls.push(timed(cmd)?);
                    requests = requests.max(proxy.total());
                }
                let _ = std::fs::remove_dir_all(&trivy_cache);
                println!(
                    "scan image={} tool=trivy rtt_ms={rtt_ms} wall_s={:.3} requests={} layers={layers}",
                    sample.name,
                    median(walls).as_secs_f64(),
                    if rtt_ms > 0 { requests.to_string() } else { "-".into() }
                );
            }
        }
    }
    Ok(())
}
