//! Java archives built in memory with the zip crate: manifests, pom.properties, class-file stand-ins and
//! nested jars, so tests and samples carry no binary blobs.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// Builds a jar from `(name, contents)` entries, deflated, with fixed timestamps (reproducible bytes).
/// Nested jars are stored uncompressed, as the Spring Boot and war plugins do.
pub fn build_jar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        let method = if name.ends_with(".jar") {
            CompressionMethod::Stored
        } else {
            CompressionMethod::Deflated
        };
        let opts = SimpleFileOptions::default()
            .compression_method(method)
            .last_modified_time(DateTime::DEFAULT);
        // Writing to a Vec cannot fail; a failure here would be a bug in this builder, not bad input.
        if zip.start_file(*name, opts).is_ok() {
            let _ = zip.write_all(bytes);
        }
    }
    zip.finish().map(Cursor::into_inner).unwrap_or_default()
}

/// A typical Maven-built library jar: manifest, pom.properties, and a few class-file stand-ins.
pub fn maven_jar(group: &str, artifact: &str, version: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let manifest = format!(
        "Manifest-Version: 1.0\r\nCreated-By: Apache Maven 3.9.6\r\nBuild-Jdk-Spec: 17\r\n\
         Implementation-Title: {artifact}\r\nImplementation-Version: {version}\r\n\
         Automatic-Module-Name: {group}.{m}\r\n\r\n",
        m = artifact.replace('-', ".")
    );
    let props = format!("#Created by Apache Maven 3.9.6\ngroupId={group}\nartifactId={artifact}\nversion={version}\n");
    let pom_path = format!("META-INF/maven/{group}/{artifact}/pom.properties");
    let class_path = format!(
        "{}/{}.class",
        group.replace('.', "/"),
        artifact.replace('-', "_")
    );
    let class = class_file_stub(artifact);
    let mut entries: Vec<(&str, &[u8])> = vec![
        ("META-INF/MANIFEST.MF", manifest.as_bytes()),
        (pom_path.as_str(), props.as_bytes()),
        (class_path.as_str(), &class),
    ];
    entries.extend_from_slice(extra);
    build_jar(&entries)
}

/// Bytes that start like a class file (magic, version 61) followed by a constant-pool-ish body.
fn class_file_stub(seed: &str) -> Vec<u8> {
    let mut v = vec![0xCA, 0xFE, 0xBA, 0xBE, 0, 0, 0, 61];
    for i in 0..64u32 {
        v.extend_from_slice(format!("{seed}$Inner{i}()V;Ljava/lang/Object;").as_bytes());
    }
    v
}
