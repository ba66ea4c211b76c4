//! The merge through the real pipeline: whiteouts, opaque directories, overwrites, and package dating.

mod support;

use fathom_analyzer::source::Platform;
use fathom_analyzer::{AnalyzerOptions, MemoryCache};
use fathom_testkit::image::layer_tar;
use fathom_testkit::samples::SampleEntry;
use fathom_testkit::{BuiltImage, BuiltLayer, Compress};
use support::*;

fn image(name: &str, layers: &[Vec<SampleEntry>], compress: Compress) -> BuiltImage {
    let layers = layers
        .iter()
        .map(|l| BuiltLayer::from_tar(&layer_tar(l).unwrap(), compress).unwrap())
        .collect();
    BuiltImage::from_layers(name, Platform::default(), layers)
}

fn layered() -> Vec<Vec<SampleEntry>> {
    let mut setuid = file("/usr/bin/su", b"\x7fELF");
    setuid.mode = 0o4755;
    vec![
        vec![
            dir("/etc"),
            file("/a.pkglist", b"p1 1\np2 1\n"),
            dir("/opt/x"),
            file("/opt/x/y.pkglist", b"q 1\n"),
            file("/etc/keep.pkglist", b"k 1\n"),
            file("/gone/sub/z.pkglist", b"z 1\n"),
            file("/x/inner.pkglist", b"i 1\n"),
            setuid,
        ],
        vec![
            // Overwrite: p1 unchanged, p2 upgraded, p3 new.
            file("/a.pkglist", b"p1 1\np2 2\np3 1\n"),
            file("/opt/x/.wh..wh..opq", b""),
            file("/opt/x/new.pkglist", b"n 1\n"),
            file("/.wh.gone", b""),
            // A regular file replaces the directory /x and everything below it.
            file("/x", b"not a dir any more"),
        ],
        vec![
            // p1's record changes (license) without a version change; p2/p3 rewritten identically.
            file("/a.pkglist", b"p1 1 Apache-2.0\np2 2\np3 1\n"),
            file("/etc/.wh.keep.pkglist", b""),
            // Whiteouts hide lower layers only: the same layer may re-create the path.
            file("/.wh.opt", b""),
            file("/opt/again.pkglist", b"o 1\n"),
        ],
    ]
}

#[test]
fn whiteouts_opaque_dirs_and_overwrites_apply_in_order() {
    let analysis = analyze_image(&image("layered", &layered(), Compress::Gzip)).unwrap();
    let got = dated(&analysis);
    let want: Vec<(String, String, usize, usize)> = [
        ("o", "1", 2, 2),
        ("p1", "1", 0, 2),
        ("p2", "2", 1, 1),
        ("p3", "1", 1, 1),
    ]
    .iter()
    .map(|(n, v, i, c)| (n.to_string(), v.to_string(), *i, *c))
    .collect();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want, "{got:?}");
    // Locations name the layer holding the visible record.
    let p1 = analysis
        .packages
        .iter()
        .find(|p| p.package.name == "p1")
        .unwrap();
    assert_eq!(
        p1.package.locations[0].layer_digest,
        analysis.image.layers[2].digest
    );
    assert_eq!(p1.package.licenses, vec!["Apache-2.0".to_string()]);
    assert_eq!(analysis.files.setuid, vec!["/usr/bin/su".to_string()]);
    assert_eq!(analysis.layers[1].opaque_dirs, vec!["/opt/x".to_string()]);
    assert_eq!(analysis.layers[1].whiteouts, vec!["/gone".to_string()]);
    // Visible regular files: /a.pkglist, /usr/bin/su, /x, /opt/again.pkglist.
    assert_eq!(analysis.files.files, 4, "{:?}", analysis.files);
}

#[test]
fn gzip_zstd_and_plain_layers_give_the_same_result() {
    let results: Vec<_> = [Compress::Gzip, Compress::Zstd, Compress::None]
        .into_iter()
        .map(|c| {
            let a = analyze_image(&image("layered", &layered(), c)).unwrap();
            let compressions: Vec<_> = a.layers.iter().map(|l| l.compression).collect();
            (dated(&a), a.files.clone(), compressions)
        })
        .collect();
    assert_eq!(results[0].0, results[1].0);
    assert_eq!(results[0].0, results[2].0);
    assert_eq!(results[0].1, results[2].1);
    use fathom_analyzer::layer::Compression;
    assert!(results[0].2.iter().all(|c| *c == Compression::Gzip));
    assert!(results[1].2.iter().all(|c| *c == Compression::Zstd));
    assert!(results[2].2.iter().all(|c| *c == Compression::None));
}

#[test]
fn cached_layers_are_not_read_at_all() {
    let built = image("cached", &layered(), Compress::Gzip);
    let dir = tempfile::tempdir().unwrap();
    let source = layout(dir.path(), &built);
    let analyzer = list_analyzer(AnalyzerOptions::default());
    let cache = MemoryCache::new();
    let rt = runtime();
    let first = rt.block_on(analyzer.analyze(&source, &cache)).unwrap();
    assert_eq!(first.stats.cache_misses, 3);
    assert_eq!(first.stats.layers_fetched, 3);
    assert!(
        first.stats.bytes_fetched > 0 && first.stats.bytes_inflated > first.stats.bytes_fetched
    );
    assert_eq!(cache.len(), 3);
    // Remove every layer blob: a cached analysis must not need them.
    for layer in &built.layers {
        let hex = &layer.digest()["sha256:".len()..];
        std::fs::remove_file(dir.path().join("blobs/sha256").join(hex)).unwrap();
    }
    let second = rt.block_on(analyzer.analyze(&source, &cache)).unwrap();
    assert_eq!(second.stats.cache_hits, 3);
    assert_eq!(second.stats.layers_fetched, 0);
    assert_eq!(second.stats.bytes_fetched, 0);
    assert_eq!(dated(&first), dated(&second));
    assert!(second.layers.iter().all(|l| l.from_cache));
    // Without the cache the missing blob is a clear, permanent error.
    let err = rt
        .block_on(analyzer.analyze(&source, &fathom_analyzer::NoCache))
        .unwrap_err();
    assert_eq!(err.reason(), "blob_missing", "{err}");
    assert!(!err.is_retryable());
    assert!(
        err.to_string().contains(&built.layers[0].digest()) || err.to_string().contains("sha256:"),
        "{err}"
    );
}

#[test]
fn cache_key_tracks_cataloger_versions() {
    let a = list_analyzer(AnalyzerOptions::default());
    assert!(a.cache_key().contains("pkglist=1"), "{}", a.cache_key());
    assert!(a.cache_key().contains("pipeline="), "{}", a.cache_key());
}

#[test]
fn cataloger_errors_and_panics_become_warnings_naming_layer_and_file() {
    let layers = vec![vec![
        file("/bad/err.pkglist", b"!error\n"),
        file("/bad/boom.pkglist", b"!panic\n"),
        file("/good.pkglist", b"fine 1\n"),
    ]];
    let built = image("warnings", &layers, Compress::Gzip);
    let analysis = analyze_image(&built).unwrap();
    assert_eq!(dated(&analysis), vec![("fine".into(), "1".into(), 0, 0)]);
    let digest = built.layers[0].digest();
    let w = analysis.warnings.join("\n");
    assert!(
        w.contains(&digest) && w.contains("/bad/err.pkglist") && w.contains("asked to fail"),
        "{w}"
    );
    assert!(
        w.contains("/bad/boom.pkglist") && w.contains("panicked"),
        "{w}"
    );
}
