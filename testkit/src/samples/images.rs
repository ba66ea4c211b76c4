//! The two Debian-based sample images: `debian-python-npm` and `debian-java-go` (sharing the base layer).

use super::debian::{bookworm_minbase, debian_base_layer, dpkg_status, REMOVED_LATER};
use super::elf::{go_binary, go_modinfo, rust_binary};
use super::jar::maven_jar;
use super::large::code_like_bytes;
use super::{dir, exec, file, opaque, symlink, whiteout, SampleEntry, SampleImage};
use fathom_analyzer::model::PackageType;

const SITE: &str = "/usr/local/lib/python3.11/site-packages";

/// An installed Python distribution: name, version, dist-info directory stem, import package, license,
/// summary.
struct Py(
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const PYTHON: &[Py] = &[
    Py(
        "numpy",
        "2.1.3",
        "numpy-2.1.3",
        "numpy",
        "BSD-3-Clause",
        "Fundamental package for array computing in Python",
    ),
    Py(
        "click",
        "8.1.7",
        "click-8.1.7",
        "click",
        "BSD-3-Clause",
        "Composable command line interface toolkit",
    ),
    Py(
        "packaging",
        "24.2",
        "packaging-24.2",
        "packaging",
        "Apache-2.0 OR BSD-2-Clause",
        "Core utilities for Python packages",
    ),
    Py(
        "rich",
        "13.9.4",
        "rich-13.9.4",
        "rich",
        "MIT",
        "Render rich text, tables, progress bars, syntax highlighting",
    ),
    Py(
        "markdown-it-py",
        "3.0.0",
        "markdown_it_py-3.0.0",
        "markdown_it",
        "MIT",
        "Python port of markdown-it",
    ),
    Py(
        "mdurl",
        "0.1.2",
        "mdurl-0.1.2",
        "mdurl",
        "MIT",
        "Markdown URL utilities",
    ),
    Py(
        "Pygments",
        "2.18.0",
        "pygments-2.18.0",
        "pygments",
        "BSD-2-Clause",
        "Pygments is a syntax highlighting package",
    ),
];

/// npm packages under `/app/node_modules` (path below it, name, version, license).
const NPM: &[(&str, &str, &str, &str)] = &[
    ("axios", "axios", "1.7.7", "MIT"),
    ("chalk", "chalk", "4.1.2", "MIT"),
    ("ms", "ms", "2.1.3", "MIT"),
    ("follow-redirects", "follow-redirects", "1.15.9", "MIT"),
    ("form-data", "form-data", "4.0.1", "MIT"),
    ("proxy-from-env", "proxy-from-env", "1.1.0", "MIT"),
    ("asynckit", "asynckit", "0.4.0", "MIT"),
    ("combined-stream", "combined-stream", "1.0.8", "MIT"),
    ("delayed-stream", "delayed-stream", "1.0.0", "MIT"),
    ("mime-types", "mime-types", "2.1.35", "MIT"),
    ("mime-db", "mime-db", "1.52.0", "MIT"),
    ("ansi-styles", "ansi-styles", "4.3.0", "MIT"),
    ("supports-color", "supports-color", "7.2.0", "MIT"),
    ("has-flag", "has-flag", "4.0.0", "MIT"),
    ("color-convert", "color-convert", "2.0.1", "MIT"),
    ("color-name", "color-name", "1.1.4", "MIT"),
    ("@types/node", "@types/node", "20.11.5", "MIT"),
    // A second copy at another version, nested as npm does on conflicts.
    (
        "chalk/node_modules/ansi-styles",
        "ansi-styles",
        "4.2.1",
        "MIT",
    ),
];

fn python_dist(p: &Py) -> Vec<SampleEntry> {
    let Py(name, version, stem, module, license, summary) = *p;
    let di = format!("{SITE}/{stem}.dist-info");
    let metadata = format!(
        "Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n\
         Home-page: https://pypi.org/project/{name}/\nAuthor-email: {name} developers <dev@{module}.example.org>\n\
         License: {license}\nClassifier: Development Status :: 5 - Production/Stable\n\
         Classifier: Intended Audience :: Developers\nClassifier: Programming Language :: Python :: 3\n\
         Requires-Python: >=3.8\nDescription-Content-Type: text/markdown\nLicense-File: LICENSE\n\n\
         # {name}\n\n{summary}.\n\nInstall with `pip install {name}`.\n"
    );
    let mut e = vec![dir(&di), dir(&format!("{SITE}/{module}"))];
    let mut record = String::new();
    for i in 0..12 {
        let path = format!("{module}/mod{i}.py");
        let src = format!("\"\"\"{name} module {i}.\"\"\"\n\ndef f{i}(x):\n    return x * {i}\n")
            .repeat(8 + i);
        record.push_str(&format!(
            "{path},sha256={:016x},{}\n",
            src.len() * 7919,
            src.len()
        ));
        e.push(file(&format!("{SITE}/{path}"), src.as_bytes()));
    }
    if name == "numpy" {
        // numpy ships compiled extensions: big, binary, not executable.
        e.push(file(
            &format!("{SITE}/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so"),
            &code_like_bytes(900_000, 11),
        ));
    }
    record.push_str(&format!(
        "{stem}.dist-info/METADATA,sha256=0,{}\n{stem}.dist-info/RECORD,,\n",
        metadata.len()
    ));
    e.push(file(&format!("{di}/METADATA"), metadata.as_bytes()));
    e.push(file(&format!("{di}/RECORD"), record.as_bytes()));
    e.push(file(&format!("{di}/WHEEL"), b"Wheel-Version: 1.0\nGenerator: bdist_wheel (0.42.0)\nRoot-Is-Purelib: true\nTag: py3-none-any\n"));
    e.push(file(&format!("{di}/INSTALLER"), b"pip\n"));
    e
}

fn npm_layer() -> Vec<SampleEntry> {
    let app = r#"{
  "name": "app",
  "version": "1.0.0",
  "description": "",
  "main": "index.js",
  "scripts": { "test": "echo \"Error: no test specified\" && exit 1" },
  "keywords": [],
  "author": "",
  "license": "ISC",
  "dependencies": { "axios": "^1.7.7", "chalk": "^4.1.2", "ms": "^2.1.3" }
}
"#;
    let mut e = vec![
        dir("/app"),
        dir("/app/node_modules"),
        file("/app/package.json", app.as_bytes()),
    ];
    e.push(file("/app/index.js", b"const axios = require('axios');\nconst chalk = require('chalk');\nconsole.log(chalk.green('ok'));\n"));
    for (sub, name, version, license) in NPM {
        let d = format!("/app/node_modules/{sub}");
        e.push(dir(&d));
        let pj = format!(
            "{{\n  \"name\": \"{name}\",\n  \"version\": \"{version}\",\n  \"description\": \"{name} for node\",\n  \
             \"main\": \"index.js\",\n  \"license\": \"{license}\",\n  \"repository\": {{ \"type\": \"git\", \
             \"url\": \"git+https://github.com/example/{name}.git\" }},\n  \"engines\": {{ \"node\": \">=8\" }}\n}}\n"
        );
        e.push(file(&format!("{d}/package.json"), pj.as_bytes()));
        let js = format!(
            "'use strict';\nmodule.exports = function {}() {{ return '{version}'; }};\n",
            name.replace(['-', '@', '/'], "_")
        );
        e.push(file(&format!("{d}/index.js"), js.repeat(20).as_bytes()));
        e.push(file(
            &format!("{d}/LICENSE"),
            format!("{license} License\n\nCopyright (c) {name} authors\n").as_bytes(),
        ));
    }
    // Folder manifests inside packages mark module type only; they are not packages.
    e.push(dir("/app/node_modules/follow-redirects/esm"));
    e.push(file(
        "/app/node_modules/follow-redirects/esm/package.json",
        b"{\n  \"type\": \"module\"\n}\n",
    ));
    e.push(file(
        "/app/node_modules/.package-lock.json",
        b"{\n  \"name\": \"app\",\n  \"lockfileVersion\": 3\n}\n",
    ));
    e
}

