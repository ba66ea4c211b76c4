//! `packages.required_package` with `version_match_type: minimum` compares by the package's own version
//! rules, checked against the real references: `dpkg --compare-versions` for Debian packages, Python's
//! `packaging.version` for Python ones and rpm's `labelCompare` for RPMs (scripts/deps.d/70-vulns.sh).

mod support;

use std::process::Command;

use support::{image, one_rule, package, rows};

/// Does the engine fire the minimum-version rule `want` on a package of `pkg_type` at `installed`?
fn fires(pkg_type: &str, installed: &str, want: &str) -> bool {
    let mut facts = image();
    facts.packages = vec![package(pkg_type, "pkg", installed)];
    let bundle = one_rule(
        "packages",
        "required_package",
        "STOP",
        &[
            ("name", "pkg"),
            ("version", want),
            ("version_match_type", "minimum"),
        ],
    );
    !rows(&bundle, &facts).is_empty()
}

fn dpkg_older(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "lt", b])
        .status()
        .expect("dpkg is installed (scripts/deps.d/00-apt.sh)")
        .success()
}

/// Every ordered pair of `versions` (including each with itself).
fn pairs<'a>(versions: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    versions
        .iter()
        .flat_map(|a| versions.iter().map(move |b| (*a, *b)))
        .collect()
}

/// The rule fires on `pkg_type` exactly where the reference script says `installed < minimum`.
fn agrees_with_reference(pkg_type: &str, versions: &[&str], script: &str) {
    let pairs = pairs(versions);
    let want = python_older(&pairs, script);
    assert_eq!(want.len(), pairs.len());
    for ((a, b), older) in pairs.iter().zip(want) {
        assert_eq!(fires(pkg_type, a, b), older, "installed {a}, minimum {b}");
    }
}

/// `installed < want` per the reference, for every pair at once (one interpreter per ecosystem).
fn python_older(pairs: &[(&str, &str)], script: &str) -> Vec<bool> {
    let input: String = pairs.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &input])
        .output()
        .expect(
            "the system python3 with packaging and rpm is installed (scripts/deps.d/70-vulns.sh)",
        );
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l == "1")
        .collect()
}

const DEB: &[&str] = &[
    "1.0",
    "1.0-1",
    "1.0~rc1",
    "1:0.9",
    "1.0.1",
    "1.0a",
    "1.0+b1",
    "1.10",
    "1.9",
    "2.0~~",
    "2.0~",
    "3.0.11-1~deb12u2",
    "3.0.11-1",
    "3.0.13-1~deb12u1",
    "0:1.0",
    "1.2.3-4ubuntu1.1",
];

#[test]
fn debian_minimums_follow_dpkg() {
    for a in DEB {
        for b in DEB {
            assert_eq!(
                fires("deb", a, b),
                dpkg_older(a, b),
                "installed {a}, minimum {b}"
            );
        }
    }
}

#[test]
fn python_minimums_follow_packaging() {
    // dpkg's rules get these wrong (a release candidate is not newer than the release, `1!` is an epoch).
    let versions = [
        "1.0",
        "1.0rc1",
        "1.0.post1",
        "1.0.dev0",
        "1!0.5",
        "1.0a1",
        "2.0",
        "1.10",
        "1.9",
        "1.0.0",
    ];
    agrees_with_reference(
        "python",
        &versions,
        "import sys\nfrom packaging.version import Version\n\
         for l in sys.argv[1].splitlines():\n a,b=l.split()\n print(1 if Version(a)<Version(b) else 0)",
    );
}

#[test]
fn rpm_minimums_follow_label_compare() {
    let versions = [
        "1.0-1",
        "1.0-1.el9",
        "1.0~rc1-1",
        "1:0.9-1",
        "1.0a-1",
        "1.0.1-1",
        "1.10-1",
        "1.9-1",
    ];
    agrees_with_reference(
        "rpm",
        &versions,
        "import sys, rpm\n\
         def evr(v):\n e,_,rest=v.rpartition(':')\n ver,_,rel=rest.partition('-')\n return (e or '0',ver,rel)\n\
         for l in sys.argv[1].splitlines():\n a,b=l.split()\n print(1 if rpm.labelCompare(evr(a),evr(b))<0 else 0)",
    );
}

#[test]
fn an_incomparable_version_is_not_taken_as_new_enough() {
    let mut facts = image();
    facts.packages = vec![package("npm", "left-pad", "not-a-version")];
    let bundle = one_rule(
        "packages",
        "required_package",
        "STOP",
        &[
            ("name", "left-pad"),
            ("version", "1.3.0"),
            ("version_match_type", "minimum"),
        ],
    );
    let found = rows(&bundle, &facts);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].check_output.contains("cannot be compared"),
        "{}",
        found[0].check_output
    );
}
