//! The non-Debian sample images: `rocky-rpm` (rpmdb.sqlite written in rpm's header-blob format) and
//! `alpine-apk` (an apk installed database), each with the files of a small real base image.

use super::large::code_like_bytes;
use super::{dir, exec, file, symlink, SampleEntry, SampleImage};
use fathom_analyzer::fixtures::rpm::write_rpmdb;
use fathom_analyzer::fixtures::rpm::{
    HeaderBuilder, TAG_ARCH, TAG_EPOCH, TAG_LICENSE, TAG_NAME, TAG_RELEASE, TAG_SIZE,
    TAG_SOURCERPM, TAG_SUMMARY, TAG_VENDOR, TAG_VERSION,
};
use fathom_analyzer::model::PackageType;

/// name, epoch, version, release, arch, license.
type RpmRow = (
    &'static str,
    Option<u32>,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// Rocky Linux 9.4 minimal.
const ROCKY: &[RpmRow] = &[
    ("bash", None, "5.1.8", "9.el9", "x86_64", "GPLv3+"),
    (
        "ca-certificates",
        None,
        "2024.2.69_v8.0.303",
        "91.4.el9_4",
        "noarch",
        "MIT AND GPL-2.0-or-later",
    ),
    (
        "coreutils-single",
        None,
        "8.32",
        "35.el9",
        "x86_64",
        "GPLv3+",
    ),
    (
        "curl-minimal",
        None,
        "7.76.1",
        "29.el9_4.1",
        "x86_64",
        "MIT",
    ),
    ("dnf", None, "4.14.0", "9.el9", "noarch", "GPLv2+"),
    (
        "glibc",
        None,
        "2.34",
        "100.el9_4.2",
        "x86_64",
        "LGPLv2+ and LGPLv2+ with exceptions and GPLv2+",
    ),
    ("libacl", None, "2.3.1", "4.el9", "x86_64", "LGPLv2+"),
    (
        "libgcc",
        None,
        "11.4.1",
        "3.el9",
        "x86_64",
        "GPLv3+ and GPLv3+ with exceptions",
    ),
    (
        "libselinux",
        None,
        "3.6",
        "1.el9",
        "x86_64",
        "Public Domain",
    ),
    (
        "ncurses-base",
        None,
        "6.2",
        "10.20210508.el9",
        "noarch",
        "MIT",
    ),
    (
        "openssl-libs",
        Some(1),
        "3.0.7",
        "27.el9",
        "x86_64",
        "ASL 2.0",
    ),
    ("pcre2", None, "10.40", "5.el9", "x86_64", "BSD"),
    ("python3", None, "3.9.18", "3.el9_4.3", "x86_64", "Python"),
    (
        "rocky-release",
        None,
        "9.4",
        "1.7.el9",
        "noarch",
        "BSD-3-Clause",
    ),
    (
        "systemd-libs",
        None,
        "252",
        "32.el9_4",
        "x86_64",
        "LGPLv2+ and MIT",
    ),
    ("tzdata", None, "2024a", "1.el9", "noarch", "Public Domain"),
    (
        "zlib",
        Some(0),
        "1.2.11",
        "40.el9",
        "x86_64",
        "zlib and Boost",
    ),
];

const ROCKY_OS_RELEASE: &str = "NAME=\"Rocky Linux\"\nVERSION=\"9.4 (Blue Onyx)\"\nID=\"rocky\"\n\
ID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\nPLATFORM_ID=\"platform:el9\"\n\
PRETTY_NAME=\"Rocky Linux 9.4 (Blue Onyx)\"\nANSI_COLOR=\"0;32\"\nLOGO=\"fedora-logo-icon\"\n\
CPE_NAME=\"cpe:/o:rocky:rocky:9::baseos\"\nHOME_URL=\"https://rockylinux.org/\"\n\
BUG_REPORT_URL=\"https://bugs.rockylinux.org/\"\n";

fn rpm_header(&(name, epoch, version, release, arch, license): &RpmRow) -> Vec<u8> {
    let mut h = HeaderBuilder::default()
        .string(TAG_NAME, name)
        .string(TAG_VERSION, version)
        .string(TAG_RELEASE, release)
        .string(TAG_SUMMARY, &format!("The {name} package"))
        .int32(TAG_SIZE, 100_000 + name.len() as u32 * 4_096)
        .string(TAG_VENDOR, "Rocky Enterprise Software Foundation")
        .string(TAG_LICENSE, license)
        .string(TAG_ARCH, arch)
        .string(
            TAG_SOURCERPM,
            &format!("{name}-{version}-{release}.src.rpm"),
        )
        .strings(1117, &[&format!("{name}.so"), "README", "COPYING"]); // RPMTAG_BASENAMES
    if let Some(e) = epoch {
        h = h.int32(TAG_EPOCH, e);
    }
    h.build()
}

/// Rocky Linux 9.4: os-release, redhat-release, the rpm database and the packages' files.
pub(super) fn rocky_rpm() -> SampleImage {
    let blobs: Vec<Vec<u8>> = ROCKY.iter().map(rpm_header).collect();
    // Serializing an in-memory SQLite database of a few KiB does not fail short of memory exhaustion.
    let db = write_rpmdb(&blobs).unwrap_or_default();
    let mut e = vec![
        dir("/etc"),
        dir("/usr"),
        dir("/usr/lib"),
        dir("/usr/bin"),
        dir("/usr/lib64"),
        dir("/var/lib/rpm"),
        file("/etc/os-release", ROCKY_OS_RELEASE.as_bytes()),
        file(
            "/etc/redhat-release",
            b"Rocky Linux release 9.4 (Blue Onyx)\n",
        ),
        symlink("/etc/system-release", "rocky-release"),
        file("/var/lib/rpm/rpmdb.sqlite", &db),
    ];
    for (i, p) in ROCKY.iter().enumerate() {
        e.push(file(
            &format!("/usr/lib64/lib{}.so.{}", p.0, i + 1),
            &code_like_bytes(20_000 + i * 3_001, 100 + i as u64),
        ));
        e.push(exec(
            &format!("/usr/bin/{}", p.0),
            &code_like_bytes(9_000 + i * 1_777, 200 + i as u64),
        ));
    }
    SampleImage {
        name: "rocky-rpm".into(),
        layers: vec![e],
    }
}

/// name, version, arch, license, origin — alpine:3.19.
const ALPINE: &[(&str, &str, &str, &str)] = &[
    (
        "alpine-baselayout",
        "3.4.3-r2",
        "GPL-2.0-only",
        "alpine-baselayout",
    ),
    (
        "alpine-baselayout-data",
        "3.4.3-r2",
        "GPL-2.0-only",
        "alpine-baselayout",
    ),
    ("alpine-keys", "2.4-r1", "MIT", "alpine-keys"),
    ("apk-tools", "2.14.0-r5", "GPL-2.0-only", "apk-tools"),
    ("busybox", "1.36.1-r15", "GPL-2.0-only", "busybox"),
    ("busybox-binsh", "1.36.1-r15", "GPL-2.0-only", "busybox"),
    (
        "ca-certificates-bundle",
        "20230506-r0",
        "MPL-2.0 AND MIT",
        "ca-certificates",
    ),
    (
        "libc-utils",
        "0.7.2-r5",
        "BSD-2-Clause AND BSD-3-Clause",
        "libc-dev",
    ),
    ("libcrypto3", "3.1.4-r5", "Apache-2.0", "openssl"),
    ("libssl3", "3.1.4-r5", "Apache-2.0", "openssl"),
    ("musl", "1.2.4_git20230717-r4", "MIT", "musl"),
    (
        "musl-utils",
        "1.2.4_git20230717-r4",
        "MIT AND BSD-2-Clause AND GPL-2.0-or-later",
        "musl",
    ),
    ("scanelf", "1.3.7-r2", "GPL-2.0-only", "pax-utils"),
    ("ssl_client", "1.36.1-r15", "GPL-2.0-only", "busybox"),
    ("zlib", "1.3.1-r0", "Zlib", "zlib"),
];

fn apk_installed() -> Vec<u8> {
    let mut s = String::new();
    for (i, (name, version, license, origin)) in ALPINE.iter().enumerate() {
        s.push_str(&format!(
            "C:Q1{:027x}=\nP:{name}\nV:{version}\nA:x86_64\nS:{}\nI:{}\nT:{name} for Alpine Linux\n\
             U:https://alpinelinux.org\nL:{license}\no:{origin}\nm:Natanael Copa <ncopa@alpinelinux.org>\n\
             t:{}\nc:{:040x}\nF:usr/lib\nR:lib{name}.so\na:0:0:755\nZ:Q1{:027x}=\n\n",
            i * 7919 + 1,
            20_000 + i * 311,
            60_000 + i * 977,
            1_704_000_000 + i * 3_600,
            i * 104_729 + 3,
            i * 15_485_863 + 5,
        ));
    }
    s.into_bytes()
}

/// alpine:3.19: os-release, alpine-release, the apk database and busybox.
pub(super) fn alpine_apk() -> SampleImage {
    let os_release = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\nPRETTY_NAME=\"Alpine Linux v3.19\"\n\
                      HOME_URL=\"https://alpinelinux.org/\"\nBUG_REPORT_URL=\"https://gitlab.alpinelinux.org/alpine/aports/-/issues\"\n";
    let mut e: Vec<SampleEntry> = vec![
        dir("/etc"),
        dir("/bin"),
        dir("/lib"),
        dir("/lib/apk"),
        dir("/lib/apk/db"),
        dir("/usr/lib"),
        file("/etc/os-release", os_release.as_bytes()),
        file("/etc/alpine-release", b"3.19.1\n"),
        file("/lib/apk/db/installed", &apk_installed()),
        exec("/bin/busybox", &code_like_bytes(900_000, 42)),
        symlink("/bin/sh", "/bin/busybox"),
    ];
    for (i, (name, ..)) in ALPINE.iter().enumerate() {
        e.push(file(
            &format!("/usr/lib/lib{name}.so"),
            &code_like_bytes(12_000 + i * 1_009, 300 + i as u64),
        ));
    }
    SampleImage {
        name: "alpine-apk".into(),
        layers: vec![e],
    }
}

type Triple = (PackageType, String, String);

pub(super) fn expected_rpm() -> Vec<Triple> {
    ROCKY
        .iter()
        .map(|(n, epoch, v, r, ..)| {
            let version = match epoch {
                Some(e) => format!("{e}:{v}-{r}"),
                None => format!("{v}-{r}"),
            };
            (PackageType::Rpm, n.to_string(), version)
        })
        .collect()
}

pub(super) fn expected_apk() -> Vec<Triple> {
    ALPINE
        .iter()
        .map(|(n, v, ..)| (PackageType::Apk, n.to_string(), v.to_string()))
        .collect()
}