/// Debian base + Python wheels + an npm app + a layer that deletes a wheel, an npm package, the man pages
/// (opaque dir) and two dpkg packages (rewritten status plus whiteouts of their files).
pub(super) fn debian_python_npm() -> SampleImage {
    let mut py = vec![dir("/usr/local/lib/python3.11"), dir(SITE)];
    for p in PYTHON {
        py.extend(python_dist(p));
    }
    let base = bookworm_minbase();
    let kept: Vec<_> = base
        .iter()
        .filter(|d| !REMOVED_LATER.contains(&d.name))
        .collect();
    let mut deletions = vec![
        whiteout(&format!("{SITE}/rich-13.9.4.dist-info")),
        whiteout(&format!("{SITE}/rich")),
        whiteout("/app/node_modules/ms"),
        whiteout("/app/old.env"),
        opaque("/usr/share/man"),
        file("/var/lib/dpkg/status", &dpkg_status(&kept)),
    ];
    for name in REMOVED_LATER {
        deletions.push(whiteout(&format!("/usr/share/doc/{name}")));
        deletions.push(whiteout(&format!("/var/lib/dpkg/info/{name}.list")));
    }
    let mut npm = npm_layer();
    npm.extend(super::planted::planted_files());
    SampleImage {
        name: "debian-python-npm".into(),
        layers: vec![debian_base_layer(), py, npm, deletions],
    }
}

