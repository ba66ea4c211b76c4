//! `FATHOM_INSECURE_REGISTRIES` (the README's name) and `FATHOM_REGISTRY_INSECURE` (the derived name of
//! `registry.insecure`) reach every command that pulls images: a worker with neither in its file pulls
//! from the plain-HTTP test registry, and `fathom scan` reads both.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{fathom, free_addr, push_samples, test_db, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_honours_fathom_insecure_registries() {
    let db = test_db().await;
    let pushed = push_samples(&["alpine-apk"]).await;
    let reference = format!("{}/{}", support::registry(), pushed[0].0);
    let dir = tempfile::tempdir().unwrap();
    let metrics = free_addr();
    let config = dir.path().join("worker.yaml");
    // No registry.insecure in the file: only the environment says the registry is plain HTTP.
    std::fs::write(
        &config,
        format!(
            "database: {{url: '{}'}}\nservices: {{analyzer: {{concurrency: 1, poll_interval: 1s}}}}\n\
             metrics: {{address: '{metrics}'}}\n",
            db.url()
        ),
    )
    .unwrap();
    let log = dir.path().join("worker.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = fathom()
        .args(["worker", "--config"])
        .arg(&config)
        .env("FATHOM_INSECURE_REGISTRIES", support::registry())
        .env("FATHOM_LOG", "info")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let handles = Db::new(db.url());
    handles
        .store
        .submit(std::slice::from_ref(&reference), 1)
        .await
        .unwrap();
    let ok = handles
        .wait_for(
            std::slice::from_ref(&reference),
            Duration::from_secs(60),
            |s| s.status == "analyzed" || s.status == "failed" || s.status == "dead",
        )
        .await;
    let status = handles.status(&reference).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        status.status,
        "analyzed",
        "{ok:?} {status:?}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_honours_both_variable_names() {
    let pushed = push_samples(&["alpine-apk"]).await;
    let reference = format!("registry:{}/{}", support::registry(), pushed[0].0);
    for var in ["FATHOM_INSECURE_REGISTRIES", "FATHOM_REGISTRY_INSECURE"] {
        let out = fathom()
            .args(["scan", &reference, "-o", "json"])
            .env(var, support::registry())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{var}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            doc["packages"].as_array().is_some_and(|p| !p.is_empty()),
            "{var}"
        );
    }
    // And without either, the plain-HTTP registry is refused (the variables are what made it work).
    let out = fathom()
        .args(["scan", &reference, "-o", "json"])
        .env_remove("FATHOM_INSECURE_REGISTRIES")
        .env_remove("FATHOM_REGISTRY_INSECURE")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
