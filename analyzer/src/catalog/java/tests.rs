use super::*;
use crate::fixtures::jar::{build_jar, maven_jar};

fn run(path: &str, bytes: &[u8]) -> Result<Found, CatalogError> {
    crate::catalog::util::run_wanted(&JavaCataloger, path, bytes)
}

fn triples(found: &Found) -> Vec<(String, String, String)> {
    found
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.purl.clone()))
        .collect()
}

#[test]
fn real_debian_jar_named_by_pom_properties() {
    // Debian ships `slf4j-nop.jar` (versionless name); its pom.properties supplies the version.
    let found = run(
        "/usr/share/java/slf4j-nop.jar",
        include_bytes!("../testdata/java/slf4j-nop.jar"),
    )
    .unwrap();
    assert_eq!(
        triples(&found),
        [(
            "slf4j-nop".into(),
            "1.7.32".into(),
            "pkg:maven/org.slf4j/slf4j-nop@1.7.32".into()
        )]
    );
    assert_eq!(
        found.packages[0].locations[0].path,
        "/usr/share/java/slf4j-nop.jar"
    );
}

#[test]
fn shaded_jar_reports_each_pom_and_nested_jars_recursively() {
    let inner_most = maven_jar("org.yaml", "snakeyaml", "2.2", &[]);
    let inner = maven_jar(
        "com.fasterxml.jackson.core",
        "jackson-core",
        "2.17.0",
        &[("META-INF/lib/snakeyaml-2.2.jar", &inner_most)],
    );
    let shaded_pom = b"groupId=com.google.guava\nartifactId=guava\nversion=33.0.0-jre\n";
    let outer = maven_jar(
        "com.example",
        "app",
        "1.4.0",
        &[
            (
                "META-INF/maven/com.google.guava/guava/pom.properties",
                shaded_pom,
            ),
            ("BOOT-INF/lib/jackson-core-2.17.0.jar", &inner),
            ("BOOT-INF/lib/broken.jar", b"PK\x03\x04 not really a zip"),
        ],
    );
    let found = run("/opt/app/app-1.4.0.jar", &outer).unwrap();
    let got: Vec<_> = found
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("app", "1.4.0"),
            ("guava", "33.0.0-jre"),
            ("jackson-core", "2.17.0"),
            ("snakeyaml", "2.2")
        ]
    );
    assert!(found
        .packages
        .iter()
        .all(|p| p.locations[0].path == "/opt/app/app-1.4.0.jar"));
}

#[test]
fn manifest_only_jar_uses_file_name_then_manifest() {
    let jar = build_jar(&[(
        "META-INF/MANIFEST.MF",
        b"Manifest-Version: 1.0\nImplementation-Title: tool\nImplementation-Version: 3.1\n",
    )]);
    let found = run("/opt/lib/tool-kit-2.0.1.jar", &jar).unwrap();
    assert_eq!(triples(&found)[0].0, "tool-kit");
    assert_eq!(triples(&found)[0].1, "2.0.1");
    let found = run("/opt/lib/toolkit.jar", &jar).unwrap();
    assert_eq!(
        (
            found.packages[0].name.as_str(),
            found.packages[0].version.as_str()
        ),
        ("toolkit", "3.1")
    );
}

#[test]
fn jar_without_manifest_has_no_main_package() {
    let jar = build_jar(&[(
        "META-INF/maven/g/a/pom.properties",
        b"groupId=g\nartifactId=a\nversion=1\n",
    )]);
    assert!(run("/x/a-1.jar", &jar).unwrap().packages.is_empty());
}

#[test]
fn corrupt_jar_is_an_error_naming_the_file() {
    let e = run("/opt/app/corrupt.jar", b"PK\x03\x04\x14\x00garbage").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("java: /opt/app/corrupt.jar: not a readable zip archive"),
        "{e}"
    );
    let good = maven_jar("g", "a", "1", &[]);
    assert!(run("/opt/app/truncated.jar", &good[..good.len() / 2]).is_err());
}

#[test]
fn wants_by_extension_only() {
    for (path, want) in [
        ("/a/b.JAR", true),
        ("/a/b.war", true),
        ("/a/b.jar.sha1", false),
        ("/a/jar", false),
    ] {
        let meta = EntryMeta {
            path,
            mode: 0o644,
            size: 10,
        };
        assert_eq!(JavaCataloger.wants(&meta) != Want::No, want, "{path}");
    }
}
