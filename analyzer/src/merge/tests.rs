use super::*;
use crate::layer::{Compression, DistroRecord, FileEntry};
use crate::model::Location;

fn layer(
    digest: &str,
    files: &[&str],
    whiteouts: &[&str],
    packages: &[(&str, &str, &str)],
) -> LayerResult {
    LayerResult {
        digest: digest.into(),
        compression: Compression::Gzip,
        compressed_bytes: 0,
        inflated_bytes: 0,
        entries: files.len() as u64,
        files: files
            .iter()
            .map(|p| FileEntry {
                path: p.to_string(),
                kind: FileKind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 1,
                link: None,
                sha256: None,
            })
            .collect(),
        files_truncated: false,
        whiteouts: whiteouts.iter().map(|s| s.to_string()).collect(),
        opaque_dirs: vec![],
        secrets: vec![],
        content_matches: vec![],
        copyrights: vec![],
        retrieved: vec![],
        malware: None,
        packages: packages
            .iter()
            .map(|(name, version, path)| Package {
                name: name.to_string(),
                version: version.to_string(),
                package_type: PackageType::Npm,
                purl: format!("pkg:npm/{name}@{version}"),
                licenses: vec![],
                locations: vec![Location {
                    path: path.to_string(),
                    layer_digest: digest.into(),
                }],
                found_by: "npm".into(),
                metadata: Default::default(),
            })
            .collect(),
        distros: vec![],
        warnings: vec![],
    }
}

#[test]
fn removed_then_reinstalled_package_is_dated_from_its_reinstall() {
    let p = "/app/node_modules/ms/package.json";
    let l0 = layer("sha256:0", &[p], &[], &[("ms", "2.1.3", p)]);
    let l1 = layer("sha256:1", &[], &["/app/node_modules/ms"], &[]);
    let l2 = layer("sha256:2", &[p], &[], &[("ms", "2.1.3", p)]);
    let merged = merge(&[&l0, &l1]);
    assert!(merged.packages.is_empty());
    let merged = merge(&[&l0, &l1, &l2]);
    assert_eq!(merged.packages.len(), 1);
    assert_eq!(merged.packages[0].introduced_in.index, 2);
    assert_eq!(
        merged.packages[0].package.locations[0].layer_digest,
        "sha256:2"
    );
}

#[test]
fn overwriting_a_database_with_no_packages_removes_them() {
    let db = "/var/lib/dpkg/status";
    let l0 = layer("sha256:0", &[db], &[], &[("a", "1", db), ("b", "1", db)]);
    let l1 = layer("sha256:1", &[db], &[], &[("a", "1", db)]);
    let l2 = layer("sha256:2", &[db], &[], &[]);
    let m = merge(&[&l0, &l1]);
    let names: Vec<_> = m
        .packages
        .iter()
        .map(|p| (p.package.name.as_str(), p.introduced_in.index))
        .collect();
    assert_eq!(names, [("a", 0)]);
    assert!(merge(&[&l0, &l1, &l2]).packages.is_empty());
}

#[test]
fn distro_prefers_etc_os_release_and_follows_whiteouts() {
    let debian = Distro {
        id: "debian".into(),
        version_id: "12".into(),
        ..Default::default()
    };
    let custom = Distro {
        id: "custom".into(),
        ..Default::default()
    };
    let mut l0 = layer(
        "sha256:0",
        &["/usr/lib/os-release", "/etc/os-release"],
        &[],
        &[],
    );
    l0.distros = vec![
        DistroRecord {
            path: "/usr/lib/os-release".into(),
            distro: debian.clone(),
        },
        DistroRecord {
            path: "/etc/os-release".into(),
            distro: custom.clone(),
        },
    ];
    assert_eq!(merge(&[&l0]).distro, Some(custom));
    let l1 = layer("sha256:1", &[], &["/etc/os-release"], &[]);
    assert_eq!(merge(&[&l0, &l1]).distro, Some(debian));
}

