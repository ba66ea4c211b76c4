//! The layout's boundaries as checks, not conventions: the analyzer engine builds without a database,
//! an HTTP server, a metrics registry or the queue; test support is nobody's production dependency.

use std::process::Command;

/// `cargo tree` of `package`'s normal (non-dev) dependencies, one crate name per line.
fn normal_dependencies(package: &str, features: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "tree",
        "--offline",
        "-p",
        package,
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ])
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if !features.is_empty() {
        cmd.args(["--no-default-features", "--features", &features.join(",")]);
    }
    let out = cmd.output().expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn the_analyzer_engine_depends_on_no_service_machinery() {
    let deps = normal_dependencies("fathom-analyzer", &[]);
    assert!(deps.iter().any(|d| d == "fathom-analyzer"), "{deps:?}");
    for banned in [
        "sqlx",
        "axum",
        "prometheus",
        "tokio-postgres",
        "fathom-queue",
        "fathom-testkit",
    ] {
        assert!(
            !deps.iter().any(|d| d == banned),
            "fathom-analyzer depends on {banned}"
        );
    }
}

#[test]
fn the_pure_policy_engine_and_version_orderings_do_no_io() {
    // `fathom check` and the engine's table tests run without a database or network stack; the policy
    // crate shares the matcher's version orderings through fathom-versions, not through fathom-vulns.
    for package in ["fathom-policy", "fathom-versions"] {
        let deps = normal_dependencies(package, &[]);
        for banned in ["sqlx", "reqwest", "tokio", "fathom-vulns", "fathom-testkit"] {
            assert!(
                !deps.iter().any(|d| d == banned),
                "{package} depends on {banned}"
            );
        }
    }
}

#[test]
fn libraries_do_not_depend_on_the_test_kit() {
    for package in [
        "fathom-queue",
        "fathom-worker",
        "fathom-autoscaler",
        "fathom-config",
        "fathom-versions",
        "fathom-vulns",
        "fathom-policy",
    ] {
        let deps = normal_dependencies(package, &[]);
        assert!(
            !deps.iter().any(|d| d == "fathom-testkit"),
            "{package} depends on fathom-testkit"
        );
    }
}

#[test]
fn migration_versions_are_unique_across_crates() {
    // One `_sqlx_migrations` table holds every crate's migrations: a version used twice makes the second
    // crate's migrator fail with a version mismatch on any database the first one migrated.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seen: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for crate_dir in ["queue", "worker", "vulns", "policy"] {
        let dir = root.join(crate_dir).join("migrations");
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let version = name.split('_').next().unwrap_or_default().to_string();
            let here = format!("{crate_dir}/migrations/{name}");
            if let Some(other) = seen.insert(version.clone(), here.clone()) {
                panic!("migration version {version} is used by {other} and {here}");
            }
        }
    }
    assert!(seen.len() >= 8, "{seen:?}");
}
