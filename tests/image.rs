//! The shipped image: `scripts/build-image` (buildah, deploy/Dockerfile) run in a clean clone of HEAD, pushed
//! to the test registry; its config checked (numeric user, exec-form entrypoint, OCI labels), its root
//! filesystem unpacked with umoci and the binary run from it under chroot as the image's user (`--version`,
//! `config`, `migrate` and a short `run` against the test Postgres); then `fathom scan` of the image lists
//! the binary's crates (cargo-auditable) and the base's Debian packages, and `fathom check` with the default
//! bundle gives a verdict.
//!
//! Needs root, buildah, skopeo, umoci, git and cargo-auditable (scripts/deps.d/80-image.sh installs them):
//! it fails, not skips, when one is missing. The release build goes to `target/image-build`, kept between
//! runs so only the workspace crates are compiled again (the clone's sources are new every time).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fathom_testkit::pg::TestDb;
use serde_json::Value;
use support::{fathom, free_addr, http_get, process::repo};

/// The tools the build and the checks use, each with a harmless command that proves it runs.
const TOOLS: &[(&str, &[&str])] = &[
    ("buildah", &["--version"]),
    ("skopeo", &["--version"]),
    ("umoci", &["--version"]),
    ("git", &["--version"]),
    ("cargo", &["auditable", "--version"]),
];

fn require_tools() {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(tool, args)| {
            !Command::new(tool)
                .args(*args)
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|(tool, _)| {
            if *tool == "cargo" {
                "cargo-auditable"
            } else {
                tool
            }
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the image test needs {missing:?}: run scripts/deps.d/80-image.sh's steps (apt-get install \
         buildah skopeo umoci git; cargo install cargo-auditable --locked --version 0.7.7)"
    );
    let uid = run_ok(Command::new("id").arg("-u"));
    assert_eq!(
        uid.trim(),
        "0",
        "the image test needs root (buildah's vfs storage, chroot)"
    );
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The image's entrypoint plus `args`, run in the unpacked root filesystem as the image's user, with
/// only `env` in the environment (as a container runtime would).
fn in_image(rootfs: &Path, user: &str, argv: &[String], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new("/usr/sbin/chroot");
    cmd.arg(format!("--userspec={user}"))
        .arg(rootfs)
        .args(argv)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// The test database over TCP: the image's root filesystem cannot see the host's unix socket.
fn tcp_url(url: &str) -> String {
    match url.split_once("?host=") {
        Some((base, _)) => base.replace("@localhost:", "@127.0.0.1:"),
        None => url.to_string(),
    }
}

/// Versions of `name` in Cargo.lock.
fn locked_versions(lock: &str, name: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"") {
            if let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                out.insert(v.trim_end_matches('"').to_string());
            }
        }
    }
    out
}