#[test]
fn content_matches_follow_whiteouts_overwrites_and_opaque_dirs() {
    use crate::content::ContentMatch;
    let hit = |path: &str, text: Option<&str>| ContentMatch {
        path: path.into(),
        line: 2,
        rule: "PASSWORD".into(),
        text: text.map(String::from),
    };
    let mut base = layer(
        "sha256:a",
        &[
            "/etc/app.conf",
            "/opt/old.conf",
            "/srv/a.conf",
            "/etc/kept.conf",
        ],
        &[],
        &[],
    );
    base.content_matches = vec![
        hit("/etc/app.conf", Some("password=x")),
        hit("/etc/kept.conf", None),
        hit("/opt/old.conf", None),
        hit("/srv/a.conf", None),
    ];
    // The top layer deletes one file, rewrites another without a match, and makes /srv opaque.
    let mut top = layer("sha256:b", &["/etc/app.conf"], &["/opt/old.conf"], &[]);
    top.opaque_dirs = vec!["/srv".into()];
    let refs = [&base, &top];
    let v = content::visible(&refs, false);
    let got = content::content_matches(&refs, &v);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/etc/kept.conf");
    assert_eq!(got[0].layer.digest, "sha256:a");
    // Alone, the base shows every match, stored text included.
    let v = content::visible(&[&base], false);
    let all = content::content_matches(&[&base], &v);
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].text.as_deref(), Some("password=x"));
}

#[test]
fn secrets_and_copyrights_follow_whiteouts_and_overwrites() {
    use crate::content::{CopyrightRecord, SecretFinding};
    let finding = |path: &str| SecretFinding {
        path: path.into(),
        line: 3,
        rule: "AWS_ACCESS_KEY".into(),
    };
    let mut base = layer(
        "sha256:a",
        &["/etc/key", "/app/.env", "/usr/share/doc/tar/copyright"],
        &[],
        &[],
    );
    base.secrets = vec![finding("/etc/key"), finding("/app/.env")];
    base.copyrights = vec![CopyrightRecord {
        path: "/usr/share/doc/tar/copyright".into(),
        package: "tar".into(),
        licenses: vec!["GPL-3.0-or-later".into()],
    }];
    // The second layer deletes one secret file and rewrites the other without a secret.
    let top = layer("sha256:b", &["/app/.env"], &["/etc/key"], &[]);
    let v = content::visible(&[&base, &top], true);
    assert!(content::secrets(&[&base, &top], &v).is_empty());
    assert_eq!(v.copyrights.len(), 1);
    assert_eq!(v.files.len(), 2);
    let v = content::visible(&[&base], false);
    let s = content::secrets(&[&base], &v);
    assert_eq!(s.len(), 2);
    assert_eq!(s[0].layer.digest, "sha256:a");
    assert!(v.files.is_empty());
    let inv = content::inventory(&[&base, &top]);
    assert_eq!(
        inv.iter()
            .find(|f| f.entry.path == "/app/.env")
            .unwrap()
            .layer
            .index,
        1
    );
}

#[test]
fn filtered_inventory_layer_by_layer_matches_the_full_merge() {
    let mut base = layer(
        "sha256:a",
        &["/usr/bin/su", "/usr/bin/passwd", "/opt/x/run", "/etc/motd"],
        &[],
        &[],
    );
    for f in &mut base.files {
        if f.path != "/etc/motd" {
            f.mode = 0o4755;
        }
    }
    base.opaque_dirs = vec![];
    // The top layer drops setuid from passwd (same path, plain mode), deletes /opt/x and adds one.
    let mut top = layer(
        "sha256:b",
        &["/usr/bin/passwd", "/sbin/mount"],
        &["/opt/x"],
        &[],
    );
    top.files[1].mode = 0o4755;
    let layers = [&base, &top];
    let mut all = content::FilteredInventory::new(|_: &FileEntry| true);
    let mut suid = content::FilteredInventory::new(|f: &FileEntry| f.setuid());
    for (i, l) in layers.iter().enumerate() {
        all.apply(i, l);
        suid.apply(i, l);
    }
    assert_eq!(all.finish(), content::inventory(&layers));
    let got: Vec<(String, usize)> = suid
        .finish()
        .into_iter()
        .map(|f| (f.entry.path, f.layer.index))
        .collect();
    assert_eq!(
        got,
        [
            ("/sbin/mount".to_string(), 1),
            ("/usr/bin/su".to_string(), 0)
        ]
    );
}