const GO_DEPS: &[(&str, &str)] = &[
    ("github.com/spf13/cobra", "v1.8.0"),
    ("github.com/spf13/pflag", "v1.0.5"),
    ("golang.org/x/sys", "v0.18.0"),
    ("gopkg.in/yaml.v3", "v3.0.1"),
];

const RUST_CRATES: &[(&str, &str)] = &[
    ("ripgrep", "14.1.0"),
    ("grep", "0.3.1"),
    ("regex", "1.10.3"),
    ("regex-automata", "0.4.5"),
    ("memchr", "2.7.1"),
    ("aho-corasick", "1.1.2"),
    ("log", "0.4.20"),
];

/// Jars (a Debian-style versionless jar, a Spring-Boot-style app with nested jars and a shaded pom), a
/// gemspec, a Go binary with build info and a Rust binary with cargo-auditable data.
fn java_go_layer() -> Vec<SampleEntry> {
    let snakeyaml = maven_jar("org.yaml", "snakeyaml", "2.2", &[]);
    let jackson = maven_jar(
        "com.fasterxml.jackson.core",
        "jackson-core",
        "2.17.0",
        &[("META-INF/lib/snakeyaml-2.2.jar", &snakeyaml)],
    );
    let guava = maven_jar("com.google.guava", "guava", "33.0.0-jre", &[]);
    let shaded = b"#Created by Apache Maven 3.9.6\ngroupId=org.apache.commons\nartifactId=commons-lang3\nversion=3.14.0\n";
    let app = maven_jar(
        "com.example",
        "app",
        "1.4.0",
        &[
            (
                "META-INF/maven/org.apache.commons/commons-lang3/pom.properties",
                shaded,
            ),
            ("BOOT-INF/lib/jackson-core-2.17.0.jar", &jackson),
            ("BOOT-INF/lib/guava-33.0.0-jre.jar", &guava),
        ],
    );
    let modinfo = go_modinfo(
        "github.com/example/app",
        "v1.4.2",
        GO_DEPS,
        &[
            ("-buildmode", "exe"),
            ("CGO_ENABLED", "0"),
            ("GOARCH", "amd64"),
            ("GOOS", "linux"),
        ],
    );
    let crates: Vec<String> = RUST_CRATES
        .iter()
        .enumerate()
        .map(|(i, (n, v))| {
            let src = if i == 0 { "local" } else { "crates.io" };
            format!(
                "{{\"name\":\"{n}\",\"version\":\"{v}\",\"source\":\"{src}\"{}}}",
                if i == 0 { ",\"root\":true" } else { "" }
            )
        })
        .collect();
    let dep_json = format!("{{\"packages\":[{}]}}", crates.join(","));
    vec![
        dir("/usr/share/java"),
        file(
            "/usr/share/java/commons-text.jar",
            &maven_jar("org.apache.commons", "commons-text", "1.10.0", &[]),
        ),
        symlink(
            "/usr/share/java/commons-text-1.10.0.jar",
            "commons-text.jar",
        ),
        file(
            "/usr/share/java/slf4j-api.jar",
            &maven_jar("org.slf4j", "slf4j-api", "1.7.32", &[]),
        ),
        symlink("/usr/share/java/slf4j-api-1.7.32.jar", "slf4j-api.jar"),
        dir("/opt/app"),
        file("/opt/app/app-1.4.0.jar", &app),
        dir("/usr/share/rubygems-integration/all/specifications"),
        file(
            "/usr/share/rubygems-integration/all/specifications/rake-13.0.6.gemspec",
            include_bytes!("../../../analyzer/src/catalog/testdata/gem/rake-13.0.6.gemspec"),
        ),
        dir("/usr/local/bin"),
        exec(
            "/usr/local/bin/app",
            &go_binary("go1.22.1", &modinfo, 2 * 1024 * 1024),
        ),
        exec("/usr/local/bin/rg", &rust_binary(&dep_json, 1536 * 1024)),
    ]
}

