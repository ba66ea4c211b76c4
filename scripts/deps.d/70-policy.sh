# Policy tests: the version ordering is checked against dpkg's own `dpkg --compare-versions`.
command -v dpkg >/dev/null || fathom_apt_install dpkg