/// Total size of the regular files under `dir`.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Clones HEAD and builds and pushes the image from the clone; returns the clone and the build time.
fn build_and_push(tmp: &Path, reference: &str) -> (PathBuf, Duration) {
    let clone = tmp.join("clone");
    run_ok(
        Command::new("git")
            .args(["clone", "--quiet"])
            .arg(repo())
            .arg(&clone),
    );
    // A remote URL with credentials: the source label must carry the URL without them.
    run_ok(Command::new("git").current_dir(&clone).args([
        "remote",
        "set-url",
        "origin",
        "https://builder:s3cret-token@git.example.invalid/fathom.git",
    ]));
    let log = tmp.join("build-image.log");
    let file = std::fs::File::create(&log).unwrap();
    let started = Instant::now();
    // Niced: other tests and builds share the machine.
    let status = Command::new("nice")
        .args([
            "-n",
            "19",
            "scripts/build-image",
            "--push",
            reference,
            "--insecure",
        ])
        .current_dir(&clone)
        .env("CARGO_TARGET_DIR", repo().join("target/image-build"))
        .env("CARGO_INCREMENTAL", "0")
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    let took = started.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.success(),
        "scripts/build-image: {status}\n{}",
        &text[text.len().saturating_sub(8000)..]
    );
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.starts_with("build-image:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    (clone, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_builds_from_a_clean_clone_runs_and_lists_what_is_inside() {
    require_tools();
    let tmp = tempfile::tempdir().unwrap();
    let registry = support::registry();
    let reference = format!("{registry}/fathom-image:test-{}", std::process::id());
    let (clone, took) = build_and_push(tmp.path(), &reference);
    let docker_ref = format!("docker://{reference}");

    // The config: numeric non-root user, exec-form entrypoint, the OCI labels.
    let config = json(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--config",
        "--tls-verify=false",
        &docker_ref,
    ])));
    let c = &config["config"];
    assert_eq!(c["User"], "10001:10001", "{config}");
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/local/bin/fathom"])
    );
    assert_eq!(
        c["Cmd"],
        serde_json::json!(["run", "--config", "/config/config.yaml"])
    );
    let labels = &c["Labels"];
    let head = run_ok(
        Command::new("git")
            .current_dir(&clone)
            .args(["rev-parse", "HEAD"]),
    );
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        head.trim(),
        "{labels}"
    );
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://git.example.invalid/fathom.git"
    );
    assert!(!config.to_string().contains("s3cret"), "{config}");
    let manifest = json(&run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &docker_ref,
    ])));
    let compressed: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();

    // The root filesystem, as a runtime would unpack it.
    let layout = tmp.path().join("layout");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &docker_ref,
        &format!("oci:{}:fathom", layout.display()),
    ]));
    let bundle = tmp.path().join("bundle");
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:fathom", layout.display()))
            .arg(&bundle),
    );
    let rootfs = bundle.join("rootfs");
    for shell in [
        "bin/sh",
        "usr/bin/sh",
        "bin/bash",
        "bin/dash",
        "bin/busybox",
    ] {
        assert!(
            rootfs.join(shell).symlink_metadata().is_err(),
            "a shell in the image: /{shell}"
        );
    }
    let uncompressed = tree_size(&rootfs);

    // The binary runs from it, as the image's user, with the image's libraries.
    let user = c["User"].as_str().unwrap();
    let entry: Vec<String> = serde_json::from_value(c["Entrypoint"].clone()).unwrap();
    let with = |args: &[&str]| -> Vec<String> {
        entry
            .iter()
            .cloned()
            .chain(args.iter().map(|a| a.to_string()))
            .collect()
    };
    let version = run_ok(&mut in_image(&rootfs, user, &with(&["--version"]), &[]));
    assert_eq!(
        version.trim(),
        format!("fathom {}", env!("CARGO_PKG_VERSION"))
    );
    let effective = json(&run_ok(&mut in_image(
        &rootfs,
        user,
        &with(&["config"]),
        &[],
    )));
    assert!(effective["services"].is_object(), "{effective}");

    let db = TestDb::create(&[]).await.unwrap();
    let url = tcp_url(db.url());
    run_ok(&mut in_image(
        &rootfs,
        user,
        &with(&["migrate"]),
        &[("DATABASE_URL", &url)],
    ));
    let jobs: i64 = {
        let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
        let n = sqlx::query_scalar("SELECT count(*) FROM fathom_jobs")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        n
    };
    assert_eq!(jobs, 0);

    // `fathom run` with the image's own command and the analyzer pods' config, mounted where they mount it.
    let config_dir = rootfs.join("config");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::copy(
        repo().join("deploy/base/worker-config.yaml"),
        config_dir.join("config.yaml"),
    )
    .unwrap();
    let cmd: Vec<String> = serde_json::from_value(c["Cmd"].clone()).unwrap();
    let argv: Vec<String> = entry.iter().chain(cmd.iter()).cloned().collect();
    let metrics = free_addr();
    let run_log = tmp.path().join("run.log");
    let file = std::fs::File::create(&run_log).unwrap();
    let mut child = in_image(
        &rootfs,
        user,
        &argv,
        &[
            ("DATABASE_URL", &url),
            ("FATHOM_METRICS_ADDRESS", &metrics),
            ("FATHOM_LOG", "info"),
        ],
    )
    .stdout(file.try_clone().unwrap())
    .stderr(file)
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&metrics, "/readyz").is_none_or(|(status, _)| status != 200) {
        let log = || std::fs::read_to_string(&run_log).unwrap_or_default();
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "fathom run from the image exited ({status}); log:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "fathom run never ready; log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics_text = http_get(&metrics, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    assert!(metrics_text.contains("fathom_build_info"), "{metrics_text}");
    run_ok(Command::new("kill").args(["-TERM", &child.id().to_string()]));
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "fathom run after SIGTERM: {status}; log:\n{}",
        std::fs::read_to_string(&run_log).unwrap_or_default()
    );

    // Every scanner can see inside: fathom lists the binary's crates and the base's Debian packages.
    let source = format!("registry:{reference}");
    let out = fathom()
        .args(["scan", &source, "-o", "json"])
        .env("FATHOM_INSECURE_REGISTRIES", &registry)
        .output()
        .unwrap();
    assert!(out.status.success(), "fathom scan: {}", describe(&out));
    let sbom: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sbom["distro"]["id"], "debian", "{}", sbom["distro"]);
    let packages = sbom["packages"].as_array().unwrap();
    let of = |kind: &str| -> Vec<(String, String)> {
        packages
            .iter()
            .filter(|p| p["package_type"] == kind)
            .map(|p| {
                (
                    p["name"].as_str().unwrap().into(),
                    p["version"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let crates = of("rust-crate");
    let lock = std::fs::read_to_string(clone.join("Cargo.lock")).unwrap();
    for name in [
        "tokio",
        "sqlx",
        "rustls",
        "axum",
        "fathom",
        "fathom-analyzer",
    ] {
        let found: BTreeSet<String> = crates
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect();
        assert!(
            !found.is_empty() && found.is_subset(&locked_versions(&lock, name)),
            "{name}: {found:?} in the image, {:?} in Cargo.lock",
            locked_versions(&lock, name)
        );
    }
    // Built without the `demo` feature: the test kit is not linked in.
    assert!(
        !crates.iter().any(|(n, _)| n == "fathom-testkit"),
        "{crates:?}"
    );
    let debs = of("deb");
    let deb_names: BTreeSet<&str> = debs.iter().map(|(n, _)| n.as_str()).collect();
    for name in ["base-files", "libc6", "libgcc-s1", "ca-certificates"] {
        assert!(deb_names.contains(name), "{name} missing from {debs:?}");
    }
    // The version scanners report is the glibc the image runs.
    let libc = &debs.iter().find(|(n, _)| n == "libc6").unwrap().1;
    let loader = run_ok(&mut in_image(
        &rootfs,
        user,
        &[
            "/lib64/ld-linux-x86-64.so.2".to_string(),
            "--version".to_string(),
        ],
        &[],
    ));
    assert!(
        loader.contains(libc.as_str()),
        "libc6 {libc}, loader says {loader}"
    );

    // The default policy bundle gives a verdict (GO/WARN exit 0, STOP exit 1), not an error (2).
    let bundle_file = tmp.path().join("default.json");
    std::fs::write(&bundle_file, fathom_policy::DEFAULT_BUNDLE_JSON).unwrap();
    let out = fathom()
        .args(["check", &source, "--policy"])
        .arg(&bundle_file)
        .args(["-o", "json"])
        .env("FATHOM_INSECURE_REGISTRIES", &registry)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "fathom check: {}",
        describe(&out)
    );
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = verdict["final_action"].as_str().unwrap_or_default();
    assert!(["GO", "WARN", "STOP"].contains(&action), "{verdict}");

    eprintln!(
        "image: {compressed} bytes compressed, {uncompressed} bytes unpacked, {} Debian packages, \
         {} crates, built and pushed in {:.0} s; policy verdict {action}",
        debs.len(),
        crates.len(),
        took.as_secs_f64()
    );
}