/// Layers of random entries over a small namespace (so files replace directories that have children,
/// whiteouts and opaque directories hit, and `/a-b` sorts between `/a` and `/a/x`): the merge that skips
/// the range walk for paths with nothing below them must agree with [`content::FilteredInventory`] and
/// with the same rules applied with the walk for every entry.
#[test]
fn skipping_empty_subtrees_changes_nothing() {
    use crate::content::{CopyrightRecord, SecretFinding};
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    const NAMES: [&str; 4] = ["a", "b", "a-b", "a.c"];
    for round in 0..200 {
        let mut layers = Vec::new();
        for l in 0..1 + next(4) {
            let mut layer = layer(&format!("sha256:{round}-{l}"), &[], &[], &[]);
            for _ in 0..next(25) {
                let depth = 1 + next(3);
                let path: String = (0..depth).map(|_| format!("/{}", NAMES[next(4)])).collect();
                match next(10) {
                    0 => layer.whiteouts.push(path),
                    1 => layer.opaque_dirs.push(path),
                    k => {
                        let kind = [FileKind::File, FileKind::Dir, FileKind::Symlink][k % 3];
                        if kind == FileKind::File && next(3) == 0 {
                            layer.secrets.push(SecretFinding {
                                path: path.clone(),
                                line: 1,
                                rule: "R".into(),
                            });
                        }
                        if kind == FileKind::File && next(4) == 0 {
                            layer.copyrights.push(CopyrightRecord {
                                path: path.clone(),
                                package: "p".into(),
                                licenses: vec![],
                            });
                        }
                        layer.files.push(FileEntry {
                            path,
                            kind,
                            mode: 0o644,
                            uid: 0,
                            gid: 0,
                            size: 1,
                            link: None,
                            sha256: None,
                        });
                    }
                }
            }
            layer.secrets.sort();
            layer.secrets.dedup();
            layers.push(layer);
        }
        let refs: Vec<&LayerResult> = layers.iter().collect();
        let mut reference = content::FilteredInventory::new(|_: &FileEntry| true);
        for (i, l) in refs.iter().enumerate() {
            reference.apply(i, l);
        }
        let reference = reference.finish();
        let inventory = content::inventory(&refs);
        assert_eq!(inventory, reference, "round {round}");
        // The same rules with the range walk for every entry.
        let mut secrets: BTreeMap<&str, usize> = BTreeMap::new();
        let mut copyrights: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, l) in refs.iter().enumerate() {
            for dir in &l.opaque_dirs {
                remove_below(&mut secrets, dir);
                remove_below(&mut copyrights, dir);
            }
            for path in &l.whiteouts {
                remove_tree(&mut secrets, path);
                remove_tree(&mut copyrights, path);
            }
            for e in &l.files {
                if e.kind != FileKind::Dir {
                    remove_below(&mut secrets, &e.path);
                    remove_below(&mut copyrights, &e.path);
                }
                secrets.remove(e.path.as_str());
                copyrights.remove(e.path.as_str());
            }
            secrets.extend(l.secrets.iter().map(|s| (s.path.as_str(), i)));
            copyrights.extend(l.copyrights.iter().map(|c| (c.path.as_str(), i)));
        }
        let v = content::visible(&refs, false);
        let got: Vec<(&str, usize)> = v.secrets.iter().map(|(p, (i, _))| (*p, *i)).collect();
        assert_eq!(
            got,
            secrets.into_iter().collect::<Vec<_>>(),
            "round {round}"
        );
        let got: Vec<&str> = v.copyrights.keys().copied().collect();
        assert_eq!(
            got,
            copyrights.into_keys().collect::<Vec<_>>(),
            "round {round}"
        );
        let merged = merge(&refs);
        let count = |k: FileKind| reference.iter().filter(|f| f.entry.kind == k).count() as u64;
        assert_eq!(merged.files.files, count(FileKind::File), "round {round}");
        assert_eq!(
            merged.files.directories,
            count(FileKind::Dir),
            "round {round}"
        );
        assert_eq!(
            merged.files.symlinks,
            count(FileKind::Symlink),
            "round {round}"
        );
    }
}