/// Debian base (the same layer as `debian-python-npm`) + Java, Ruby, Go and Rust content.
pub(super) fn debian_java_go() -> SampleImage {
    SampleImage {
        name: "debian-java-go".into(),
        layers: vec![debian_base_layer(), java_go_layer()],
    }
}

type Triple = (PackageType, String, String);

fn t(ty: PackageType, name: &str, version: &str) -> Triple {
    (ty, name.to_owned(), version.to_owned())
}

fn debs(skip: &[&str]) -> Vec<Triple> {
    bookworm_minbase()
        .iter()
        .filter(|d| !skip.contains(&d.name))
        .map(|d| t(PackageType::Deb, d.name, d.version))
        .collect()
}

pub(super) fn expected_python_npm() -> Vec<Triple> {
    let mut v = debs(REMOVED_LATER);
    for (name, version) in [
        ("numpy", "2.1.3"),
        ("click", "8.1.7"),
        ("packaging", "24.2"),
        ("markdown-it-py", "3.0.0"),
        ("mdurl", "0.1.2"),
        ("pygments", "2.18.0"),
    ] {
        v.push(t(PackageType::Python, name, version));
    }
    v.push(t(PackageType::Npm, "app", "1.0.0"));
    for (sub, name, version, _) in NPM.iter().filter(|n| n.0 != "ms") {
        debug_assert!(!sub.is_empty());
        v.push(t(PackageType::Npm, name, version));
    }
    v
}

pub(super) fn expected_java_go() -> Vec<Triple> {
    let mut v = debs(&[]);
    for (name, version) in [
        ("commons-text", "1.10.0"),
        ("slf4j-api", "1.7.32"),
        ("app", "1.4.0"),
        ("commons-lang3", "3.14.0"),
        ("jackson-core", "2.17.0"),
        ("snakeyaml", "2.2"),
        ("guava", "33.0.0-jre"),
    ] {
        v.push(t(PackageType::JavaArchive, name, version));
    }
    v.push(t(PackageType::Gem, "rake", "13.0.6"));
    v.push(t(PackageType::GoModule, "github.com/example/app", "v1.4.2"));
    v.push(t(PackageType::GoModule, "stdlib", "go1.22.1"));
    v.extend(
        GO_DEPS
            .iter()
            .map(|(p, ver)| t(PackageType::GoModule, p, ver)),
    );
    v.extend(
        RUST_CRATES
            .iter()
            .map(|(n, ver)| t(PackageType::RustCrate, n, ver)),
    );
    v
}
