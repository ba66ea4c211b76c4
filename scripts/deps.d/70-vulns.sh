# Vulnerability crate (vulns/tests/differential.rs): the reference version comparators the Rust ones are
# checked against — dpkg (already present), Python's packaging.version and rpm's labelCompare for the
# system python3, the npm `semver` package (Debian's node-semver, found through NODE_PATH), and Maven's
# ComparableVersion (maven-artifact, with a JRE).
fathom_apt_install dpkg python3 python3-packaging python3-rpm nodejs node-semver maven default-jre-headless
