use super::*;
use crate::data::{Fix, Package};

fn entry(id: &str, pkg: &str, severity: &str, fixed: &[&str]) -> VulnEntry {
    VulnEntry {
        id: id.into(),
        aliases: vec![format!("CVE-{id}")],
        package: Package {
            name: pkg.into(),
            version: "1.0".into(),
            package_type: "deb".into(),
        },
        severity: severity.into(),
        fix: Fix {
            state: if fixed.is_empty() {
                "not-fixed"
            } else {
                "fixed"
            }
            .into(),
            versions: fixed.iter().map(|s| s.to_string()).collect(),
        },
    }
}

#[test]
fn diff_table() {
    let a = entry("A", "openssl", "high", &[]);
    let b = entry("B", "glibc", "low", &[]);
    let b_fixed = entry("B", "glibc", "low", &["2.0"]);
    let b_worse = entry("B", "glibc", "critical", &[]);
    let mut b_alias = b.clone();
    b_alias.aliases = vec!["GHSA-x".into()];
    let a_other_pkg = entry("A", "libssl3", "high", &[]);
    struct Case {
        name: &'static str,
        old: Vec<VulnEntry>,
        new: Vec<VulnEntry>,
        added: Vec<&'static str>,
        removed: Vec<&'static str>,
        updated: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            name: "nothing before, nothing now",
            old: vec![],
            new: vec![],
            added: vec![],
            removed: vec![],
            updated: vec![],
        },
        Case {
            name: "first match adds everything",
            old: vec![],
            new: vec![a.clone(), b.clone()],
            added: vec!["A", "B"],
            removed: vec![],
            updated: vec![],
        },
        Case {
            name: "withdrawn record is removed",
            old: vec![a.clone(), b.clone()],
            new: vec![b.clone()],
            added: vec![],
            removed: vec!["A"],
            updated: vec![],
        },
        Case {
            name: "a fix appearing is an update",
            old: vec![b.clone()],
            new: vec![b_fixed.clone()],
            added: vec![],
            removed: vec![],
            updated: vec!["B"],
        },
        Case {
            name: "a severity change is an update",
            old: vec![b.clone()],
            new: vec![b_worse.clone()],
            added: vec![],
            removed: vec![],
            updated: vec!["B"],
        },
        Case {
            name: "aliases alone are not news",
            old: vec![b.clone()],
            new: vec![b_alias],
            added: vec![],
            removed: vec![],
            updated: vec![],
        },
        Case {
            name: "same id on another package is its own entry",
            old: vec![a.clone()],
            new: vec![a.clone(), a_other_pkg.clone()],
            added: vec!["A"],
            removed: vec![],
            updated: vec![],
        },
        Case {
            name: "twins fold",
            old: vec![a.clone(), a.clone()],
            new: vec![b.clone(), b.clone()],
            added: vec!["B"],
            removed: vec!["A"],
            updated: vec![],
        },
    ];
    for c in cases {
        let d = diff(c.old, c.new);
        let ids = |v: &[VulnEntry]| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&d.added), c.added, "{}: added", c.name);
        assert_eq!(ids(&d.removed), c.removed, "{}: removed", c.name);
        let updated: Vec<String> = d.updated.iter().map(|u| u.entry.id.clone()).collect();
        assert_eq!(updated, c.updated, "{}: updated", c.name);
        assert_eq!(
            d.is_empty(),
            c.added.is_empty() && c.removed.is_empty() && c.updated.is_empty()
        );
    }
}

#[test]
fn update_keeps_what_it_was() {
    let before = entry("B", "glibc", "low", &[]);
    let after = entry("B", "glibc", "high", &["2.0"]);
    let d = diff(vec![before], vec![after.clone()]);
    assert_eq!(d.updated.len(), 1);
    assert_eq!(d.updated[0].entry, after);
    assert_eq!(d.updated[0].previous.severity, "low");
    assert_eq!(d.updated[0].previous.fix.state, "not-fixed");
    let json = serde_json::to_value(&d.updated[0]).unwrap();
    assert_eq!(json["id"], "B");
    assert_eq!(json["package"]["type"], "deb");
    assert_eq!(json["previous"]["severity"], "low");
}

