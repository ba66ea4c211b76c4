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
        copyrights: vec![],
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
