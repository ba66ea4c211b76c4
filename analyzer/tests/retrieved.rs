//! Retrieved files through the real pipeline: captured in the content pass, merged through layers (an
//! upper layer's version or whiteout wins), capped by size, kept per layer (a cached base layer carries
//! its files), and never a file that holds secrets.

mod support;

use fathom_analyzer::content::{ContentOptions, RetrieveOptions};
use fathom_analyzer::source::Platform;
use fathom_analyzer::{AnalyzerOptions, ImageAnalysis, MemoryCache, NoCache};
use fathom_testkit::image::layer_tar;
use fathom_testkit::samples::SampleEntry;
use fathom_testkit::{BuiltImage, BuiltLayer, Compress};
use support::*;

fn image(name: &str, layers: &[Vec<SampleEntry>]) -> BuiltImage {
    let layers = layers
        .iter()
        .map(|l| BuiltLayer::from_tar(&layer_tar(l).unwrap(), Compress::Gzip).unwrap())
        .collect();
    BuiltImage::from_layers(name, Platform::default(), layers)
}

fn options(retrieve: RetrieveOptions) -> AnalyzerOptions {
    AnalyzerOptions {
        content: ContentOptions {
            retrieve,
            entries_in_document: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// (path, layer index, content) of each retrieved file.
fn retrieved(a: &ImageAnalysis) -> Vec<(String, usize, String)> {
    a.retrieved_files
        .as_ref()
        .expect("retrieval ran")
        .files
        .iter()
        .map(|f| {
            let text = String::from_utf8(f.content.clone().expect("content in document")).unwrap();
            (f.path.clone(), f.layer.index, text)
        })
        .collect()
}

const PASSWD_BASE: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n";
const PASSWD_TOP: &[u8] = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/bash\n";

fn layers() -> Vec<Vec<SampleEntry>> {
    vec![
        vec![
            dir("/etc"),
            file("/etc/passwd", PASSWD_BASE),
            file("/etc/services", b"ssh 22/tcp\n"),
            file("/etc/sudoers", b"root ALL=(ALL) ALL\n"),
            file("/etc/shadow", b"root:$6$salt$hash:19000:0:99999:7:::\n"),
            file("/etc/hosts", b"127.0.0.1 localhost\n"),
        ],
        vec![
            // An upper layer's version wins; a whiteout removes.
            file("/etc/passwd", PASSWD_TOP),
            file("/etc/.wh.sudoers", b""),
        ],
    ]
}

#[test]
fn upper_layers_win_whiteouts_remove_and_shadow_is_never_kept() {
    let built = image("retrieve", &layers());
    let a = analyze_image_with(&built, options(RetrieveOptions::default()), &NoCache).unwrap();
    let report = a.retrieved_files.as_ref().unwrap();
    assert_eq!(
        report.paths,
        ["/etc/passwd", "/etc/services", "/etc/sudoers"]
    );
    assert_eq!(
        retrieved(&a),
        [
            (
                "/etc/passwd".to_string(),
                1,
                String::from_utf8(PASSWD_TOP.to_vec()).unwrap()
            ),
            ("/etc/services".to_string(), 0, "ssh 22/tcp\n".to_string()),
        ]
    );
    // /etc/shadow is not a retrieved path (and cannot be made one): its hash is nowhere in the output.
    let json = serde_json::to_string(&a).unwrap();
    assert!(!json.contains("$6$salt$hash"));
    assert!(!json.contains("JDYkc2FsdCRoYXNo"), "base64 of the hash");
}

#[test]
fn the_size_cap_drops_the_file_and_an_upper_oversized_version_hides_the_lower_one() {
    let mut l = layers();
    // The top layer's /etc/services is over the cap: not kept, and the base's version is not visible.
    l[1].push(file("/etc/services", &[b'#'; 200]));
    let built = image("retrieve-cap", &l);
    let capped = RetrieveOptions {
        max_file_bytes: 100,
        ..Default::default()
    };
    let a = analyze_image_with(&built, options(capped), &NoCache).unwrap();
    let paths: Vec<String> = retrieved(&a).into_iter().map(|(p, _, _)| p).collect();
    assert_eq!(paths, ["/etc/passwd"]);
}

#[test]
fn retrieved_files_are_kept_per_layer_and_come_back_from_the_cache() {
    let built = image("retrieve-cache", &layers());
    let cache = MemoryCache::default();
    let first = analyze_image_with(&built, options(RetrieveOptions::default()), &cache).unwrap();
    let again = analyze_image_with(&built, options(RetrieveOptions::default()), &cache).unwrap();
    assert_eq!(again.stats.cache_hits, 2);
    assert_eq!(retrieved(&first), retrieved(&again));
    // The base layer's own result holds its files; the document without the inventory names layers only.
    let worker_like = AnalyzerOptions {
        content: ContentOptions::default(),
        ..Default::default()
    };
    let doc = analyze_image_with(&built, worker_like, &cache).unwrap();
    let files = &doc.retrieved_files.as_ref().unwrap().files;
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f.content.is_none()));
    assert_eq!(files[0].layer.digest, built.layers[1].digest());
}

#[test]
fn a_listed_file_holding_a_secret_is_withheld_and_secret_paths_are_refused() {
    let l = vec![vec![
        dir("/etc"),
        file(
            "/etc/app.conf",
            b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        ),
    ]];
    let built = image("retrieve-secret", &l);
    let listed = RetrieveOptions {
        paths: vec!["/etc/app.conf".into()],
        ..Default::default()
    };
    let a = analyze_image_with(&built, options(listed), &NoCache).unwrap();
    assert!(retrieved(&a).is_empty());
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("/etc/app.conf: not retrieved")),
        "{:?}",
        a.warnings
    );
    let shadow = RetrieveOptions {
        paths: vec!["/etc/shadow".into()],
        ..Default::default()
    };
    let e = analyze_image_with(&built, options(shadow), &NoCache).unwrap_err();
    assert!(e.to_string().contains("/etc/shadow"), "{e}");
}

#[test]
fn no_paths_means_retrieval_did_not_run() {
    let built = image("retrieve-off", &layers());
    let off = RetrieveOptions {
        paths: vec![],
        ..Default::default()
    };
    let a = analyze_image_with(&built, options(off), &NoCache).unwrap();
    assert!(a.retrieved_files.is_none());
}
