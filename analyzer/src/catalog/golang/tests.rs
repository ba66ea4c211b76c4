use super::*;
use crate::fixtures::elf::{go_binary, go_modinfo};

fn run(bytes: &[u8]) -> Result<Found, CatalogError> {
    let meta = EntryMeta {
        path: "/usr/local/bin/app",
        mode: 0o755,
        size: bytes.len() as u64,
    };
    GoCataloger.catalog(&FileInput { meta, bytes })
}

fn got(found: &Found) -> Vec<(&str, &str, &str)> {
    found
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.purl.as_str()))
        .collect()
}

#[test]
fn module_mode_binary() {
    let modinfo = go_modinfo(
        "github.com/example/app",
        "v1.4.2",
        &[
            ("github.com/spf13/cobra", "v1.8.0"),
            ("golang.org/x/sys", "v0.18.0"),
        ],
        &[("GOARCH", "amd64"), ("GOOS", "linux")],
    );
    let found = run(&go_binary("go1.22.1", &modinfo, 8192)).unwrap();
    assert_eq!(
        got(&found),
        [
            (
                "github.com/example/app",
                "v1.4.2",
                "pkg:golang/github.com/example/app@v1.4.2"
            ),
            (
                "github.com/spf13/cobra",
                "v1.8.0",
                "pkg:golang/github.com/spf13/cobra@v1.8.0"
            ),
            (
                "golang.org/x/sys",
                "v0.18.0",
                "pkg:golang/golang.org/x/sys@v0.18.0"
            ),
            ("stdlib", "go1.22.1", "pkg:golang/stdlib@1.22.1"),
        ]
    );
    assert_eq!(
        found.packages[0].metadata.get("arch").map(String::as_str),
        Some("amd64")
    );
}

#[test]
fn gopath_build_reports_path_as_devel_with_subpath_purl() {
    // What Debian's skopeo carries: no `mod` line, only `path`.
    let found = run(&go_binary(
        "go1.19.8",
        "path\tgithub.com/containers/skopeo/cmd/skopeo\n",
        8192,
    ))
    .unwrap();
    assert_eq!(
        got(&found),
        [
            (
                "github.com/containers/skopeo/cmd/skopeo",
                "(devel)",
                "pkg:golang/github.com/containers/skopeo@(devel)#cmd/skopeo"
            ),
            ("stdlib", "go1.19.8", "pkg:golang/stdlib@1.19.8"),
        ]
    );
}

#[test]
fn devel_main_version_from_ldflags_then_vcs() {
    let ld = go_modinfo(
        "example.com/tool",
        "(devel)",
        &[],
        &[("-ldflags", "\"-s -w -X main.version=2.3.4\"")],
    );
    let found = run(&go_binary("go1.21.0", &ld, 8192)).unwrap();
    assert_eq!(found.packages[0].version, "v2.3.4");
    let vcs = go_modinfo(
        "example.com/tool",
        "(devel)",
        &[],
        &[
            ("vcs.revision", "0123456789abcdef0123"),
            ("vcs.time", "2024-03-05T10:11:12Z"),
        ],
    );
    let found = run(&go_binary("go1.21.0", &vcs, 8192)).unwrap();
    assert_eq!(
        found.packages[0].version,
        "v0.0.0-20240305101112-0123456789ab"
    );
}

#[test]
fn non_go_inputs_are_empty_and_broken_ones_errors() {
    assert_eq!(run(b"#!/bin/sh\nexec true\n").unwrap(), Found::default());
    assert_eq!(
        run(&crate::fixtures::elf::rust_binary("{}", 8192)).unwrap(),
        Found::default()
    );
    let bin = go_binary("go1.22.1", "path\tx\n", 8192);
    let e = run(&bin[..200]).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("go: /usr/local/bin/app: corrupt ELF"),
        "{e}"
    );
    assert!(run(&go_binary("go1.22.1", "garbage line\n", 8192)).is_err());
}

#[test]
fn wants_executables_only() {
    let meta = |mode| EntryMeta {
        path: "/usr/bin/x",
        mode,
        size: 1 << 20,
    };
    assert_eq!(GoCataloger.wants(&meta(0o644)), Want::No);
    assert_ne!(GoCataloger.wants(&meta(0o755)), Want::No);
    let tiny = EntryMeta {
        path: "/usr/bin/x",
        mode: 0o755,
        size: 100,
    };
    assert_eq!(GoCataloger.wants(&tiny), Want::No);
}
