//! Differential tests: every comparator against its ecosystem's reference implementation on thousands of
//! generated version pairs plus hand-picked edge cases. References come from scripts/deps.d/70-vulns.sh.

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use fathom_vulns::core::version::{dpkg, maven, pep440, rpm, semver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PAIRS: usize = 3000;

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn chunk(rng: &mut StdRng, alphabet: &[u8], max: usize) -> String {
    let n = rng.random_range(1..=max);
    (0..n)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// Runs `program args` with `input` on stdin, returning stdout lines; panics naming the install script.
fn reference(program: &str, args: &[&str], env: &[(&str, &str)], input: &str) -> Vec<String> {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e} (run scripts/deps.d/70-vulns.sh)"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "{program} failed (run scripts/deps.d/70-vulns.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn sign(n: &str) -> Ordering {
    match n.trim() {
        "-1" => Ordering::Less,
        "0" => Ordering::Equal,
        "1" => Ordering::Greater,
        other => panic!("reference printed {other:?}"),
    }
}

/// Asserts all pairs agree, reporting the first few disagreements.
fn check(
    name: &str,
    pairs: &[(String, String)],
    ours: &[Option<Ordering>],
    theirs: &[Option<Ordering>],
) {
    assert_eq!(ours.len(), theirs.len(), "{name}: answer count");
    let bad: Vec<String> = pairs
        .iter()
        .zip(ours.iter().zip(theirs))
        .filter(|(_, (o, t))| o != t)
        .map(|((a, b), (o, t))| format!("{a:?} vs {b:?}: ours {o:?}, reference {t:?}"))
        .collect();
    assert!(
        bad.is_empty(),
        "{name}: {} of {} pairs differ:\n{}",
        bad.len(),
        pairs.len(),
        bad[..bad.len().min(15)].join("\n")
    );
}

#[test]
fn dpkg_matches_dpkg_compare_versions() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut pairs: Vec<(String, String)> = [
        ("1.0~rc1", "1.0"),
        ("1:1.0", "2.0"),
        ("1.0-1", "1.0"),
        ("1.0.", "1.0+"),
        ("2.38.1-5+deb12u3", "2.38.1-5+deb12u2"),
        ("1.01", "1.1"),
        ("1.0~~", "1.0~"),
        ("1.0a", "1.0+"),
        ("0:1.0", "1.0"),
        ("1.0-0", "1.0"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let gen = |rng: &mut StdRng| {
        let mut v = String::new();
        if rng.random_bool(0.2) {
            v.push_str(&format!("{}:", rng.random_range(0..3)));
        }
        v.push_str(&rng.random_range(0..12).to_string());
        for _ in 0..rng.random_range(0..4) {
            v.push_str(&chunk(rng, b"0123456789.+~ab", 3));
        }
        if rng.random_bool(0.7) {
            v.push('-');
            v.push_str(&chunk(rng, b"0123456789.+~bdu", 5));
        }
        v
    };
    while pairs.len() < PAIRS {
        let a = gen(&mut rng);
        let b = if rng.random_bool(0.3) {
            a.clone() + pick(&mut rng, &["", "~", "+b1", ".0", "a", "0"])
        } else {
            gen(&mut rng)
        };
        pairs.push((a, b));
    }
    let ours: Vec<_> = pairs.iter().map(|(a, b)| dpkg::compare(a, b)).collect();
    // One dpkg process per pair, spread over threads: dpkg has no batch mode.
    let theirs: Vec<Option<Ordering>> = std::thread::scope(|s| {
        let handles: Vec<_> = pairs
            .chunks(pairs.len() / 4 + 1)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(a, b)| {
                            let run = |op: &str| {
                                let st = Command::new("dpkg")
                                    .args(["--compare-versions", a, op, b])
                                    .stderr(Stdio::null())
                                    .status();
                                st.unwrap_or_else(|e| {
                                    panic!("dpkg: {e} (run scripts/deps.d/70-vulns.sh)")
                                })
                            };
                            let lt = run("lt");
                            if lt.code() == Some(0) {
                                Some(Ordering::Less)
                            } else if lt.code() == Some(1) {
                                Some(if run("eq").success() {
                                    Ordering::Equal
                                } else {
                                    Ordering::Greater
                                })
                            } else {
                                None
                            }
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    check("dpkg", &pairs, &ours, &theirs);
}

const PY_PEP440: &str = r#"
import sys
from packaging.version import Version, InvalidVersion
for line in sys.stdin:
    a, b = line.rstrip("\n").split("\t")
    try:
        x, y = Version(a), Version(b)
    except InvalidVersion:
        print("none"); continue
    print((x > y) - (x < y))
"#;

#[test]
fn pep440_matches_packaging_version() {
    let mut rng = StdRng::seed_from_u64(2);
    let gen = |rng: &mut StdRng| {
        let mut v = String::new();
        if rng.random_bool(0.1) {
            v.push('v');
        }
        if rng.random_bool(0.1) {
            v.push_str(&format!("{}!", rng.random_range(0..3)));
        }
        for k in 0..rng.random_range(1..5) {
            if k > 0 {
                v.push('.');
            }
            v.push_str(&rng.random_range(0..12).to_string());
        }
        if rng.random_bool(0.4) {
            v.push_str(pick(
                rng,
                &[
                    "a", "b", "rc", "c", "alpha", "beta", "pre", "preview", "-rc", ".a", "_b", "RC",
                ],
            ));
            if rng.random_bool(0.8) {
                v.push_str(&rng.random_range(0..4).to_string());
            }
        }
        if rng.random_bool(0.3) {
            v.push_str(pick(rng, &[".post", "post", "-", ".rev", "-r", "_post"]));
            v.push_str(&rng.random_range(0..4).to_string());
        }
        if rng.random_bool(0.3) {
            v.push_str(pick(rng, &[".dev", "dev", "-dev"]));
            v.push_str(&rng.random_range(0..3).to_string());
        }
        if rng.random_bool(0.15) {
            v.push('+');
            v.push_str(&chunk(rng, b"abc012", 3));
            if rng.random_bool(0.5) {
                v.push('.');
                v.push_str(&chunk(rng, b"x19", 2));
            }
        }
        v
    };
    let mut pairs: Vec<(String, String)> = vec![
        ("1.0".into(), "1.0.0".into()),
        ("1.0.dev1".into(), "1.0a1".into()),
        ("1.0+abc.5".into(), "1.0+abc.10".into()),
        ("1.0+1".into(), "1.0+a".into()),
    ];
    while pairs.len() < PAIRS {
        pairs.push((gen(&mut rng), gen(&mut rng)));
    }
    let input: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let theirs: Vec<_> = reference("/usr/bin/python3", &["-c", PY_PEP440], &[], &input)
        .iter()
        .map(|l| if l == "none" { None } else { Some(sign(l)) })
        .collect();
    let ours: Vec<_> = pairs.iter().map(|(a, b)| pep440::compare(a, b)).collect();
    check("pep440", &pairs, &ours, &theirs);
}

const PY_RPM: &str = r#"
import sys, rpm
for line in sys.stdin:
    a, b = line.rstrip("\n").split("\t")
    def evr(s):
        e, _, rest = s.rpartition(":")
        v, _, r = rest.rpartition("-")
        return (e or "0", v, r)
    print(rpm.labelCompare(evr(a), evr(b)))
"#;

#[test]
fn rpm_matches_rpm_label_compare() {
    let mut rng = StdRng::seed_from_u64(3);
    let gen = |rng: &mut StdRng| {
        let mut v = String::new();
        if rng.random_bool(0.2) {
            v.push_str(&format!("{}:", rng.random_range(0..3)));
        }
        v.push_str(&chunk(rng, b"0123456789.a~^_z", 6));
        v.push('-');
        v.push_str(&chunk(rng, b"0123456789.el~^_", 6));
        v
    };
    let mut pairs: Vec<(String, String)> = [
        ("1.0~rc1-1", "1.0-1"),
        ("1.0^git1-1", "1.0.1-1"),
        ("1:1.0-1", "2.0-1"),
        ("3.0.7-27.el9", "3.0.7-24.el9_3"),
        ("1.0010-1", "1.9-1"),
        ("a-1", "1-1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    while pairs.len() < PAIRS {
        let a = gen(&mut rng);
        let b = if rng.random_bool(0.3) {
            a.replacen('-', pick(&mut rng, &["~1-", "^-", ".0-", "a-", "-"]), 1)
        } else {
            gen(&mut rng)
        };
        pairs.push((a, b));
    }
    let input: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let theirs: Vec<_> = reference("/usr/bin/python3", &["-c", PY_RPM], &[], &input)
        .iter()
        .map(|l| Some(sign(l)))
        .collect();
    let ours: Vec<_> = pairs
        .iter()
        .map(|(a, b)| Some(rpm::compare_evr(a, b)))
        .collect();
    check("rpm", &pairs, &ours, &theirs);
}

const JS_SEMVER: &str = r#"
const semver = require('semver');
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter(Boolean);
for (const l of lines) {
  const [a, b] = l.split('\t');
  if (!semver.valid(a) || !semver.valid(b)) { console.log('none'); continue; }
  console.log(String(semver.compare(a, b)));
}
"#;

#[test]
fn semver_matches_npm_semver() {
    let mut rng = StdRng::seed_from_u64(4);
    let gen = |rng: &mut StdRng| {
        let n = |rng: &mut StdRng| pick(rng, &["0", "1", "2", "9", "10", "11", "123"]).to_string();
        let mut v = format!("{}.{}.{}", n(rng), n(rng), n(rng));
        if rng.random_bool(0.5) {
            v.push('-');
            for k in 0..rng.random_range(1..4) {
                if k > 0 {
                    v.push('.');
                }
                if rng.random_bool(0.5) {
                    v.push_str(&n(rng));
                } else {
                    v.push_str(&chunk(rng, b"abcrAZ-1", 4));
                }
            }
        }
        if rng.random_bool(0.2) {
            v.push('+');
            v.push_str(&chunk(rng, b"abc01", 4));
        }
        v
    };
    let mut pairs: Vec<(String, String)> = [
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-beta.2", "1.0.0-beta.11"),
        ("1.0.0+a", "1.0.0+b"),
        ("1.0.0-1", "1.0.0-a"),
        ("1.0.0--", "1.0.0-0"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    while pairs.len() < PAIRS {
        pairs.push((gen(&mut rng), gen(&mut rng)));
    }
    let input: String = pairs.iter().map(|(a, b)| format!("{a}\t{b}\n")).collect();
    let theirs: Vec<_> = reference(
        "node",
        &["-e", JS_SEMVER],
        &[("NODE_PATH", "/usr/share/nodejs")],
        &input,
    )
    .iter()
    .map(|l| if l == "none" { None } else { Some(sign(l)) })
    .collect();
    let ours: Vec<_> = pairs.iter().map(|(a, b)| semver::compare(a, b)).collect();
    check("semver", &pairs, &ours, &theirs);
}

#[test]
fn maven_matches_comparable_version() {
    let jar = std::fs::read_dir("/usr/share/maven/lib")
        .expect("/usr/share/maven/lib (run scripts/deps.d/70-vulns.sh)")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("maven-artifact"))
        })
        .expect("maven-artifact jar");
    let mut rng = StdRng::seed_from_u64(5);
    let mut seq: Vec<String> = [
        "1",
        "1.0",
        "1-sp",
        "1.0.0-x",
        "1-alpha2snapshot",
        "1-rc",
        "1-cr2",
        "1.0-SNAPSHOT",
        "1.0.ga",
        "2.0.0.RELEASE",
        "1a1",
        "1-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tokens = [
        "0", "1", "2", "10", "alpha", "a", "b", "beta", "m", "rc", "cr", "snapshot", "ga", "final",
        "sp", "x", "foo", "RELEASE",
    ];
    while seq.len() < PAIRS {
        let mut v = pick(&mut rng, &["0", "1", "2", "10"]).to_string();
        for _ in 0..rng.random_range(0..5) {
            v.push_str(pick(&mut rng, &[".", "-", "", ""]));
            v.push_str(pick(&mut rng, &tokens));
        }
        seq.push(v);
    }
    let mut args = vec![
        "-cp".to_string(),
        jar.display().to_string(),
        "org.apache.maven.artifact.versioning.ComparableVersion".into(),
    ];
    args.extend(seq.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lines = reference("java", &args, &[], "");
    let theirs: Vec<Option<Ordering>> = lines
        .iter()
        .filter(|l| l.starts_with("   "))
        .map(|l| {
            let l = l.trim();
            Some(if l.contains(" < ") {
                Ordering::Less
            } else if l.contains(" == ") {
                Ordering::Equal
            } else {
                Ordering::Greater
            })
        })
        .collect();
    let pairs: Vec<(String, String)> = seq
        .windows(2)
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect();
    let ours: Vec<_> = pairs
        .iter()
        .map(|(a, b)| Some(maven::compare(a, b)))
        .collect();
    check("maven", &pairs, &ours, &theirs);
}
