//! fathom's reference parser against oci-client's and oci-spec's: one table of the four forms, and
//! generated references.

use super::ImageRef;
use oci_spec::distribution::Reference as SpecReference;

const HEX64: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Pieces that are valid, borderline and invalid in each position.
fn domains() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "docker.io/",
        "index.docker.io/",
        "localhost/",
        "localhost:5000/",
        "127.0.0.1:5000/",
        "ghcr.io/",
        "Quay.IO/",
        "my-reg.example.com:443/",
        "a/",
        "foo_bar.com/",
        "-bad.com/",
        "bad-.com/",
        "x..y/",
        "host:/",
        "host:12a/",
        "xn--n3h.com/",
        "UPPER/",
        "sub.dom1.foo/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!("{}.com/", "a".repeat(70)));
    v
}

fn paths() -> Vec<String> {
    let mut v: Vec<String> = [
        "alpine",
        "library/debian",
        "a/b/c/d",
        "foo_bar",
        "foo__bar",
        "foo___bar",
        "foo.bar",
        "foo..bar",
        "foo-bar",
        "foo---bar",
        "foo-.bar",
        "-foo",
        "foo-",
        "_foo",
        "Foo",
        "a",
        "0",
        "a//b",
        "a/",
        "test.com",
        "foo.bar_baz-qux",
        "b.gcr.io",
        "ab/C",
        "é",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("n".repeat(250));
    v.push(format!("{}/x", "n".repeat(255)));
    v
}

fn suffixes() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        ":latest",
        ":12",
        ":Upper_case.1-2",
        ":",
        ":.bad",
        ":-bad",
        ":_ok",
        ":a/b",
        ":5000",
        "@sha256:short",
        "@",
        "@sha256",
        "@md5:0123456789abcdef0123456789abcdef",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(format!(":{}", "t".repeat(128)));
    v.push(format!(":{}", "t".repeat(129)));
    v.push(format!("@sha256:{HEX64}"));
    v.push(format!("@sha256:{}", HEX64.to_uppercase()));
    v.push(format!("@sha256:{HEX64}0"));
    v.push(format!("@sha512:{HEX64}{HEX64}"));
    v.push(format!("@sha384:{HEX64}"));
    v.push(format!(":v1@sha256:{HEX64}"));
    v.push(format!("@sha256+b64:{HEX64}"));
    v.push(format!("@1sha:{HEX64}"));
    v
}

/// A tiny deterministic generator (no dependency, reproducible failures).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

fn agree(text: &str) {
    let ours = ImageRef::parse(text);
    let theirs: Result<oci_client::Reference, _> = text.parse();
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.registry, b.registry(), "registry of {text:?}");
            assert_eq!(a.repository, b.repository(), "repository of {text:?}");
            assert_eq!(a.tag.as_deref(), b.tag(), "tag of {text:?}");
            assert_eq!(a.digest.as_deref(), b.digest(), "digest of {text:?}");
            assert_eq!(a.to_string(), b.whole(), "whole of {text:?}");
        }
        (Err(_), Err(_)) => {}
        _ => panic!("{text:?}: fathom says {ours:?}, oci-client says {theirs:?}"),
    }
}

#[test]
fn agrees_with_oci_client_on_every_combination() {
    let mut checked = 0;
    let mut accepted = 0;
    for d in domains() {
        for p in paths() {
            for s in suffixes() {
                let text = format!("{d}{p}{s}");
                agree(&text);
                accepted += usize::from(ImageRef::parse(&text).is_ok());
                checked += 1;
            }
        }
    }
    // Both outcomes must be well represented, or the comparison proves little.
    assert!(checked > 10_000, "{checked}");
    assert!(
        accepted > 2_000 && checked - accepted > 2_000,
        "{accepted} of {checked}"
    );
}

#[test]
fn agrees_with_oci_client_on_random_strings() {
    let alphabet: Vec<char> = "ab0.-_:/@Ax".chars().collect();
    let mut rng = Lcg(17);
    for _ in 0..20_000 {
        let len = 1 + rng.next(14);
        let text: String = (0..len)
            .map(|_| alphabet[rng.next(alphabet.len())])
            .collect();
        agree(&text);
    }
}

