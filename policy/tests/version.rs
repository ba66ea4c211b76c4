//! The dpkg version ordering, checked against the real `dpkg --compare-versions`.

use std::cmp::Ordering;
use std::process::Command;

use fathom_policy::version::compare;

fn dpkg(a: &str, op: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, op, b])
        .status()
        .expect("dpkg is installed (scripts/deps.d/00-apt.sh)")
        .success()
}

#[test]
fn ordering_agrees_with_dpkg_compare_versions() {
    let versions = [
        "1.0",
        "1.0-1",
        "1.0-2",
        "1.0~rc1",
        "1.0~rc1-1",
        "1:0.9",
        "1.0.1",
        "1.0a",
        "1.0+b1",
        "1.00",
        "1.10",
        "1.9",
        "2.0~~",
        "2.0~",
        "2.0",
        "3.0.11-1~deb12u2",
        "3.0.11-1",
        "3.0.13-1~deb12u1",
        "0:1.0",
        "1.2.3-4ubuntu1",
        "1.2.3-4ubuntu1.1",
        "10.0",
        "9.99",
        "1.0-1.1",
        "1.0-1+b1",
        "a",
        "1.0.0.0",
    ];
    for a in versions {
        for b in versions {
            let want = if dpkg(a, "lt", b) {
                Ordering::Less
            } else if dpkg(a, "eq", b) {
                Ordering::Equal
            } else {
                Ordering::Greater
            };
            assert_eq!(compare(a, b), want, "{a} vs {b}");
        }
    }
}
