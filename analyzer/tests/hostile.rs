//! Hostile and broken input: each case fails (or is contained) with a clear, classified error naming
//! the layer and the file, and never panics.

mod support;

use fathom_analyzer::layer::Limits;
use fathom_analyzer::source::Platform;
use fathom_analyzer::{AnalyzeError, AnalyzerOptions, NoCache};
use fathom_testkit::image::layer_tar;
use fathom_testkit::samples::SampleEntry;
use fathom_testkit::{BuiltImage, BuiltLayer, Compress};
use support::*;

fn one_layer(entries: &[SampleEntry], compress: Compress) -> BuiltImage {
    let layer = BuiltLayer::from_tar(&layer_tar(entries).unwrap(), compress).unwrap();
    BuiltImage::from_layers("hostile", Platform::default(), vec![layer])
}

fn raw_layer(tar: Vec<u8>) -> BuiltImage {
    let layer = BuiltLayer::from_tar(&tar, Compress::Gzip).unwrap();
    BuiltImage::from_layers("hostile", Platform::default(), vec![layer])
}

/// A tar with one header whose name bytes are written as given (the tar crate refuses `..` and `/`).
fn tar_with_raw_name(name: &[u8], contents: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(contents);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn expect_err(
    result: Result<fathom_analyzer::ImageAnalysis, AnalyzeError>,
    reason: &str,
    needles: &[&str],
) -> AnalyzeError {
    let err = result.expect_err("analysis should fail");
    let text = err.to_string();
    assert_eq!(err.reason(), reason, "{text}");
    assert!(!err.is_retryable(), "{text}");
    for n in needles {
        assert!(text.contains(n), "{text:?} should mention {n:?}");
    }
    err
}

#[test]
fn digest_mismatch_is_detected_while_streaming() {
    let built = one_layer(&[file("/a.pkglist", &vec![b'x'; 100_000])], Compress::Gzip);
    let dir = tempfile::tempdir().unwrap();
    let source = layout(dir.path(), &built);
    let digest = built.layers[0].digest();
    // Swap the blob for another valid layer: decodes fine, hashes wrong.
    let other = one_layer(&[file("/b.pkglist", b"evil 1\n")], Compress::Gzip);
    std::fs::write(
        dir.path().join("blobs/sha256").join(&digest[7..]),
        &other.layers[0].blob,
    )
    .unwrap();
    let result =
        runtime().block_on(list_analyzer(AnalyzerOptions::default()).analyze(&source, &NoCache));
    expect_err(result, "digest_mismatch", &[&digest]);
    // A flipped byte in the middle of the deflate stream: also a digest mismatch, not a decoder complaint.
    let mut blob = built.layers[0].blob.clone();
    let mid = blob.len() / 2;
    blob[mid] ^= 0xff;
    std::fs::write(dir.path().join("blobs/sha256").join(&digest[7..]), &blob).unwrap();
    let result =
        runtime().block_on(list_analyzer(AnalyzerOptions::default()).analyze(&source, &NoCache));
    expect_err(result, "digest_mismatch", &[&digest]);
}

fn truncated(compress: Compress) {
    let big: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let mut built = one_layer(
        &[file("/first.pkglist", b"a 1\n"), file("/big.bin", &big)],
        compress,
    );
    let len = built.layers[0].blob.len();
    built.layers[0].blob.truncate(len / 2);
    built.rebuild();
    let digest = built.layers[0].digest();
    expect_err(
        analyze_image(&built),
        "corrupt_layer",
        &[&digest, "/big.bin"],
    );
}

#[test]
fn truncated_gzip_names_layer_and_file() {
    truncated(Compress::Gzip);
}

#[test]
fn truncated_zstd_names_layer_and_file() {
    truncated(Compress::Zstd);
}

#[test]
fn decompression_bomb_trips_the_ratio_cap() {
    let zeros = vec![0u8; 16 << 20];
    let built = one_layer(&[file("/bomb", &zeros)], Compress::Gzip);
    let options = AnalyzerOptions {
        limits: Limits {
            ratio_grace_bytes: 1 << 20,
            max_ratio: 100,
            ..Limits::default()
        },
        ..Default::default()
    };
    let result = analyze_image_with(&built, options, &NoCache);
    expect_err(
        result,
        "hostile_input",
        &[&built.layers[0].digest(), "ratio", "/bomb"],
    );
}

#[test]
fn inflation_caps_per_layer_and_per_image() {
    let chunk: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let entries: Vec<SampleEntry> = (0..16)
        .map(|i| file(&format!("/data/{i}"), &chunk))
        .collect();
    let built = one_layer(&entries, Compress::Gzip);
    let per_layer = AnalyzerOptions {
        limits: Limits {
            max_layer_inflated: 1 << 20,
            ..Limits::default()
        },
        ..Default::default()
    };
    expect_err(
        analyze_image_with(&built, per_layer, &NoCache),
        "hostile_input",
        &["per-layer cap", "/data/"],
    );
    let per_image = AnalyzerOptions {
        max_image_inflated: 2 << 20,
        ..Default::default()
    };
    expect_err(
        analyze_image_with(&built, per_image, &NoCache),
        "hostile_input",
        &["per-image cap"],
    );
}

#[test]
fn absurd_tar_header_size_is_refused_before_reading() {
    let mut header = tar::Header::new_gnu();
    header.set_path("huge.pkglist").unwrap();
    header.set_size(1 << 50);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.extend_from_slice(&[0u8; 1024]);
    let built = raw_layer(tar);
    expect_err(
        analyze_image(&built),
        "hostile_input",
        &["/huge.pkglist", "declares"],
    );
}

#[test]
fn dot_dot_breakout_is_refused_and_absolute_paths_are_rooted() {
    let built = raw_layer(tar_with_raw_name(b"../../etc/evil.pkglist", b"evil 1\n"));
    expect_err(
        analyze_image(&built),
        "hostile_input",
        &["../../etc/evil.pkglist", "escapes"],
    );
    let built = raw_layer(tar_with_raw_name(b"/etc/abs.pkglist", b"abs 1\n"));
    let analysis = analyze_image(&built).unwrap();
    assert_eq!(
        analysis.packages[0].package.locations[0].path,
        "/etc/abs.pkglist"
    );
    let built = raw_layer(tar_with_raw_name(
        b"./usr/../etc/inner.pkglist",
        b"inner 1\n",
    ));
    let analysis = analyze_image(&built).unwrap();
    assert_eq!(
        analysis.packages[0].package.locations[0].path,
        "/etc/inner.pkglist"
    );
}

#[test]
fn link_loops_are_recorded_not_followed() {
    let built = one_layer(
        &[
            symlink("/loop/a", "b"),
            symlink("/loop/b", "a"),
            symlink("/loop/self", "self"),
            symlink("/loop/up", "../../../../.."),
            file("/real.pkglist", b"real 1\n"),
            hardlink("/h1.pkglist", "/real.pkglist"),
            hardlink("/h2", "/h3"),
            hardlink("/h3", "/h2"),
        ],
        Compress::Gzip,
    );
    let analysis = analyze_image(&built).unwrap();
    assert_eq!(dated(&analysis), vec![("real".into(), "1".into(), 0, 0)]);
    assert_eq!(analysis.files.symlinks, 4);
    assert_eq!(analysis.files.hard_links, 3);
}

#[test]
fn unsupported_layer_media_type_fails_before_download() {
    let mut built = one_layer(&[file("/a.pkglist", b"a 1\n")], Compress::Gzip);
    built.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar+bzip2".into();
    built.rebuild();
    expect_err(
        analyze_image(&built),
        "unsupported_media_type",
        &["tar+bzip2", &built.layers[0].digest()],
    );
    let mut built = one_layer(&[file("/a.pkglist", b"a 1\n")], Compress::Gzip);
    built
        .set_manifest(|m| m["mediaType"] = serde_json::json!("application/vnd.example.weird+json"));
    expect_err(
        analyze_image(&built),
        "unsupported_media_type",
        &["application/vnd.example.weird+json"],
    );
}

#[test]
fn media_type_that_lies_about_compression_is_corrupt() {
    let mut built = one_layer(&[file("/a.pkglist", b"a 1\n")], Compress::None);
    built.layers[0].media_type = Compress::Gzip.media_type().into();
    built.rebuild();
    expect_err(analyze_image(&built), "corrupt_layer", &["magic"]);
}

#[test]
fn manifest_pointing_to_a_missing_blob() {
    let mut built = one_layer(&[file("/a.pkglist", b"a 1\n")], Compress::Gzip);
    let missing = format!("sha256:{}", "ab".repeat(32));
    let m = missing.clone();
    built.set_manifest(move |manifest| {
        manifest["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": Compress::Gzip.media_type(), "digest": m, "size": 10
            }));
    });
    expect_err(analyze_image(&built), "blob_missing", &[&missing]);
}

#[test]
fn wanted_file_over_the_cap_is_a_warning() {
    let mut big = b"big 1\n".to_vec();
    big.resize((1 << 20) + 10, b'#');
    let built = one_layer(
        &[file("/huge.pkglist", &big), file("/ok.pkglist", b"ok 1\n")],
        Compress::Gzip,
    );
    let analysis = analyze_image(&built).unwrap();
    assert_eq!(dated(&analysis), vec![("ok".into(), "1".into(), 0, 0)]);
    assert!(
        analysis
            .warnings
            .iter()
            .any(|w| w.contains("/huge.pkglist") && w.contains("cap")),
        "{:?}",
        analysis.warnings
    );
}

#[test]
fn malformed_index_and_config_are_invalid_image() {
    let mut built = one_layer(&[file("/a.pkglist", b"a 1\n")], Compress::Gzip);
    built.config = b"{not json".to_vec();
    built.set_manifest(|_| {});
    expect_err(analyze_image(&built), "invalid_image", &["config"]);
}
