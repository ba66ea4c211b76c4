//! `fathom demo` as a user runs it (one build of each sample to keep it short): it finishes, and its
//! output shows each step — the burst and the autoscaler, the sample feed's matches, the policy and
//! admission step, and the catalog's watch: the watched tag's new image found and analyzed with nobody
//! submitting it, the admitted workload listed from the inventory, the dry run not — every sample
//! labelled as generated sample data.

mod support;

use std::time::{Duration, Instant};

#[test]
fn the_demo_runs_every_step_and_a_moved_watched_tag_is_analyzed_and_its_workload_listed() {
    let started = Instant::now();
    let out = support::fathom()
        .args(["demo", "--builds", "1", "--max-workers", "2"])
        .args(["--metrics-address", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("run fathom demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fathom demo failed after {:?}:\n{stdout}\n{stderr}",
        started.elapsed()
    );
    let line = |needle: &str| {
        stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{stdout}"))
            .to_string()
    };
    line("fathom demo summary");
    line("GENERATED SAMPLE AdmissionReview");

    // The watch: created through the API, the tag moved, the catalog found and queued the new image.
    let header = line("watches (GENERATED SAMPLE registry");
    assert!(header.contains("in memory"), "{header}");
    let created = line("POST /v1/watches");
    assert!(created.contains("→ 201"), "{created}");
    let pushed = line("pushed another image to demo/shop:prod");
    assert!(pushed.contains("nobody submits it"), "{pushed}");
    let found = line("the catalog's pass saw the tag move");
    assert!(found.contains("analyzed"), "{found}");
    // History: both digests, newest first, the newest the pushed one, each with the job that analyzed it.
    let history = line("history, newest first:");
    let new_digest = pushed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .expect("the pushed digest");
    let listed = history.split("newest first: ").nth(1).unwrap_or_default();
    let entries: Vec<&str> = listed.split(", ").collect();
    assert_eq!(entries.len(), 2, "{history}");
    assert!(entries[0].starts_with(new_digest), "{history}");
    assert!(entries.iter().all(|e| e.contains("(job ")), "{history}");

    // The inventory: the admitted Deployment is listed for the new digest; the dry run is not.
    line("inventory (GENERATED SAMPLE AdmissionReviews");
    let admitted = line("Deployment demo/shop running");
    assert!(admitted.ends_with("allowed"), "{admitted}");
    let dry = line("Deployment demo/canary running");
    assert!(dry.contains("(dry run)"), "{dry}");
    let get = line("/workloads:");
    assert!(get.contains(new_digest), "{get}");
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("/workloads:"))
        .skip(1)
        .filter(|l| l.starts_with("      "))
        .collect();
    assert_eq!(rows.len(), 1, "only the admitted workload:\n{stdout}");
    assert!(
        rows[0].contains("demo Deployment shop container app"),
        "{}",
        rows[0]
    );
    // The local receiver got every event the demo's changes wrote, each signature verified.
    let notes = line("notifications (a SAMPLE local receiver");
    let numbers: Vec<u64> = notes
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    // "... 127.0.0.1:PORT/hook ...): X of Y events delivered in Ts, Z signatures verified"
    let tail = &numbers[numbers.len() - 5..];
    assert!(tail[0] > 0 && tail[0] == tail[1], "{notes}");
    assert_eq!(tail[4], tail[0], "{notes}");
    assert!(stdout.contains("dev.fathom.image.analyzed: "), "{stdout}");
    // The sample feed's matches and the policy change reached the receiver too.
    assert!(
        stdout.contains("dev.fathom.image.vulnerabilities.changed: "),
        "{stdout}"
    );
    let change = line("policy change (GENERATED SAMPLE bundle");
    let changed: u64 = change
        .split(", ")
        .nth(1)
        .and_then(|p| p.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(changed >= 1, "{change}");
    assert!(
        stdout.contains("dev.fathom.image.policy.changed: "),
        "{stdout}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(900),
        "the demo took {:?}",
        started.elapsed()
    );
}