#[test]
fn retrieved_files_follow_overwrites_whiteouts_and_opaque_dirs() {
    use crate::content::RetrievedFile;
    let kept = |path: &str, text: &str| RetrievedFile {
        path: path.into(),
        content: text.as_bytes().to_vec(),
    };
    let mut base = layer(
        "sha256:a",
        &[
            "/etc/passwd",
            "/etc/services",
            "/etc/sudoers",
            "/srv/app.conf",
        ],
        &[],
        &[],
    );
    base.retrieved = vec![
        kept("/etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        kept("/etc/services", "ssh 22/tcp\n"),
        kept("/etc/sudoers", "root ALL=(ALL) ALL\n"),
        kept("/srv/app.conf", "x=1\n"),
    ];
    // The top layer writes a new /etc/passwd (retrieved), replaces /etc/services with a version that was
    // not retrieved (over the cap), deletes /etc/sudoers and makes /srv opaque.
    let mut top = layer(
        "sha256:b",
        &["/etc/passwd", "/etc/services"],
        &["/etc/sudoers"],
        &[],
    );
    top.opaque_dirs = vec!["/srv".into()];
    top.retrieved = vec![kept("/etc/passwd", "root:x:0:0::/root:/bin/bash\n")];
    let refs = [&base, &top];
    let v = content::visible(&refs, false);
    let got = content::retrieved(&refs, &v, true);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/etc/passwd");
    assert_eq!(got[0].layer.digest, "sha256:b");
    assert_eq!(
        got[0].content.as_deref(),
        Some(&b"root:x:0:0::/root:/bin/bash\n"[..])
    );
    // Without contents (a worker's document): the layer is named, the bytes stay with the layer.
    assert_eq!(content::retrieved(&refs, &v, false)[0].content, None);
    // The base alone shows all four.
    let v = content::visible(&[&base], false);
    assert_eq!(content::retrieved(&[&base], &v, false).len(), 4);
}

#[test]
fn malware_findings_follow_overwrites_and_whiteouts() {
    use crate::content::clamd::{LayerMalwareScan, MalwareFinding};
    let found = |path: &str| MalwareFinding {
        path: path.into(),
        signature: "Test.Sig".into(),
    };
    let mut base = layer(
        "sha256:a",
        &["/bin/evil", "/opt/bad", "/usr/bin/kept"],
        &[],
        &[],
    );
    base.malware = Some(LayerMalwareScan {
        scanner: "clamav".into(),
        findings: vec![
            found("/bin/evil"),
            found("/opt/bad"),
            found("/usr/bin/kept"),
        ],
        scanned: 3,
        skipped_large: 0,
    });
    // The top layer replaces /bin/evil with a clean file and deletes /opt/bad.
    let mut top = layer("sha256:b", &["/bin/evil"], &["/opt/bad"], &[]);
    top.malware = Some(LayerMalwareScan {
        scanner: "clamav".into(),
        scanned: 1,
        ..Default::default()
    });
    let refs = [&base, &top];
    let v = content::visible(&refs, false);
    let got = content::malware(&refs, &v);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/usr/bin/kept");
    assert_eq!(got[0].layer.digest, "sha256:a");
}
