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

/// A Go binary whose main module is `(devel)`, with `settings` recorded and `data` somewhere in it (where
/// the linker would put a `-X` string's bytes).
fn devel_binary(settings: &[(&str, &str)], data: &[u8]) -> Vec<u8> {
    let modinfo = go_modinfo("example.com/tool", "(devel)", &[], settings);
    let mut bin = go_binary("go1.21.0", &modinfo, 8192);
    bin.extend_from_slice(data);
    bin
}

#[test]
fn devel_main_version_from_ldflags_then_contents_then_vcs() {
    let ldflags = ("-ldflags", "\"-s -w -X main.version=2.3.4\"");
    let vcs = [
        ("vcs.revision", "0123456789abcdef0123"),
        ("vcs.time", "2024-03-05T10:11:12Z"),
    ];
    let contents = b"\x00\x00\x009.9.9+ds1\x00\x00";
    let version = |settings: &[(&str, &str)], data: &[u8]| {
        let found = run(&devel_binary(settings, data)).unwrap();
        found.packages[0].version.clone()
    };
    assert_eq!(version(&[ldflags, vcs[0], vcs[1]], contents), "v2.3.4");
    assert_eq!(version(&vcs, contents), "v9.9.9+ds1");
    assert_eq!(version(&vcs, b""), "v0.0.0-20240305101112-0123456789ab");
    assert_eq!(version(&[], b""), "(devel)");
    // A found version is part of the purl too.
    let found = run(&devel_binary(&[], contents)).unwrap();
    assert_eq!(
        found.packages[0].purl,
        "pkg:golang/example.com/tool@v9.9.9%2Bds1"
    );
}

#[test]
fn ldflags_versions_follow_syfts_symbol_patterns() {
    let module = "example.com/tool";
    for (ldflags, want) in [
        ("-s -w -X main.version=2.3.4", Some("v2.3.4")),
        ("-X 'main.Version=v1.0.0'", Some("v1.0.0")),
        (
            "-X main.gitVersion=1.2.3 -X main.commit=abc",
            Some("v1.2.3"),
        ),
        ("-X main.appReleaseBuildVer=4.5.6", Some("v4.5.6")),
        (
            "-X example.com/tool/internal/build.Version=v7.8.9",
            Some("v7.8.9"),
        ),
        // Another module's version is a dependency's, not the binary's.
        ("-X github.com/other/lib.Version=9.9.9", None),
        // `…Version=` wins over `….tag=` wherever each stands.
        ("-X main.tag=1.0.0 -X main.version=2.0.0", Some("v2.0.0")),
        ("-X main.Tag=3.0.0 -X main.commit=abc", Some("v3.0.0")),
        // Syft's pattern stops at the first character outside [-\w]: `-rc.1` keeps `-rc`.
        ("-X main.version=v1.5.0-rc.1", Some("v1.5.0-rc")),
        ("-X main.version=devel -X main.commit=1.2.3", None),
        ("", None),
    ] {
        assert_eq!(
            main_version::from_ldflags(ldflags, module).as_deref(),
            want,
            "{ldflags}"
        );
    }
    // A module path full of regex syntax is matched literally.
    assert_eq!(
        main_version::from_ldflags("-X a+b/(c).V=1.2.3", "a+b/(c)"),
        None,
        "`a+b/(c).V` is not under the module `a+b/(c)`"
    );
    assert_eq!(
        main_version::from_ldflags("-X a+b/(c)/x.Version=1.2.3", "a+b/(c)").as_deref(),
        Some("v1.2.3")
    );
}

#[test]
fn contents_versions_stand_between_nul_or_non_utf8_and_nul() {
    for (data, want) in [
        (&b"junk\x002.8.2+ds1\x00junk"[..], Some("v2.8.2+ds1")),
        (b"\x00v1.2.3-rc1\x00", Some("v1.2.3-rc1")),
        // A byte Go reads as U+FFFD, then one character and `L`.
        (b"\xa0\xa0L1.2.3\x00", Some("v1.2.3")),
        (b"\xef\xbf\xbd1.2.3\x00", Some("v1.2.3")),
        // Inside text (after a letter, or after a valid UTF-8 character): not standing alone.
        (b"a1.2.3\x00", None),
        ("\u{e9}1.2.3\x00".as_bytes(), None),
        (b"\x001.2.3 \x00", None),
        (b"\x001.2\x00", None),
        (b"", None),
    ] {
        assert_eq!(
            main_version::from_contents(data).as_deref(),
            want,
            "{data:?}"
        );
    }
    // The first one that stands alone, past ones that do not.
    assert_eq!(
        main_version::from_contents(b"\xc3\xa91.0.0\x00 \x002.0.0\x00\x003.0.0\x00").as_deref(),
        Some("v2.0.0")
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
