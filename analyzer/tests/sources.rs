//! Image sources end to end: OCI layouts (single and multi-arch), docker archives, and a real
//! `docker-registry` (gzip, zstd, plain and Docker v2 manifests, indexes, insecure gating, basic auth).

mod support;

use fathom_analyzer::analyze::AnalyzerOptions;
use fathom_analyzer::source::auth::Credentials;
use fathom_analyzer::source::registry::RegistryOptions;
use fathom_analyzer::source::Platform;
use fathom_analyzer::{ImageSource, MemoryCache, NoCache};
use fathom_testkit::image::{layer_tar, write_docker_archive, write_oci_layout};
use fathom_testkit::registry::{self, Registry};
use fathom_testkit::samples::SampleEntry;
use fathom_testkit::{BuiltImage, BuiltLayer, Compress, LayoutEntry, Pusher};
use support::*;

fn built(
    name: &str,
    platform: Platform,
    layers: &[Vec<SampleEntry>],
    compress: Compress,
) -> BuiltImage {
    let layers = layers
        .iter()
        .map(|l| BuiltLayer::from_tar(&layer_tar(l).unwrap(), compress).unwrap())
        .collect();
    BuiltImage::from_layers(name, platform, layers)
}

fn base() -> Vec<SampleEntry> {
    vec![
        dir("/etc"),
        file("/etc/base.pkglist", b"base 1\nlibc 2.36\n"),
    ]
}

fn two_layer(name: &str, top: &str, compress: Compress) -> BuiltImage {
    built(
        name,
        Platform::default(),
        &[
            base(),
            vec![file("/app/top.pkglist", format!("{top} 1\n").as_bytes())],
        ],
        compress,
    )
}

fn names(a: &fathom_analyzer::ImageAnalysis) -> Vec<String> {
    let mut n: Vec<String> = a.packages.iter().map(|p| p.package.name.clone()).collect();
    n.sort();
    n
}

fn registry_options(addr: &str) -> AnalyzerOptions {
    AnalyzerOptions {
        registry: RegistryOptions {
            insecure: vec![addr.to_string()],
            ..Default::default()
        },
        ..Default::default()
    }
}

fn shared() -> &'static Registry {
    registry::shared().unwrap_or_else(|e| panic!("local registry: {e}"))
}