fn carrier(digest: &str, refs: &[&str], workloads: &[&str]) -> Carrier {
    Carrier {
        image: ImageRef {
            digest: digest.into(),
            references: refs.iter().map(|s| s.to_string()).collect(),
        },
        workloads: workloads
            .iter()
            .map(|w| WorkloadRef {
                namespace: "prod".into(),
                kind: "Deployment".into(),
                name: w.to_string(),
                container: "app".into(),
            })
            .collect(),
    }
}

#[test]
fn one_event_per_vulnerability_paged() {
    struct Case {
        images: usize,
        per_event: usize,
        pages: Vec<usize>,
    }
    for c in [
        Case {
            images: 0,
            per_event: 1000,
            pages: vec![],
        },
        Case {
            images: 1,
            per_event: 1000,
            pages: vec![1],
        },
        Case {
            images: 1000,
            per_event: 1000,
            pages: vec![1000],
        },
        Case {
            images: 2500,
            per_event: 1000,
            pages: vec![1000, 1000, 500],
        },
        Case {
            images: 3,
            per_event: 0,
            pages: vec![1, 1, 1],
        },
    ] {
        let carriers = (0..c.images)
            .map(|n| carrier(&format!("sha256:{n:05}"), &["r:1"], &[]))
            .collect();
        let events = vulnerability_new(
            NewVulnerability {
                id: "OSV-1".into(),
                aliases: vec!["CVE-1".into()],
                severities: vec!["low".into()],
                carriers,
            },
            c.per_event,
        );
        let sizes: Vec<usize> = events.iter().map(|e| e.images.len()).collect();
        assert_eq!(sizes, c.pages, "{} images", c.images);
        for (n, e) in events.iter().enumerate() {
            assert_eq!(e.page, n + 1);
            assert_eq!(e.pages, c.pages.len());
            assert_eq!(e.images_total, c.images);
        }
    }
}

#[test]
fn aggregation_folds_twins_and_lists_workloads_of_the_page() {
    let events = vulnerability_new(
        NewVulnerability {
            id: "OSV-2".into(),
            aliases: vec![],
            severities: vec!["low".into(), "critical".into(), "medium".into()],
            carriers: vec![
                carrier("sha256:b", &["app:2"], &["web"]),
                carrier("sha256:a", &["app:1"], &["api"]),
                // The same image through another package: one image, references merged.
                carrier("sha256:a", &["app:latest", "app:1"], &["api", "worker"]),
            ],
        },
        1,
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].severity, "critical");
    assert_eq!(events[0].images[0].digest, "sha256:a");
    assert_eq!(events[0].images[0].references, vec!["app:1", "app:latest"]);
    let names: Vec<&str> = events[0]
        .workloads
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    assert_eq!(names, vec!["api", "worker"]);
    assert_eq!(events[1].images[0].digest, "sha256:b");
    assert_eq!(events[1].workloads.len(), 1);
    assert_eq!(events[0].images_total, 2);
}

#[test]
fn final_action_table() {
    for (previous, now, changed) in [
        (None, "stop", true),
        (Some("stop"), "stop", false),
        (Some("STOP"), "stop", false),
        (Some("warn"), "stop", true),
        (Some("stop"), "go", true),
    ] {
        assert_eq!(
            final_action_changed(previous, now),
            changed,
            "{previous:?} -> {now}"
        );
    }
}

#[test]
fn image_event_cuts_lists_most_severe_first_and_keeps_counts() {
    let image = ImageRef {
        digest: "sha256:i".into(),
        references: vec!["app:1".into()],
    };
    let quiet = image_event(image.clone(), vec![], false, Diff::default(), 10);
    assert!(quiet.is_none(), "an empty diff is no news");
    let first = image_event(image.clone(), vec![], true, Diff::default(), 10).unwrap();
    assert!(first.first_match && first.added.is_empty() && !first.truncated);

    let new = vec![
        entry("L", "a", "low", &[]),
        entry("C", "b", "critical", &[]),
        entry("M", "c", "medium", &[]),
    ];
    let e = image_event(image, vec![], false, diff(vec![], new), 2).unwrap();
    let ids: Vec<&str> = e.added.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids, ["C", "M"]);
    assert_eq!(e.counts.added, 3);
    assert!(e.truncated);
}