#[test]
fn normalizes_like_docker() {
    let p = |s: &str| ImageRef::parse(s).unwrap().to_string();
    assert_eq!(p("alpine"), "docker.io/library/alpine:latest");
    assert_eq!(p("index.docker.io/x"), "docker.io/library/x:latest");
    assert_eq!(p("localhost/app"), "localhost/app:latest");
    assert_eq!(p("127.0.0.1:5000/a/b:c"), "127.0.0.1:5000/a/b:c");
    let pinned = ImageRef::parse("ghcr.io/o/app:1")
        .unwrap()
        .with_digest("sha256:x");
    assert_eq!(pinned.to_string(), "ghcr.io/o/app@sha256:x");
    assert_eq!(pinned.manifest_key(), "sha256:x");
}

/// (text, registry, repository, tag, digest).
type Form = (
    String,
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<String>,
);

/// The four forms, with what each must come to.
fn forms() -> Vec<Form> {
    let d = format!("sha256:{HEX64}");
    vec![
        (
            "lib/nginx".into(),
            "docker.io",
            "lib/nginx",
            Some("latest"),
            None,
        ),
        (
            "nginx".into(),
            "docker.io",
            "library/nginx",
            Some("latest"),
            None,
        ),
        (
            "lib/nginx:1.25".into(),
            "docker.io",
            "lib/nginx",
            Some("1.25"),
            None,
        ),
        (
            format!("lib/nginx@{d}"),
            "docker.io",
            "lib/nginx",
            None,
            Some(d.clone()),
        ),
        (
            format!("lib/nginx:1.25@{d}"),
            "docker.io",
            "lib/nginx",
            Some("1.25"),
            Some(d.clone()),
        ),
        (
            format!("nginx:1.25@{d}"),
            "docker.io",
            "library/nginx",
            Some("1.25"),
            Some(d.clone()),
        ),
        (
            "127.0.0.1:5000/team/app".into(),
            "127.0.0.1:5000",
            "team/app",
            Some("latest"),
            None,
        ),
        (
            "127.0.0.1:5000/team/app:1".into(),
            "127.0.0.1:5000",
            "team/app",
            Some("1"),
            None,
        ),
        (
            format!("127.0.0.1:5000/team/app@{d}"),
            "127.0.0.1:5000",
            "team/app",
            None,
            Some(d.clone()),
        ),
        (
            format!("127.0.0.1:5000/team/app:1@{d}"),
            "127.0.0.1:5000",
            "team/app",
            Some("1"),
            Some(d.clone()),
        ),
        (
            format!("localhost:5000/app:v2@{d}"),
            "localhost:5000",
            "app",
            Some("v2"),
            Some(d.clone()),
        ),
        (
            format!("docker.io/library/nginx:1.25@{d}"),
            "docker.io",
            "library/nginx",
            Some("1.25"),
            Some(d),
        ),
    ]
}

#[test]
fn the_four_forms_split_alike_in_fathom_oci_client_and_oci_spec() {
    for (text, registry, repository, tag, digest) in forms() {
        let ours = ImageRef::parse(&text).unwrap();
        assert_eq!(ours.registry, registry, "{text}");
        assert_eq!(ours.repository, repository, "{text}");
        assert_eq!(ours.tag.as_deref(), tag, "{text}");
        assert_eq!(ours.digest, digest, "{text}");
        // The canonical form parses back to itself: what is stored is what is evaluated.
        assert_eq!(ImageRef::parse(&ours.to_string()).unwrap(), ours, "{text}");
        let client: oci_client::Reference = text.parse().unwrap();
        let spec: SpecReference = text.parse().unwrap();
        for (name, r) in [("oci-client", &client), ("oci-spec", &spec)] {
            assert_eq!(r.registry(), registry, "{name}: {text}");
            assert_eq!(r.repository(), repository, "{name}: {text}");
            assert_eq!(r.digest(), ours.digest.as_deref(), "{name}: {text}");
            assert_eq!(r.whole(), ours.to_string(), "{name}: {text}");
        }
        // oci-client reports no tag for a bare digest reference and `latest` for a bare name, as we do.
        assert_eq!(client.tag(), ours.tag.as_deref(), "oci-client: {text}");
    }
}