#[test]
fn docker_archive_matches_oci_layout() {
    let image = two_layer("archive", "app", Compress::None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.tar");
    write_docker_archive(&path, &image, "example/app:1").unwrap();
    let rt = runtime();
    let source: ImageSource = format!("docker-archive:{}", path.display())
        .parse()
        .unwrap();
    let analysis = rt
        .block_on(list_analyzer(Default::default()).analyze(&source, &NoCache))
        .unwrap();
    assert_eq!(names(&analysis), ["app", "base", "libc"]);
    assert_eq!(analysis.image.reference, "example/app:1");
    assert_eq!(analysis.image.layers[0].digest, image.layers[0].digest());
    assert_eq!(dated(&analysis), dated(&analyze_image(&image).unwrap()));
    // Gzip members inside an archive are detected by their magic bytes.
    let gz = two_layer("archive", "gz", Compress::Gzip);
    write_docker_archive(&path, &gz, "example/gz:1").unwrap();
    let analysis = rt
        .block_on(list_analyzer(Default::default()).analyze(&source, &NoCache))
        .unwrap();
    assert_eq!(names(&analysis), ["base", "gz", "libc"]);
}

fn multi_arch() -> (BuiltImage, BuiltImage) {
    let amd = built(
        "multi",
        Platform::default(),
        &[vec![file("/amd.pkglist", b"amd 1\n")]],
        Compress::Gzip,
    );
    let arm = built(
        "multi",
        "linux/arm64/v8".parse().unwrap(),
        &[vec![file("/arm.pkglist", b"arm 1\n")]],
        Compress::Zstd,
    );
    (amd, arm)
}

#[test]
fn oci_layout_index_resolves_platform() {
    let (amd, arm) = multi_arch();
    let other = two_layer("other", "other", Compress::Gzip);
    let dir = tempfile::tempdir().unwrap();
    write_oci_layout(
        dir.path(),
        &[
            ("multi", LayoutEntry::Index(vec![&amd, &arm])),
            ("other", LayoutEntry::Image(&other)),
        ],
    )
    .unwrap();
    let rt = runtime();
    let scan = |platform: &str, source: &str| {
        let options = AnalyzerOptions {
            platform: platform.parse().unwrap(),
            ..Default::default()
        };
        let source: ImageSource = source.parse().unwrap();
        rt.block_on(list_analyzer(options).analyze(&source, &NoCache))
    };
    let layout = dir.path().display().to_string();
    let a = scan("linux/amd64", &format!("oci-dir:{layout}:multi")).unwrap();
    assert_eq!(names(&a), ["amd"]);
    assert_eq!(a.image.manifest_digest, amd.manifest_digest());
    assert!(a.image.index_digest.is_some());
    let a = scan("linux/arm64", &format!("oci-dir:{layout}:multi")).unwrap();
    assert_eq!(names(&a), ["arm"]);
    assert_eq!(a.image.platform.to_string(), "linux/arm64/v8");
    let err = scan("linux/s390x", &format!("oci-dir:{layout}:multi")).unwrap_err();
    assert_eq!(err.reason(), "invalid_image");
    assert!(err.to_string().contains("linux/arm64/v8"), "{err}");
    let err = scan("linux/amd64", &format!("oci-dir:{layout}")).unwrap_err();
    assert!(
        err.to_string().contains("multi") && err.to_string().contains("other"),
        "{err}"
    );
    let err = scan("linux/amd64", &format!("oci-dir:{layout}:nope")).unwrap_err();
    assert_eq!(err.reason(), "manifest_unknown", "{err}");
}

#[test]
fn registry_gzip_zstd_plain_and_docker_v2() {
    let reg = shared();
    let rt = runtime();
    let pusher = Pusher::new(&reg.addr, None);
    let analyzer = list_analyzer(registry_options(&reg.addr));
    let mut docker = two_layer("sources-docker", "docker", Compress::Gzip);
    docker.as_docker_v2();
    let cases = [
        (
            "sources-gzip",
            two_layer("sources-gzip", "gz", Compress::Gzip),
            "gz",
        ),
        (
            "sources-zstd",
            two_layer("sources-zstd", "zst", Compress::Zstd),
            "zst",
        ),
        (
            "sources-plain",
            two_layer("sources-plain", "plain", Compress::None),
            "plain",
        ),
        ("sources-docker", docker, "docker"),
    ];
    for (repo, image, top) in cases {
        let reference = rt.block_on(pusher.push(repo, "v1", &image)).unwrap();
        let source: ImageSource = format!("registry:{reference}").parse().unwrap();
        let a = rt.block_on(analyzer.analyze(&source, &NoCache)).unwrap();
        let mut want = vec!["base".to_string(), "libc".into(), top.into()];
        want.sort();
        assert_eq!(names(&a), want, "{repo}");
        assert_eq!(a.image.manifest_digest, image.manifest_digest(), "{repo}");
        assert_eq!(a.stats.layers_fetched, 2);
        assert_eq!(
            a.stats.bytes_fetched,
            image
                .layers
                .iter()
                .map(|l| l.blob.len() as u64)
                .sum::<u64>()
        );
    }
}

#[test]
fn registry_index_and_shared_base_layer_cache() {
    let reg = shared();
    let rt = runtime();
    let pusher = Pusher::new(&reg.addr, None);
    let (amd, arm) = multi_arch();
    let reference = rt
        .block_on(pusher.push_index("sources-multi", "latest", &[&amd, &arm]))
        .unwrap();
    let source: ImageSource = reference.parse().unwrap();
    let arm_options = AnalyzerOptions {
        platform: "linux/arm64".parse().unwrap(),
        ..registry_options(&reg.addr)
    };
    let a = rt
        .block_on(list_analyzer(arm_options).analyze(&source, &NoCache))
        .unwrap();
    assert_eq!(names(&a), ["arm"]);
    assert_eq!(a.image.manifest_digest, arm.manifest_digest());
    // Two images sharing the base layer: the second fetches only its own top layer.
    let one = two_layer("sources-one", "one", Compress::Gzip);
    let two = two_layer("sources-two", "two", Compress::Gzip);
    let r1 = rt.block_on(pusher.push("sources-one", "v1", &one)).unwrap();
    let r2 = rt.block_on(pusher.push("sources-two", "v1", &two)).unwrap();
    let analyzer = list_analyzer(registry_options(&reg.addr));
    let cache = MemoryCache::new();
    let first = rt
        .block_on(analyzer.analyze(&r1.parse().unwrap(), &cache))
        .unwrap();
    let second = rt
        .block_on(analyzer.analyze(&r2.parse().unwrap(), &cache))
        .unwrap();
    assert_eq!((first.stats.cache_hits, first.stats.layers_fetched), (0, 2));
    assert_eq!(
        (second.stats.cache_hits, second.stats.layers_fetched),
        (1, 1)
    );
    assert_eq!(second.stats.bytes_fetched, two.layers[1].blob.len() as u64);
    assert_eq!(names(&second), ["base", "libc", "two"]);
}

#[test]
fn registry_errors_are_classified() {
    let reg = shared();
    let rt = runtime();
    let pusher = Pusher::new(&reg.addr, None);
    let image = two_layer("sources-gated", "gated", Compress::Gzip);
    let reference = rt
        .block_on(pusher.push("sources-gated", "v1", &image))
        .unwrap();
    // Plain HTTP only for registries marked insecure.
    let strict = list_analyzer(AnalyzerOptions::default());
    let err = rt
        .block_on(strict.analyze(&reference.parse().unwrap(), &NoCache))
        .unwrap_err();
    assert_eq!(err.reason(), "connect", "{err}");
    assert!(err.to_string().contains("--insecure-registry"), "{err}");
    let analyzer = list_analyzer(registry_options(&reg.addr));
    let missing: ImageSource = format!("{}/sources-gated:nope", reg.addr).parse().unwrap();
    let err = rt
        .block_on(analyzer.analyze(&missing, &NoCache))
        .unwrap_err();
    assert_eq!(err.reason(), "manifest_unknown", "{err}");
    assert!(!err.is_retryable());
    let missing_repo: ImageSource = format!("{}/no-such-repo:v1", reg.addr).parse().unwrap();
    let err = rt
        .block_on(analyzer.analyze(&missing_repo, &NoCache))
        .unwrap_err();
    assert_eq!(err.reason(), "manifest_unknown", "{err}");
    // Nothing listens here: a retryable connect error.
    let closed = format!("127.0.0.1:{}", fathom_testkit::free_port().unwrap());
    let down = list_analyzer(registry_options(&closed));
    let err = rt
        .block_on(down.analyze(&format!("{closed}/x:1").parse().unwrap(), &NoCache))
        .unwrap_err();
    assert_eq!(err.reason(), "connect", "{err}");
    assert!(err.is_retryable());
}

#[test]
fn registry_basic_auth() {
    let out = std::process::Command::new("htpasswd")
        .args(["-Bbn", "fathom", "s3cret"])
        .output()
        .expect("htpasswd (apt-get install apache2-utils; see scripts/deps.d/20-analyzer.sh)");
    assert!(out.status.success());
    let reg = Registry::start_private(Some(&String::from_utf8(out.stdout).unwrap())).unwrap();
    let rt = runtime();
    let image = two_layer("auth", "secret", Compress::Gzip);
    let reference = rt
        .block_on(Pusher::new(&reg.addr, Some(("fathom", "s3cret"))).push("auth", "v1", &image))
        .unwrap();
    let source: ImageSource = reference.parse().unwrap();
    let anonymous = list_analyzer(registry_options(&reg.addr));
    let err = rt
        .block_on(anonymous.analyze(&source, &NoCache))
        .unwrap_err();
    assert_eq!(err.reason(), "unauthorized", "{err}");
    let mut credentials = Credentials::none();
    credentials.insert(&reg.addr, "fathom", "wrong");
    let mut options = registry_options(&reg.addr);
    options.registry.credentials = credentials.clone();
    let err = rt
        .block_on(list_analyzer(options.clone()).analyze(&source, &NoCache))
        .unwrap_err();
    assert_eq!(err.reason(), "unauthorized", "{err}");
    credentials.insert(&reg.addr, "fathom", "s3cret");
    options.registry.credentials = credentials;
    let a = rt
        .block_on(list_analyzer(options).analyze(&source, &NoCache))
        .unwrap();
    assert_eq!(names(&a), ["base", "libc", "secret"]);
}

#[test]
fn the_digest_resolver_answers_the_manifest_an_analysis_is_stored_under() {
    use fathom_analyzer::source::registry::DigestResolver;
    let reg = shared();
    let rt = runtime();
    let pusher = Pusher::new(&reg.addr, None);
    let (amd, arm) = multi_arch();
    let index = rt
        .block_on(pusher.push_index("sources-resolve-multi", "v1", &[&amd, &arm]))
        .unwrap();
    let single = rt
        .block_on(pusher.push("sources-resolve-one", "v1", &amd))
        .unwrap();
    let options = registry_options(&reg.addr).registry;
    let resolve = |platform: &str, reference: &str| {
        let resolver = DigestResolver::new(options.clone(), platform.parse().unwrap());
        rt.block_on(resolver.manifest_digest(reference))
    };
    // An index: the platform's entry (what the analyzer stores), not the index's own digest.
    assert_eq!(
        resolve("linux/arm64", &index).unwrap(),
        arm.manifest_digest()
    );
    assert_eq!(
        resolve("linux/amd64", &index).unwrap(),
        amd.manifest_digest()
    );
    assert_eq!(
        resolve("linux/amd64", &single).unwrap(),
        amd.manifest_digest()
    );
    let missing = format!("{}/sources-resolve-none/app:v1", reg.addr);
    let err = resolve("linux/amd64", &missing).unwrap_err();
    assert!(
        matches!(err, fathom_analyzer::AnalyzeError::ManifestUnknown { .. }),
        "{err:?}"
    );
}
